"""`rrm check`: is a running gateway serving, and who is it? The gRPC health of the reward
service, then GetInfo, over the same transport clients use (TLS, mutual TLS, a bearer token).
The chart's `helm test` pod runs it against the release; operators can run it by hand."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from rrm.v1 import reward_pb2 as pb
from rrm.v1 import reward_pb2_grpc as pb_grpc

SERVICE = pb.DESCRIPTOR.services_by_name["RewardService"].full_name


class CheckFailed(RuntimeError):
    """The gateway is unreachable, not serving, or refused GetInfo; the message says which."""


@dataclass(frozen=True, slots=True)
class Transport:
    """How to reach the gateway: plaintext without `ca`; `cert` and `key` for mutual TLS."""

    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    token_file: Path | None = None

    def channel(self, target: str) -> grpc.Channel:
        if self.ca is None:
            if self.cert or self.key:
                raise CheckFailed("a client certificate needs --tls-ca (TLS)")
            return grpc.insecure_channel(target)
        if bool(self.cert) != bool(self.key):
            raise CheckFailed("--tls-cert and --tls-key go together")
        credentials = grpc.ssl_channel_credentials(
            root_certificates=self.ca.read_bytes(),
            private_key=self.key.read_bytes() if self.key else None,
            certificate_chain=self.cert.read_bytes() if self.cert else None,
        )
        return grpc.secure_channel(target, credentials)

    def metadata(self) -> tuple[tuple[str, str], ...]:
        """The first token of the file (one per line, # comments), as the gateway reads it."""
        if self.token_file is None:
            return ()
        for line in self.token_file.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                return (("authorization", f"Bearer {line}"),)
        raise CheckFailed(f"no token in {self.token_file}")


def check_gateway(target: str, transport: Transport, timeout_s: float = 10.0) -> pb.GetInfoResponse:
    """Health SERVING for rrm.v1.RewardService, then GetInfo; raises CheckFailed."""
    with transport.channel(target) as channel:
        try:
            health = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=SERVICE), timeout=timeout_s
            )
        except grpc.RpcError as err:
            detail = f"{err.code().name}: {err.details()}"
            raise CheckFailed(f"health check of {target}: {detail}") from err
        if health.status != health_pb2.HealthCheckResponse.SERVING:
            status = health_pb2.HealthCheckResponse.ServingStatus.Name(health.status)
            raise CheckFailed(f"{target} is {status} (not ready: no warm-up judgment yet?)")
        try:
            info: pb.GetInfoResponse = pb_grpc.RewardServiceStub(channel).GetInfo(
                pb.GetInfoRequest(), timeout=timeout_s, metadata=transport.metadata()
            )
        except grpc.RpcError as err:
            detail = f"{err.code().name}: {err.details()}"
            raise CheckFailed(f"GetInfo on {target}: {detail}") from err
    if not info.model:
        raise CheckFailed(f"GetInfo on {target} names no model")
    return info

"""How a client reaches the service: address, TLS (root CA, optional client certificate for
mutual TLS) and the bearer token sent as `authorization` metadata on every call."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import grpc

log = logging.getLogger(__name__)

# As large as the service accepts (Limits.max_message_bytes): long candidates and reasoning.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

# Keepalive pings during calls, so a connection that died under a judgment running for minutes
# is noticed (and a load balancer does not drop it as idle). gRPC's default stops after two
# pings while no data flows; 0 keeps pinging. The gateway permits a ping every 10 s.
KEEPALIVE_TIME_MS = 30_000
KEEPALIVE_TIMEOUT_MS = 20_000


@dataclass(frozen=True, slots=True)
class TLSConfig:
    """PEM files. No root CA: the system's roots. Client cert and key go together (mTLS)."""

    root_ca: Path | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    # Name to check the server certificate against when it differs from the address host.
    server_name: str | None = None

    def __post_init__(self) -> None:
        if (self.client_cert is None) != (self.client_key is None):
            raise ValueError("client_cert and client_key must be given together")

    def credentials(self) -> grpc.ChannelCredentials:
        def read(path: Path | None) -> bytes | None:
            return None if path is None else Path(path).read_bytes()

        return grpc.ssl_channel_credentials(
            root_certificates=read(self.root_ca),
            private_key=read(self.client_key),
            certificate_chain=read(self.client_cert),
        )


@dataclass(frozen=True, slots=True)
class Endpoint:
    address: str  # "host:port"
    tls: TLSConfig | None = None
    token: str | None = None

    def __post_init__(self) -> None:
        if not self.address:
            raise ValueError("the reward service address is empty (e.g. RRM_ADDRESS=host:50051)")
        if self.token and self.tls is None:
            log.warning("sending a bearer token to %s without TLS", self.address)

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()

    def channel_options(self) -> list[tuple[str, int | str]]:
        options: list[tuple[str, int | str]] = [
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
            ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
            ("grpc.http2.max_pings_without_data", 0),
        ]
        if self.tls is not None and self.tls.server_name:
            options.append(("grpc.ssl_target_name_override", self.tls.server_name))
        return options

    def sync_channel(self) -> grpc.Channel:
        if self.tls is None:
            return grpc.insecure_channel(self.address, options=self.channel_options())
        return grpc.secure_channel(
            self.address, self.tls.credentials(), options=self.channel_options()
        )

    def aio_channel(self) -> grpc.aio.Channel:
        if self.tls is None:
            return grpc.aio.insecure_channel(self.address, options=self.channel_options())
        return grpc.aio.secure_channel(
            self.address, self.tls.credentials(), options=self.channel_options()
        )

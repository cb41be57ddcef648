"""grpc.aio server lifecycle: health (NOT_SERVING until a warm-up judgment), reflection, drain.

SIGTERM -> health NOT_SERVING (load balancers stop sending) -> stop accepting RPCs -> in-flight
calls get `grace_s` to finish -> exit.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from rrm.v1 import reward_pb2 as pb
from rrm.v1 import reward_pb2_grpc as pb_grpc

from reward_service import metrics
from reward_service.gateway.admission import Admission
from reward_service.gateway.comparator import Comparator
from reward_service.gateway.planner import Comparison, OrderMode
from reward_service.gateway.service import RewardService
from reward_service.settings import GatewaySettings

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["RewardService"].full_name

# Clients may ping this often during a call (policy_adapter pings every 30 s). gRPC's default
# (5 minutes, 2 strikes) answers a faster client with GOAWAY too_many_pings, failing a judgment
# that runs for minutes with UNAVAILABLE.
MIN_CLIENT_PING_INTERVAL_MS = 10_000

# A few seconds of a flood at several thousand calls/s; each waiting call holds its request.
MAX_PENDING_CALLS = 20_000


def keepalive_options(min_client_ping_interval_ms: int) -> list[tuple[str, int]]:
    return [
        ("grpc.keepalive_permit_without_calls", 1),
        # GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS: this string, despite its name.
        ("grpc.http2.min_ping_interval_without_data_ms", min_client_ping_interval_ms),
        ("grpc.http2.max_ping_strikes", 2),  # a client pinging faster still gets GOAWAY
    ]


WARMUP = Comparison(
    query="What is 2 + 2?",
    response_a="2 + 2 = 4.",
    response_b="2 + 2 = 5.",
    history=(),
    votes=1,
    order=OrderMode.AS_GIVEN,
    max_reasoning_tokens=8,
    temperature=0.0,
    seed=0,
    return_reasoning=False,
    use_cache=False,
)


def tls_credentials(cert: str, key: str, client_ca: str = "") -> grpc.ServerCredentials:
    """Server TLS from PEM files; with `client_ca`, clients must present a certificate (mTLS)."""
    with open(cert, "rb") as c, open(key, "rb") as k:
        pair = [(k.read(), c.read())]
    if not client_ca:
        return grpc.ssl_server_credentials(pair)
    with open(client_ca, "rb") as ca:
        return grpc.ssl_server_credentials(
            pair, root_certificates=ca.read(), require_client_auth=True
        )


class GatewayServer:
    def __init__(
        self,
        service: RewardService,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_message_bytes: int = 64 * 1024 * 1024,
        interceptors: list[grpc.aio.ServerInterceptor] | None = None,
        credentials: grpc.ServerCredentials | None = None,
        max_concurrent_rpcs: int | None = None,
        min_client_ping_interval_ms: int = MIN_CLIENT_PING_INTERVAL_MS,
    ) -> None:
        self.service = service
        self.host = host
        self.requested_port = port
        self.health = health.aio.HealthServicer()
        # None: the shipped default, so every gateway refuses overload out of the box.
        if max_concurrent_rpcs is None:
            max_concurrent_rpcs = GatewaySettings().max_concurrent_rpcs
        self.admission = Admission(max_concurrent=max_concurrent_rpcs)
        self.server = grpc.aio.server(
            # Admission last: its cached per-method wrappers must see the service's own handlers.
            interceptors=[*(interceptors or []), self.admission],
            options=[
                ("grpc.max_receive_message_length", max_message_bytes),
                ("grpc.max_send_message_length", max_message_bytes),
                *keepalive_options(min_client_ping_interval_ms),
                # Calls the core holds before the process takes them up. At the defaults (1,000
                # and 3,000) a flood is shed there as CANCELLED, before admission control can
                # answer RESOURCE_EXHAUSTED with a retry delay (docs/benchmarks.md, "Overload").
                ("grpc.server.max_pending_requests", MAX_PENDING_CALLS),
                ("grpc.server.max_pending_requests_hard_limit", MAX_PENDING_CALLS),
            ],
        )
        pb_grpc.add_RewardServiceServicer_to_server(service, self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), self.server
        )
        self.credentials = credentials
        self.port = 0
        self.warm = False  # the warm-up judgment was answered
        self._health_updates: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        address = f"{self.host}:{self.requested_port}"
        if self.credentials is None:
            self.port = self.server.add_insecure_port(address)
        else:
            self.port = self.server.add_secure_port(address, self.credentials)
        await self.server.start()
        log.info("gateway listening on %s:%d", self.host, self.port)
        return self.port

    async def warm_up(self, comparator: Comparator, timeout_s: float = 900.0) -> None:
        """Judge one pair end to end, then report SERVING. Retries until a worker answers."""
        started = time.monotonic()
        delay = 0.5
        while True:
            try:
                await comparator.compare(WARMUP, f"warmup-{uuid.uuid4().hex}", time.time() + 60)
                break
            except Exception as exc:
                if time.monotonic() - started > timeout_s:
                    raise
                log.info("warm-up judgment not answered yet (%s); retrying", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        log.info("warm-up judgment answered in %.1f s: SERVING", time.monotonic() - started)
        self.warm = True
        await self._set_health(health_pb2.HealthCheckResponse.SERVING)
        metrics.READY.set(1)

    def set_serving(self, serving: bool) -> None:
        """Report SERVING or NOT_SERVING from synchronous code (e.g. the engine guard of the
        embedded worker, while its engine is down)."""
        response = health_pb2.HealthCheckResponse
        status = response.SERVING if serving else response.NOT_SERVING
        task = asyncio.get_running_loop().create_task(self._set_health(status))
        self._health_updates.add(task)
        task.add_done_callback(self._health_updates.discard)

    async def _set_health(
        self, status: health_pb2.HealthCheckResponse.ServingStatus.ValueType
    ) -> None:
        await self.health.set("", status)
        await self.health.set(SERVICE_NAME, status)

    async def stop(self, grace_s: float = 30.0) -> None:
        metrics.READY.set(0)
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        await self.server.stop(grace_s)

    async def wait(self) -> None:
        await self.server.wait_for_termination()

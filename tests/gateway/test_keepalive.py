"""A judgment that runs for minutes must survive the shipped client's keepalive pings: the
gateway permits them instead of answering GOAWAY too_many_pings (which fails the call with
UNAVAILABLE). Scaled down: the client pings every second through a 10-second judgment."""

from __future__ import annotations

import grpc
from rrm.v1 import reward_pb2 as pb
from rrm.v1 import reward_pb2_grpc as pb_grpc

from policy_adapter.channel import KEEPALIVE_TIME_MS, Endpoint
from reward_service.gateway.server import MIN_CLIENT_PING_INTERVAL_MS
from tests.gateway.conftest import close_stack, make_stack

PING_MS = 1_000


def client_options(address: str) -> list[tuple[str, int | str]]:
    """The shipped client's channel options, with its ping interval scaled down."""
    return [
        (key, PING_MS if key == "grpc.keepalive_time_ms" else value)
        for key, value in Endpoint(address).channel_options()
    ]


async def test_a_long_judgment_survives_client_keepalive_pings() -> None:
    s = await make_stack(latency_s=10.0, warm=False, min_client_ping_interval_ms=PING_MS // 2)
    address = f"127.0.0.1:{s.server.port}"
    try:
        async with grpc.aio.insecure_channel(address, options=client_options(address)) as channel:
            reply = await pb_grpc.RewardServiceStub(channel).Compare(
                pb.CompareRequest(query="q", response_a="aa", response_b="b"), timeout=60
            )
        assert reply.winner == pb.WINNER_A
    finally:
        await close_stack(s)


def test_the_shipped_client_pings_no_faster_than_the_gateway_permits() -> None:
    assert KEEPALIVE_TIME_MS >= MIN_CLIENT_PING_INTERVAL_MS
    options = dict(Endpoint("127.0.0.1:1").channel_options())
    assert options["grpc.http2.max_pings_without_data"] == 0  # keeps pinging through long calls

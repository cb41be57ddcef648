"""Past RRM_GATEWAY__MAX_CONCURRENT_RPCS a gateway refuses new calls at once with
RESOURCE_EXHAUSTED and a retry delay, while health probes and GetInfo-style calls from probes are
still answered (health is never counted)."""

from __future__ import annotations

import asyncio

import grpc
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from rrm.v1 import reward_pb2 as pb

from reward_service.settings import GatewaySettings
from tests.gateway.conftest import close_stack, make_stack


def compare(i: int) -> pb.CompareRequest:
    return pb.CompareRequest(request_id=f"c{i}", query=f"q{i}", response_a="aa", response_b="b")


async def test_past_the_cap_calls_get_a_retry_delay_and_probes_still_pass() -> None:
    s = await make_stack(latency_s=1.0, max_concurrent_rpcs=2)
    try:
        busy = [asyncio.ensure_future(s.stub.Compare(compare(i))) for i in range(2)]
        await asyncio.sleep(0.3)  # both admitted and waiting for the judge
        try:
            await s.stub.Compare(compare(9))
            raise AssertionError("a third call was admitted")
        except grpc.aio.AioRpcError as err:
            assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "RRM_GATEWAY__MAX_CONCURRENT_RPCS" in (err.details() or "")
            status = rpc_status.from_call(err)  # type: ignore[arg-type]
            assert status is not None
            retry = error_details_pb2.RetryInfo()
            assert status.details[0].Unpack(retry) and retry.retry_delay.ToMilliseconds() > 0
        health = health_pb2_grpc.HealthStub(s.channel)
        reply = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=0.5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        assert all(r.winner == pb.WINNER_A for r in await asyncio.gather(*busy))
        assert (await s.stub.Compare(compare(10))).winner == pb.WINNER_A  # room again
    finally:
        await close_stack(s)


def test_the_cap_is_on_by_default() -> None:
    assert GatewaySettings().max_concurrent_rpcs > 0

"""The gateway suite of tests/gateway, run again with the Redis broker in between (the `stack`
fixtures below replace the memory-broker ones), plus what only a shared queue can show."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from rrm.v1 import reward_pb2 as pb

from reward_service.queue.names import QueueNames
from reward_service.queue.redis_broker import RedisBroker
from reward_service.testing.scripted_runner import ScriptedRunner
from reward_service.worker.worker import Worker
from tests.gateway.test_compare_scripted import (  # noqa: F401  (collected again here)
    req,
    test_bad_input_is_invalid_argument_naming_the_field,
    test_batch_limits,
    test_batch_reports_each_item_on_its_own,
    test_client_cancellation_aborts_running_judgments,
    test_compare_maps_shown_order_back_to_a_and_b,
    test_deadline_exceeded_cancels_the_queued_work,
    test_every_vote_failing_is_an_error_not_a_verdict,
    test_get_info,
    test_order_both_judges_each_vote_in_both_orders,
    test_random_order_is_seeded_per_item,
    test_same_request_id_is_answered_without_new_work,
    test_votes_stop_early_once_the_majority_is_settled,
)
from tests.queue.stack import RedisStack, close_redis_stack, make_redis_stack
from tests.support.redis_server import RedisServer


@pytest.fixture
async def stack(redis_session: RedisServer, names: QueueNames) -> AsyncIterator[RedisStack]:
    s = await make_redis_stack(redis_session.url, names)
    yield s
    await close_redis_stack(s)


@pytest.fixture
async def slow_stack(redis_session: RedisServer, names: QueueNames) -> AsyncIterator[RedisStack]:
    s = await make_redis_stack(redis_session.url, names, latency_s=1.0)
    yield s
    await close_redis_stack(s)


async def test_queue_full_is_resource_exhausted_with_retry_delay(
    redis_session: RedisServer, names: QueueNames
) -> None:
    s = await make_redis_stack(
        redis_session.url, names, latency_s=2.0, max_depth=2, max_in_flight=1
    )
    try:
        busy = asyncio.ensure_future(s.stub.Compare(req(options=pb.JudgeOptions(votes=2))))
        await asyncio.sleep(0.2)
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await s.stub.Compare(req(request_id="more"))
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        status = rpc_status.from_call(err.value)
        assert status is not None
        retry = error_details_pb2.RetryInfo()
        assert status.details[0].Unpack(retry) and retry.retry_delay.ToMilliseconds() > 0
        busy.cancel()
    finally:
        await close_redis_stack(s)


async def test_a_stopping_worker_hands_its_jobs_to_another(
    redis_session: RedisServer, names: QueueNames
) -> None:
    s = await make_redis_stack(redis_session.url, names, latency_s=5.0, grace_s=0.1, warm=False)
    other = RedisBroker(redis_session.url, names=names)
    await other.start()
    runner = ScriptedRunner(latency_s=0.05)
    w2 = Worker(other, runner, name="w2", max_in_flight=4)
    try:
        call = asyncio.ensure_future(s.stub.Compare(req(request_id="handover"), timeout=10))
        await asyncio.sleep(0.3)
        assert s.worker.in_flight == 1
        s.worker.stop()
        await s.worker_task  # the 5 s judgment outlives the grace: it is handed back
        w2_task = asyncio.create_task(w2.run(grace_s=1.0))
        reply = await asyncio.wait_for(call, 3)
        assert reply.winner == pb.WINNER_A and len(runner.calls) == 1
        assert s.runner.cancelled == runner.calls, "same job, first aborted, then run by w2"
        w2.stop()
        await w2_task
    finally:
        await close_redis_stack(s)
        await other.close()

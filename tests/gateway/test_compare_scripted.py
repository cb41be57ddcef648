"""Compare / CompareBatch / GetInfo / health / reflection over a real gRPC channel."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status
from rrm.v1 import reward_pb2 as pb

from tests.gateway.conftest import Stack, close_stack, make_stack

LONG, SHORT = "a long and detailed answer", "short"


def req(**kw: object) -> pb.CompareRequest:
    base: dict[str, object] = dict(query="q?", response_a=LONG, response_b=SHORT)
    base.update(kw)
    return pb.CompareRequest(**base)  # type: ignore[arg-type]


async def test_compare_maps_shown_order_back_to_a_and_b(stack: Stack) -> None:
    for order in (pb.ORDER_RANDOM, pb.ORDER_AS_GIVEN):
        for a, b, want in ((LONG, SHORT, pb.WINNER_A), (SHORT, LONG, pb.WINNER_B)):
            reply = await stack.stub.Compare(
                req(response_a=a, response_b=b, options=pb.JudgeOptions(order=order, votes=1))
            )
            assert reply.winner == want
            assert reply.p_a == pytest.approx(0.9 if want == pb.WINNER_A else 0.1)
            assert reply.model == "scripted" and reply.template_version == "test/0"
            assert len(reply.votes) == 1 and reply.votes[0].parse_status == pb.PARSE_STATUS_OK


async def test_random_order_is_seeded_per_item(stack: Stack) -> None:
    shown = set()
    for i in range(12):
        reply = await stack.stub.Compare(req(query=f"q{i}?", request_id=f"r{i}"))
        shown.add(reply.votes[0].shown_order)
        assert reply.winner == pb.WINNER_A
        # the same item in another request is shown the same way (seeded per item)
        again = await stack.stub.Compare(req(query=f"q{i}?", request_id=f"other-{i}"))
        assert again.votes[0].shown_order == reply.votes[0].shown_order
    assert shown == {pb.SHOWN_ORDER_A_FIRST, pb.SHOWN_ORDER_B_FIRST}
    # an explicit seed changes the draw
    seeded = {
        (await stack.stub.Compare(req(options=pb.JudgeOptions(seed=s)))).votes[0].shown_order
        for s in range(12)
    }
    assert len(seeded) == 2


async def test_votes_stop_early_once_the_majority_is_settled(stack: Stack) -> None:
    before = len(stack.runner.calls)
    reply = await stack.stub.Compare(req(options=pb.JudgeOptions(votes=5)))
    # a unanimous judge settles 5 votes after 3: the 2 remaining draws are saved
    assert len(stack.runner.calls) - before == 3
    assert len(reply.votes) == 3 and reply.agreeing_votes == 3


async def test_order_both_judges_each_vote_in_both_orders(stack: Stack) -> None:
    reply = await stack.stub.Compare(req(options=pb.JudgeOptions(votes=1, order=pb.ORDER_BOTH)))
    assert sorted(v.shown_order for v in reply.votes) == [
        pb.SHOWN_ORDER_A_FIRST,
        pb.SHOWN_ORDER_B_FIRST,
    ]
    assert reply.order_consistent and reply.winner == pb.WINNER_A
    assert reply.usage.judgments == 2


async def test_same_request_id_is_answered_without_new_work(stack: Stack) -> None:
    first = await stack.stub.Compare(req(request_id="idem-1", options=pb.JudgeOptions(votes=3)))
    calls = len(stack.runner.calls)
    again = await stack.stub.Compare(req(request_id="idem-1", options=pb.JudgeOptions(votes=3)))
    assert len(stack.runner.calls) == calls
    assert again.votes == first.votes and again.winner == first.winner


@pytest.mark.parametrize(
    ("request_kw", "field"),
    [
        (dict(query=" "), "query"),
        (dict(response_a=""), "response_a"),
        (dict(response_b="x" * 1001), "response_b"),
        (dict(options=pb.JudgeOptions(votes=8)), "options.votes"),
        (dict(options=pb.JudgeOptions(max_reasoning_tokens=257)), "options.max_reasoning_tokens"),
        (dict(options=pb.JudgeOptions(temperature=3.0)), "options.temperature"),
        (dict(history=[pb.Message(role="robot", content="hi")]), "history[0].role"),
        (dict(history=[pb.Message(role="user", content="")]), "history[0].content"),
    ],
)
async def test_bad_input_is_invalid_argument_naming_the_field(
    stack: Stack, request_kw: dict[str, object], field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stack.stub.Compare(req(**request_kw))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in (err.value.details() or "")
    status = rpc_status.from_call(err.value)
    assert status is not None
    bad = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad) and bad.field_violations[0].field == field


async def test_batch_reports_each_item_on_its_own(stack: Stack) -> None:
    reply = await stack.stub.CompareBatch(
        pb.CompareBatchRequest(
            pairs=[req(), req(response_b=""), req(response_a=SHORT, response_b=LONG)]
        )
    )
    assert [r.WhichOneof("outcome") for r in reply.results] == ["response", "error", "response"]
    assert reply.results[0].response.winner == pb.WINNER_A
    assert reply.results[1].error.field == "pairs[1].response_b"
    assert reply.results[1].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert reply.results[2].response.winner == pb.WINNER_B


async def test_batch_limits(stack: Stack) -> None:
    for pairs in ([], [req()] * 9):
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stack.stub.CompareBatch(pb.CompareBatchRequest(pairs=pairs))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "pairs" in (err.value.details() or "")


async def test_get_info(stack: Stack) -> None:
    info = await stack.stub.GetInfo(pb.GetInfoRequest())
    assert info.model == "scripted" and info.judge_profile == "generic"
    assert info.limits.max_votes == 7 and info.limits.max_pairs == 8
    assert info.default_max_reasoning_tokens == 64


async def test_deadline_exceeded_cancels_the_queued_work(slow_stack: Stack) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await slow_stack.stub.Compare(req(request_id="late"), timeout=0.3)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    await asyncio.sleep(0.5)
    assert slow_stack.runner.cancelled, "the running judgment must be aborted"
    assert await slow_stack.broker.depth() == 0


async def test_client_cancellation_aborts_running_judgments(slow_stack: Stack) -> None:
    call = slow_stack.stub.Compare(req(request_id="bye", options=pb.JudgeOptions(votes=3)))
    await asyncio.sleep(0.3)
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    await asyncio.sleep(0.5)
    assert len(slow_stack.runner.cancelled) >= 2
    assert await slow_stack.broker.depth() == 0


async def test_queue_full_is_resource_exhausted_with_retry_delay() -> None:
    s = await make_stack(latency_s=2.0, max_depth=2, max_in_flight=1)
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
        await close_stack(s)


async def test_calls_past_the_concurrency_limit_are_resource_exhausted_at_once() -> None:
    s = await make_stack(latency_s=1.0, max_concurrent_rpcs=3)
    try:
        calls = [
            asyncio.ensure_future(s.stub.Compare(req(request_id=f"c{i}", query=f"q{i}?")))
            for i in range(6)
        ]
        done = await asyncio.gather(*calls, return_exceptions=True)
        refused = [r for r in done if isinstance(r, grpc.aio.AioRpcError)]
        assert len(refused) == 3 and all(
            r.code() == grpc.StatusCode.RESOURCE_EXHAUSTED for r in refused
        ), done
        assert all(isinstance(r, pb.CompareResponse) for r in done if r not in refused)
        again = await s.stub.Compare(req(request_id="after"))  # room again once they finished
        assert again.winner == pb.WINNER_A
    finally:
        await close_stack(s)


async def test_health_is_not_serving_until_warm_up_answers() -> None:
    s = await make_stack(warm=False)
    try:
        health = health_pb2_grpc.HealthStub(s.channel)
        for service in ("", "rrm.v1.RewardService"):
            reply = await health.Check(health_pb2.HealthCheckRequest(service=service))
            assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
        await s.server.warm_up(s.comparator)
        reply = await health.Check(health_pb2.HealthCheckRequest(service="rrm.v1.RewardService"))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    finally:
        await close_stack(s)


async def test_reflection_lists_the_services(stack: Stack) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(stack.channel)
    call = stub.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")])
    )
    names = set()
    async for reply in call:
        names |= {s.name for s in reply.list_services_response.service}
    assert {"rrm.v1.RewardService", "grpc.health.v1.Health"} <= names


async def test_every_vote_failing_is_an_error_not_a_verdict(stack: Stack) -> None:
    from reward_service.domain import VoteResult

    stack.runner.script = lambda task: VoteResult.failed("engine exploded")
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stack.stub.Compare(req(request_id="doomed"))
    assert err.value.code() == grpc.StatusCode.ABORTED
    assert "engine exploded" in (err.value.details() or "")
    # a failure is not remembered: the same request retried later gets a fresh judgment
    from reward_service.testing.scripted_runner import prefer_longer

    stack.runner.script = prefer_longer
    reply = await stack.stub.Compare(req(request_id="doomed"))
    assert reply.winner == pb.WINNER_A


async def test_verdict_cache_answers_identical_comparisons_across_requests() -> None:
    from reward_service.queue.cache import MemoryVerdictCache

    cache = MemoryVerdictCache()
    s = await make_stack(cache=cache)
    try:
        first = await s.stub.Compare(req(request_id="c1", options=pb.JudgeOptions(votes=3)))
        calls = len(s.runner.calls)
        second = await s.stub.Compare(req(request_id="c2", options=pb.JudgeOptions(votes=3)))
        assert len(s.runner.calls) == calls, "identical comparison must not reach the engine"
        used = len(first.votes)  # 2: a unanimous majority of 3 stops early
        assert second.usage.cache_hits == used and second.usage.judgments == 0
        assert [v.verdict for v in second.votes] == [v.verdict for v in first.votes]
        # opt-out per request; a different budget is a different key
        await s.stub.Compare(req(request_id="c3", options=pb.JudgeOptions(votes=3, no_cache=True)))
        assert len(s.runner.calls) == calls + used
        await s.stub.Compare(req(request_id="c4", options=pb.JudgeOptions(max_reasoning_tokens=9)))
        assert len(s.runner.calls) == calls + used + 1
    finally:
        await close_stack(s)

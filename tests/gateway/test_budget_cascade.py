"""The budget cascade (issue 16) through a real gRPC gateway on 127.0.0.1, the embedded queue and a
worker: a short stage first, the full budget only when the short verdict is uncertain, and the
answer names the stage that decided.

The worker runs the ScriptedRunner TEST DOUBLE with a script keyed on the task's budget (what a
budget does to a real vote is tested in tests/judge/test_vote.py; the cascade on the real CPU
judge in tests/test_e2e_cascade.py).
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Callable

import grpc
import pytest
from rrm.v1 import reward_pb2 as pb

from reward_service import metrics
from reward_service.domain import ParseStatus, Verdict, VoteResult, VoteTask
from reward_service.gateway import budget
from reward_service.queue.cache import MemoryVerdictCache
from tests.engine.support import wait_until
from tests.gateway.conftest import Stack, close_stack, make_stack

SHORT, FULL = 16, 64


def judge(
    p_short: float | None, p_full: float, *, biased_short: bool = False
) -> Callable[[VoteTask], VoteResult]:
    """A judge whose p(first shown is better) depends on the budget: p_short at SHORT (None: the
    short judgment fails), p_full at FULL; `biased_short`: at SHORT it always prefers the first
    shown response (position bias). Response "x" is A; p is about A, mapped to the shown order."""

    def script(task: VoteTask) -> VoteResult:
        short = task.max_reasoning_tokens == SHORT
        p_a = p_short if short else p_full
        if p_a is None:
            raise RuntimeError("engine error in the short stage")
        a_first = task.pair.first == "x"
        p_first = p_a if a_first else 1.0 - p_a
        if short and biased_short:
            p_first = 0.9
        return VoteResult(
            verdict=Verdict.FIRST if p_first > 0.5 else Verdict.SECOND,
            p_first=p_first,
            status=ParseStatus.BUDGET_FORCED if short else ParseStatus.OK,
            reasoning_tokens=task.max_reasoning_tokens,
            completion_tokens=task.max_reasoning_tokens + 1,
        )

    return script


def cascade_request(
    rid: str, *, threshold: float | None = 0.2, **options: object
) -> pb.CompareRequest:
    cascade = pb.CascadeOptions(short_reasoning_tokens=SHORT)
    if threshold is not None:
        cascade.threshold = threshold
    opts = pb.JudgeOptions(max_reasoning_tokens=FULL, cascade=cascade, **options)  # type: ignore[arg-type]
    return pb.CompareRequest(
        request_id=rid, query="q?", response_a="x", response_b="y", options=opts
    )


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    s = await make_stack()
    yield s
    await close_stack(s)


def use(stack: Stack, script: Callable[[VoteTask], VoteResult]) -> list[int]:
    """Run `script`; the list returned fills with the budget of every judgment the worker runs."""
    budgets: list[int] = []

    def recording(task: VoteTask) -> VoteResult:
        budgets.append(task.max_reasoning_tokens)
        return script(task)

    stack.runner.script = recording
    return budgets


def counter(c: object, label: str) -> float:
    return c.labels(label)._value.get()


async def test_a_certain_short_verdict_stands(stack: Stack) -> None:
    budgets = use(stack, judge(0.9, 0.1))
    before = counter(metrics.CASCADE_COMPARISONS, "short")
    reply = await stack.stub.Compare(cascade_request("certain"))
    assert budgets == [SHORT]
    assert reply.decided_by == pb.CASCADE_STAGE_SHORT
    assert [v.stage for v in reply.votes] == [pb.CASCADE_STAGE_SHORT]
    assert reply.winner == pb.WINNER_A and math.isclose(reply.p_a, 0.9, rel_tol=1e-6)
    assert reply.votes[0].reasoning_tokens == SHORT
    assert counter(metrics.CASCADE_COMPARISONS, "short") == before + 1


async def test_an_uncertain_short_verdict_escalates_and_the_full_stage_decides(
    stack: Stack,
) -> None:
    budgets = use(stack, judge(0.6, 0.2))  # short leans A, uncertain; full says B
    before = counter(metrics.CASCADE_ESCALATIONS, "uncertain")
    reply = await stack.stub.Compare(cascade_request("uncertain"))
    assert budgets == [SHORT, FULL]
    assert reply.decided_by == pb.CASCADE_STAGE_FULL
    assert [v.stage for v in reply.votes] == [pb.CASCADE_STAGE_SHORT, pb.CASCADE_STAGE_FULL]
    assert [v.verdict for v in reply.votes] == [pb.WINNER_A, pb.WINNER_B]
    # winner and p(A) are the full stage's; usage counts both stages
    assert reply.winner == pb.WINNER_B and math.isclose(reply.p_a, 0.2, rel_tol=1e-6)
    assert reply.agreeing_votes == 1
    assert reply.usage.judgments == 2
    assert reply.usage.completion_tokens == SHORT + 1 + FULL + 1
    assert counter(metrics.CASCADE_ESCALATIONS, "uncertain") == before + 1


@pytest.mark.parametrize(("threshold", "escalates"), [(0.0, False), (0.09, False), (0.11, True)])
async def test_the_threshold_is_a_distance_from_one_half(
    stack: Stack, threshold: float, escalates: bool
) -> None:
    use(stack, judge(0.4, 0.8))  # |p - 0.5| = 0.1
    reply = await stack.stub.Compare(cascade_request(f"t{threshold}", threshold=threshold))
    want = pb.CASCADE_STAGE_FULL if escalates else pb.CASCADE_STAGE_SHORT
    assert reply.decided_by == want
    assert reply.winner == (pb.WINNER_A if escalates else pb.WINNER_B)


async def test_the_server_default_threshold_applies_when_unset(stack: Stack) -> None:
    info = await stack.stub.GetInfo(pb.GetInfoRequest())
    assert 0.0 < info.default_cascade_threshold <= 0.5
    use(stack, judge(0.5 + info.default_cascade_threshold / 2, 0.1))
    reply = await stack.stub.Compare(cascade_request("default", threshold=None))
    assert reply.decided_by == pb.CASCADE_STAGE_FULL


async def test_disagreeing_orders_escalate_even_when_each_is_confident(stack: Stack) -> None:
    """votes = 1: with short_both_orders the short stage judges both orders; a judge that always
    names the first shown response is confident in each and contradicts itself."""
    budgets = use(stack, judge(0.9, 0.2, biased_short=True))
    before = counter(metrics.CASCADE_ESCALATIONS, "orders_disagree")
    request = cascade_request("biased", order=pb.ORDER_AS_GIVEN)
    request.options.cascade.short_both_orders = True
    reply = await stack.stub.Compare(request)
    assert budgets == [SHORT, SHORT, FULL]
    short = [v for v in reply.votes if v.stage == pb.CASCADE_STAGE_SHORT]
    assert sorted(v.shown_order for v in short) == [
        pb.SHOWN_ORDER_A_FIRST,
        pb.SHOWN_ORDER_B_FIRST,
    ]
    full = [v for v in reply.votes if v.stage == pb.CASCADE_STAGE_FULL]
    assert [v.shown_order for v in full] == [pb.SHOWN_ORDER_A_FIRST]  # the request's order
    assert reply.decided_by == pb.CASCADE_STAGE_FULL and reply.winner == pb.WINNER_B
    assert counter(metrics.CASCADE_ESCALATIONS, "orders_disagree") == before + 1


async def test_consistent_orders_stand(stack: Stack) -> None:
    budgets = use(stack, judge(0.9, 0.2))
    request = cascade_request("consistent", order=pb.ORDER_AS_GIVEN)
    request.options.cascade.short_both_orders = True
    reply = await stack.stub.Compare(request)
    assert budgets == [SHORT, SHORT]
    assert reply.decided_by == pb.CASCADE_STAGE_SHORT and reply.order_consistent
    assert reply.winner == pb.WINNER_A


async def test_a_failed_short_stage_is_reported_failed_and_escalates(stack: Stack) -> None:
    use(stack, judge(None, 0.2))
    reply = await stack.stub.Compare(cascade_request("short-fails"))
    failed, full = reply.votes
    assert failed.stage == pb.CASCADE_STAGE_SHORT
    assert failed.parse_status == pb.PARSE_STATUS_FAILED and "short stage" in failed.error
    assert failed.verdict == pb.WINNER_UNDECIDED
    assert full.stage == pb.CASCADE_STAGE_FULL and full.parse_status == pb.PARSE_STATUS_OK
    assert reply.decided_by == pb.CASCADE_STAGE_FULL and reply.winner == pb.WINNER_B
    assert reply.usage.judgments == 1  # the failed judgment is no judgment


async def test_a_failed_full_stage_fails_the_call_never_a_default_winner(stack: Stack) -> None:
    def script(task: VoteTask) -> VoteResult:
        if task.max_reasoning_tokens == FULL:
            raise RuntimeError("engine error in the full stage")
        return judge(0.55, 0.9)(task)

    use(stack, script)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stack.stub.Compare(cascade_request("full-fails"))
    assert err.value.code() == grpc.StatusCode.ABORTED
    assert "full stage" in (err.value.details() or "")


async def test_the_deadline_bounds_both_stages(stack: Stack) -> None:
    """A slow full stage: the call ends at its deadline (DEADLINE_EXCEEDED) and the full stage's
    job is cancelled, not left running for nobody."""
    use(stack, judge(0.55, 0.9))
    stack.runner.latency_s = lambda t: 5.0 if t.max_reasoning_tokens == FULL else 0.0
    started = time.monotonic()
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stack.stub.Compare(cascade_request("late"), timeout=1.0)
    elapsed = time.monotonic() - started
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert elapsed < 2.0
    await wait_until(lambda: bool(stack.runner.cancelled), 3.0)
    assert len(stack.runner.cancelled) == 1  # the full-stage judgment, aborted


async def test_each_stage_has_its_own_idempotent_jobs() -> None:
    """The same request again is answered without new engine work; the full stage's jobs are
    the jobs a plain full-budget request makes, so the verdict cache shares them."""
    s = await make_stack(cache=MemoryVerdictCache())
    try:
        calls: list[int] = []

        def script(task: VoteTask) -> VoteResult:
            calls.append(task.max_reasoning_tokens)
            return judge(0.55, 0.2)(task)

        s.runner.script = script
        first = await s.stub.Compare(cascade_request("idem"))
        assert calls == [SHORT, FULL]
        again = await s.stub.Compare(cascade_request("idem"))
        assert calls == [SHORT, FULL] and again.votes == first.votes
        plain = pb.CompareRequest(
            request_id="plain",
            query="q?",
            response_a="x",
            response_b="y",
            options=pb.JudgeOptions(max_reasoning_tokens=FULL),
        )
        reply = await s.stub.Compare(plain)
        assert calls == [SHORT, FULL] and reply.usage.cache_hits == 1
        assert reply.decided_by == pb.CASCADE_STAGE_UNSPECIFIED
        assert reply.votes[0].stage == pb.CASCADE_STAGE_UNSPECIFIED
    finally:
        await close_stack(s)


async def test_rank_matches_name_the_deciding_stage(stack: Stack) -> None:
    use(stack, judge(0.9, 0.1))
    options = pb.JudgeOptions(
        max_reasoning_tokens=FULL,
        cascade=pb.CascadeOptions(short_reasoning_tokens=SHORT, threshold=0.2),
    )
    request = pb.RankRequest(query="q?", candidates=["x", "y", "z"], options=options)
    reply = await stack.stub.Rank(request)
    assert reply.matches and all(m.decided_by for m in reply.matches)
    assert all(v.stage for m in reply.matches for v in m.votes)


@pytest.mark.parametrize(
    ("cascade", "full", "field", "words"),
    [
        (pb.CascadeOptions(short_reasoning_tokens=64), 64, "short_reasoning_tokens", "below"),
        (pb.CascadeOptions(short_reasoning_tokens=100), 64, "short_reasoning_tokens", "below"),
        (pb.CascadeOptions(), 3, "short_reasoning_tokens", "below"),  # a quarter of 3 is 0
        (pb.CascadeOptions(threshold=0.6), 64, "threshold", "[0, 0.5]"),
        (pb.CascadeOptions(threshold=-0.1), 64, "threshold", "[0, 0.5]"),
        (pb.CascadeOptions(threshold=float("nan")), 64, "threshold", "[0, 0.5]"),
    ],
)
async def test_bad_cascade_options_are_invalid_argument_naming_the_field(
    stack: Stack, cascade: pb.CascadeOptions, full: int, field: str, words: str
) -> None:
    calls = list(stack.runner.calls)
    options = pb.JudgeOptions(max_reasoning_tokens=full, cascade=cascade)
    request = pb.CompareRequest(query="q?", response_a="x", response_b="y", options=options)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stack.stub.Compare(request)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = err.value.details() or ""
    assert f"options.cascade.{field}" in details and words in details
    batch = await stack.stub.CompareBatch(pb.CompareBatchRequest(pairs=[request]))
    assert batch.results[0].error.field == f"pairs[0].options.cascade.{field}"
    assert stack.runner.calls == calls, "an invalid request must not reach the engine"


@pytest.mark.parametrize(
    ("options", "judgments"),
    [
        (pb.JudgeOptions(votes=3), 3),
        (pb.JudgeOptions(votes=3, cascade=pb.CascadeOptions()), 6),
        (pb.JudgeOptions(votes=3, cascade=pb.CascadeOptions(short_both_orders=True)), 9),
        (pb.JudgeOptions(votes=3, order=pb.ORDER_BOTH, cascade=pb.CascadeOptions()), 12),
    ],
)
def test_the_judgment_budget_counts_both_stages(options: pb.JudgeOptions, judgments: int) -> None:
    assert budget.per_comparison(options) == judgments

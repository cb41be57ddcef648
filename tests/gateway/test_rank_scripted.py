"""Rank / RankStream / RankBatch / Score over a real gRPC channel, with a scripted judge that
always prefers the longer response (a perfect judge of a known hidden quality: length)."""

from __future__ import annotations

import math

import grpc
import pytest
from rrm.v1 import reward_pb2 as pb

from reward_service.domain import ParseStatus, Verdict, VoteResult, VoteTask
from tests.gateway.conftest import Stack, close_stack, make_stack

CANDIDATES = ["x" * n for n in (3, 9, 1, 7, 5, 2, 8)]  # the longest (9) is index 1
BY_LENGTH = sorted(range(len(CANDIDATES)), key=lambda i: -len(CANDIDATES[i]))


def rank(strategy: int, candidates: list[str] = CANDIDATES, **kw: object) -> pb.RankRequest:
    return pb.RankRequest(query="q", candidates=candidates, strategy=strategy, **kw)  # type: ignore[arg-type]


async def test_knockout_finds_the_best_in_n_minus_1_matches(stack: Stack) -> None:
    reply = await stack.stub.Rank(rank(pb.STRATEGY_KNOCKOUT, request_id="ko"))
    n = len(CANDIDATES)
    assert reply.winner == 1 and reply.ranking[0] == 1
    assert reply.comparisons == n - 1 == len(reply.matches)
    assert reply.rounds == math.ceil(math.log2(n))
    for m in reply.matches:
        longer = m.a if len(CANDIDATES[m.a]) > len(CANDIDATES[m.b]) else m.b
        assert m.winner == longer
    assert reply.usage.judgments == n - 1
    assert sorted(reply.ranking) == list(range(n))


@pytest.mark.parametrize(
    "strategy", [pb.STRATEGY_ELO, pb.STRATEGY_BRADLEY_TERRY, pb.STRATEGY_WIN_RATE]
)
async def test_round_robins_order_every_candidate(stack: Stack, strategy: int) -> None:
    reply = await stack.stub.Rank(rank(strategy, request_id=f"rr-{strategy}"))
    n = len(CANDIDATES)
    assert list(reply.ranking) == BY_LENGTH
    assert reply.comparisons == n * (n - 1) // 2
    assert reply.strategy == strategy
    wins = {s.index: s.wins for s in reply.scores}
    assert [wins[i] for i in BY_LENGTH] == list(range(n - 1, -1, -1))
    if strategy == pb.STRATEGY_BRADLEY_TERRY:
        assert all(s.ci_low <= s.score <= s.ci_high for s in reply.scores)


# A cycle of verdicts (c2 beats c1, c1 beats c0, c0 beats c2) told apart only by the judge's
# confidence: one sure win each for c2 and c1, a coin flip for c0.
CYCLE = ["c0", "c1", "c2"]
CYCLE_P = {("c2", "c1"): 0.95, ("c1", "c0"): 0.9, ("c0", "c2"): 0.55}


def cycle_judge(task: VoteTask) -> VoteResult:
    shown = (task.pair.first, task.pair.second)
    p = CYCLE_P.get(shown) or 1.0 - CYCLE_P[(shown[1], shown[0])]
    return VoteResult(
        verdict=Verdict.FIRST if p > 0.5 else Verdict.SECOND,
        p_first=p,
        status=ParseStatus.OK,
        reasoning_tokens=1,
        prompt_tokens=2,
        completion_tokens=1,
    )


async def test_bradley_terry_round_robin_fits_the_judges_confidence(stack: Stack) -> None:
    """Verdicts alone are a three-way tie (one win each); p(A) as soft points orders the cycle
    by how sure each win was: c2 (0.95 + 0.45), c1 (0.9 + 0.05), c0 (0.55 + 0.1)."""
    stack.runner.script = cycle_judge
    reply = await stack.stub.Rank(rank(pb.STRATEGY_BRADLEY_TERRY, CYCLE, request_id="soft"))
    assert [s.wins for s in reply.scores] == [1, 1, 1]
    assert list(reply.ranking) == [2, 1, 0]
    score = {s.index: s.score for s in reply.scores}
    assert score[2] - score[1] > 0.1 and score[1] - score[0] > 0.1, score


async def test_rank_stream_is_pipelined_not_round_by_round() -> None:
    # candidate "S" is slow: its first-round match takes 1 s, every other match 0.05 s
    cands = ["S" * 3, "a", "bb", "ccc", "dddd", "eeeee", "ffffff", "ggggggg"]

    def latency(task: VoteTask) -> float:
        return 1.0 if "SSS" in (task.pair.first, task.pair.second) else 0.05

    s = await make_stack(latency_s=latency)
    try:
        events = [e async for e in s.stub.RankStream(rank(pb.STRATEGY_KNOCKOUT, cands))]
    finally:
        await close_stack(s)
    matches = [e.match for e in events if e.WhichOneof("event") == "match"]
    rounds = [e.round_finished for e in events if e.WhichOneof("event") == "round_finished"]
    assert events[-1].WhichOneof("event") == "result"
    assert len(matches) == 7 and rounds == [1, 2, 3]
    slow_first = next(i for i, m in enumerate(matches) if m.round == 1 and 0 in (m.a, m.b))
    # a second-round match of the other half finished while the slow first-round match ran
    assert any(m.round == 2 for m in matches[:slow_first])
    assert events[-1].result.winner == 7


async def test_rank_batch_answers_each_prompt_independently(stack: Stack) -> None:
    reply = await stack.stub.RankBatch(
        pb.RankBatchRequest(
            requests=[
                rank(pb.STRATEGY_KNOCKOUT, ["aa", "a", "aaa"]),
                rank(pb.STRATEGY_KNOCKOUT, []),
                rank(pb.STRATEGY_ELO, ["b", "bbbb", "bb"]),
            ]
        )
    )
    assert [r.WhichOneof("outcome") for r in reply.results] == ["response", "error", "response"]
    assert reply.results[0].response.winner == 2
    assert reply.results[1].error.field == "requests[1].candidates"
    assert list(reply.results[2].response.ranking) == [1, 2, 0]


async def test_score_group_rewards_follow_the_ranking(stack: Stack) -> None:
    for strategy in (pb.STRATEGY_ELO, pb.STRATEGY_KNOCKOUT, pb.STRATEGY_WIN_RATE):
        reply = await stack.stub.Score(
            pb.ScoreRequest(
                query="q", candidates=CANDIDATES, mode=pb.SCORE_MODE_GROUP, strategy=strategy
            )
        )
        assert len(reply.rewards) == len(CANDIDATES)
        # the best strictly on top; the worst at the bottom (knockout: the worst may get a bye,
        # so it is only sure to be among the first-round losers or a bye's losers)
        assert reply.rewards[1] > max(r for i, r in enumerate(reply.rewards) if i != 1)
        if strategy != pb.STRATEGY_KNOCKOUT:
            assert reply.rewards[2] == min(reply.rewards)
        else:
            assert reply.rewards[2] < 0
        assert reply.rank.winner == 1
        assert abs(sum(reply.rewards)) < 1e-3 or strategy == pb.STRATEGY_KNOCKOUT


async def test_score_reference_mode_is_p_sample_beats_reference(stack: Stack) -> None:
    reply = await stack.stub.Score(
        pb.ScoreRequest(
            query="q",
            candidates=["long answer", "s"],
            mode=pb.SCORE_MODE_REFERENCE,
            reference="ref",
        )
    )
    assert list(reply.rewards) == pytest.approx([0.9, 0.1])
    assert reply.usage.judgments == 2


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (rank(pb.STRATEGY_KNOCKOUT, ["a"] * 65), "candidates"),
        (rank(pb.STRATEGY_ELO, ["a"] * 33), "candidates"),
        (rank(pb.STRATEGY_ELO, []), "candidates"),
        (rank(pb.STRATEGY_ELO, ["a", ""]), "candidates[1]"),
        (rank(99), "strategy"),
    ],
)
async def test_rank_limits(stack: Stack, request_: pb.RankRequest, field: str) -> None:
    stack.server.service.limits = type(stack.server.service.limits)(
        max_candidates_knockout=64, max_candidates_round_robin=32
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stack.stub.Rank(request_)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (err.value.details() or "").startswith(field + ":")


async def test_score_reference_requires_a_reference(stack: Stack) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stack.stub.Score(
            pb.ScoreRequest(query="q", candidates=["a"], mode=pb.SCORE_MODE_REFERENCE)
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "reference" in (err.value.details() or "")

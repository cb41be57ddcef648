"""Swiss, anchored knockout, in-group reference and adaptive ranking through the real gRPC
gateway, with the scripted judge (a TEST DOUBLE for the engine) that prefers the longer response
with p = 0.9: a judge of a known hidden quality, length."""

from __future__ import annotations

import grpc
import pytest
from rrm.v1 import reward_pb2 as pb

from reward_service.domain import VoteTask
from reward_service.gateway.budget import ADAPTIVE_BUDGET_FACTOR
from reward_service.ranking import comparisons_bound
from reward_service.ranking.swiss import default_rounds
from tests.gateway.conftest import Stack, close_stack, make_stack

CANDIDATES = ["x" * n for n in (3, 9, 1, 7, 5, 2, 8, 4)]  # the longest (9) is index 1
N = len(CANDIDATES)


def rank(strategy: int, **kw: object) -> pb.RankRequest:
    return pb.RankRequest(query="q", candidates=CANDIDATES, strategy=strategy, **kw)  # type: ignore[arg-type]


async def test_swiss_ranks_everyone_without_rematches(stack: Stack) -> None:
    reply = await stack.stub.Rank(rank(pb.STRATEGY_SWISS, request_id="swiss"))
    assert reply.strategy == pb.STRATEGY_SWISS
    assert sorted(reply.ranking) == list(range(N)) and reply.winner == 1
    pairs = [frozenset((m.a, m.b)) for m in reply.matches]
    assert len(pairs) == len(set(pairs)) == N // 2 * default_rounds(N)
    assert reply.rounds == default_rounds(N) and reply.usage.judgments == len(pairs)
    assert reply.ranking[-1] == 2  # the shortest last: a perfect judge, BT-ranked


async def test_anchored_knockout_seeds_by_the_anchor(stack: Stack) -> None:
    reply = await stack.stub.Rank(
        rank(pb.STRATEGY_ANCHORED_KNOCKOUT, request_id="anchored", reference_index=4)
    )
    assert reply.winner == 1 and sorted(reply.ranking) == list(range(N))
    anchor_pass = [m for m in reply.matches if m.round == 1]
    assert sorted(m.a for m in anchor_pass) == [c for c in range(N) if c != 4]
    assert all(m.b == 4 for m in anchor_pass)
    assert N - 1 < reply.comparisons <= 2 * (N - 1)
    # the anchor pass seeds 1 (index 1, "x"*9) and 2 (index 6, "x"*8) into opposite halves
    final = [m for m in reply.matches if m.round == reply.rounds]
    assert len(final) == 1 and {final[0].a, final[0].b} == {1, 6}


async def test_in_group_reference_judges_n_minus_1_pairs(stack: Stack) -> None:
    reply = await stack.stub.Score(
        pb.ScoreRequest(
            query="q",
            candidates=CANDIDATES,
            mode=pb.SCORE_MODE_IN_GROUP_REFERENCE,
            reference_index=4,  # "x" * 5
        )
    )
    assert reply.usage.judgments == N - 1 == reply.rank.comparisons
    assert all(m.b == 4 for m in reply.rank.matches)
    expected = [0.4 if len(c) > 5 else -0.4 if len(c) < 5 else 0.0 for c in CANDIDATES]
    assert list(reply.rewards) == pytest.approx(expected, abs=1e-6)
    assert reply.rank.strategy == pb.STRATEGY_IN_GROUP_REFERENCE


@pytest.mark.parametrize(
    ("target", "k"),
    [(pb.ADAPTIVE_TARGET_TOP_1, 1), (pb.ADAPTIVE_TARGET_TOP_K, 3), (pb.ADAPTIVE_TARGET_FULL, N)],
)
async def test_adaptive_settles_its_target_within_budget(stack: Stack, target: int, k: int) -> None:
    budget = comparisons_bound(N, k) + 3  # tighter than the ~2 judgments per pair it wants
    reply = await stack.stub.Rank(
        rank(
            pb.STRATEGY_ADAPTIVE,
            request_id=f"adaptive-{target}",
            adaptive=pb.AdaptiveOptions(
                judgment_budget=budget,
                target=target,
                top_k=k if k not in (1, N) else 0,  # type: ignore[arg-type]
            ),
        )
    )
    by_length = sorted(range(N), key=lambda i: -len(CANDIDATES[i]))
    assert list(reply.ranking[:k]) == by_length[:k]
    assert sorted(reply.ranking) == list(range(N))
    assert reply.usage.judgments == len(reply.matches) <= budget
    # p = 0.9 per judgment does not settle the late comparisons alone: some pair got more
    pairs = [frozenset((m.a, m.b)) for m in reply.matches]
    assert len(set(pairs)) < len(pairs)


async def test_adaptive_default_budget_and_score(stack: Stack) -> None:
    reply = await stack.stub.Score(
        pb.ScoreRequest(
            query="q",
            candidates=CANDIDATES,
            strategy=pb.STRATEGY_ADAPTIVE,
            mode=pb.SCORE_MODE_GROUP,
        )
    )
    assert reply.usage.judgments <= ADAPTIVE_BUDGET_FACTOR * (N - 1)
    assert reply.rewards[1] == max(reply.rewards) == pytest.approx(1.0)


async def test_swiss_score_rewards_follow_the_ranking(stack: Stack) -> None:
    reply = await stack.stub.Score(
        pb.ScoreRequest(query="q", candidates=CANDIDATES, strategy=pb.STRATEGY_SWISS)
    )
    assert reply.rewards[1] == max(reply.rewards) and reply.rewards[2] == min(reply.rewards)
    assert abs(sum(reply.rewards)) < 1e-3


@pytest.mark.parametrize(
    "strategy",
    [
        pb.STRATEGY_SWISS,
        pb.STRATEGY_ANCHORED_KNOCKOUT,
        pb.STRATEGY_IN_GROUP_REFERENCE,
        pb.STRATEGY_ADAPTIVE,
    ],
)
async def test_rank_stream_sends_every_match_then_the_result(stack: Stack, strategy: int) -> None:
    events = [e async for e in stack.stub.RankStream(rank(strategy, request_id=f"s{strategy}"))]
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds[-1] == "result" and kinds.count("result") == 1
    result = events[-1].result
    assert kinds.count("match") == len(result.matches) > 0
    rounds = [e.round_finished for e in events if e.WhichOneof("event") == "round_finished"]
    assert rounds == list(range(1, result.rounds + 1))


async def test_adaptive_is_pipelined_not_level_by_level() -> None:
    # candidate "SSS" is slow: each of its judgments takes 1 s, every other 0.05 s
    cands = ["SSS", "a", "bb", "ccc", "dddd", "eeeee", "ffffff", "ggggggg"]

    def latency(task: VoteTask) -> float:
        return 1.0 if "SSS" in (task.pair.first, task.pair.second) else 0.05

    s = await make_stack(latency_s=latency)
    try:
        request = pb.RankRequest(
            query="q",
            candidates=cands,
            strategy=pb.STRATEGY_ADAPTIVE,
            adaptive=pb.AdaptiveOptions(max_votes_per_pair=1),
        )
        events = [e async for e in s.stub.RankStream(request)]
    finally:
        await close_stack(s)
    matches = [e.match for e in events if e.WhichOneof("event") == "match"]
    slow_first = next(i for i, m in enumerate(matches) if 0 in (m.a, m.b))
    assert any(m.round == 2 for m in matches[:slow_first])
    assert events[-1].result.winner == 7


def bad(field: str, **kw: object) -> tuple[pb.RankRequest, str]:
    return pb.RankRequest(query="q", candidates=CANDIDATES, **kw), field  # type: ignore[arg-type]


def bad_adaptive(
    field: str, options: pb.JudgeOptions | None = None, **adaptive: int | float
) -> tuple[pb.RankRequest, str]:
    return bad(
        field,
        strategy=pb.STRATEGY_ADAPTIVE,
        options=options,
        adaptive=pb.AdaptiveOptions(**adaptive),  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        bad_adaptive("options.votes", pb.JudgeOptions(votes=3)),
        bad_adaptive("adaptive.top_k", target=pb.ADAPTIVE_TARGET_TOP_K, top_k=N + 1),
        bad_adaptive("adaptive.top_k", top_k=2),
        bad_adaptive("adaptive.target", target=9),
        bad_adaptive("adaptive.judgment_budget", judgment_budget=N - 2),
        # both orders: two judgments per comparison
        bad_adaptive(
            "adaptive.judgment_budget", pb.JudgeOptions(order=pb.ORDER_BOTH), judgment_budget=N
        ),
        bad_adaptive("adaptive.confidence", confidence=1.0),
        bad_adaptive("adaptive.max_votes_per_pair", max_votes_per_pair=99),
        bad("adaptive", strategy=pb.STRATEGY_SWISS, adaptive=pb.AdaptiveOptions()),
        bad("reference_index", strategy=pb.STRATEGY_ELO, reference_index=0),
        bad("reference_index", strategy=pb.STRATEGY_IN_GROUP_REFERENCE, reference_index=N),
    ],
)
async def test_bad_strategy_options_name_the_field(
    stack: Stack, request_: pb.RankRequest, field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stack.stub.Rank(request_)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (err.value.details() or "").startswith(field + ":")


async def test_in_group_reference_mode_rejects_another_strategy(stack: Stack) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stack.stub.Score(
            pb.ScoreRequest(
                query="q",
                candidates=CANDIDATES,
                mode=pb.SCORE_MODE_IN_GROUP_REFERENCE,
                strategy=pb.STRATEGY_ELO,
            )
        )
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (err.value.details() or "").startswith("strategy:")


async def test_rank_batch_mixes_strategies_and_names_the_bad_item(stack: Stack) -> None:
    reply = await stack.stub.RankBatch(
        pb.RankBatchRequest(
            requests=[
                rank(pb.STRATEGY_SWISS),
                rank(pb.STRATEGY_ADAPTIVE, adaptive=pb.AdaptiveOptions(judgment_budget=1)),
                rank(pb.STRATEGY_ADAPTIVE),
            ]
        )
    )
    assert [r.WhichOneof("outcome") for r in reply.results] == ["response", "error", "response"]
    assert reply.results[1].error.field == "requests[1].adaptive.judgment_budget"
    assert reply.results[0].response.winner == reply.results[2].response.winner == 1

"""Every vote of every tournament follows the request's order mode, through the real gateway.

The scripted judge (a TEST DOUBLE for the engine; the real judge is tested with vLLM elsewhere)
always prefers the response shown first: the worst position bias there is. Under ORDER_RANDOM
the votes of one match must then split, because each vote is shown in its own random order;
under ORDER_AS_GIVEN every vote goes to `a`; under ORDER_BOTH every vote index is shown both ways.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from rrm.v1 import reward_pb2 as pb

from reward_service.domain import ParseStatus, Verdict, VoteResult, VoteTask
from tests.gateway.conftest import Stack, close_stack, make_stack

CANDIDATES = ["alpha", "bravo", "charlie", "delta", "echo"]
STRATEGIES = [
    pb.STRATEGY_KNOCKOUT,
    pb.STRATEGY_ELO,
    pb.STRATEGY_BRADLEY_TERRY,
    pb.STRATEGY_WIN_RATE,
    pb.STRATEGY_SWISS,
    pb.STRATEGY_ANCHORED_KNOCKOUT,
    pb.STRATEGY_IN_GROUP_REFERENCE,
    pb.STRATEGY_ADAPTIVE,
]


def prefer_first(task: VoteTask) -> VoteResult:
    """Position bias only: the first shown response always wins."""
    return VoteResult(
        verdict=Verdict.FIRST,
        p_first=0.8,
        status=ParseStatus.OK,
        reasoning_tokens=1,
        prompt_tokens=1,
        completion_tokens=1,
    )


@pytest.fixture
async def biased() -> AsyncIterator[Stack]:
    s = await make_stack()
    s.runner.script = prefer_first  # after the warm-up, which needs a real verdict
    yield s
    await close_stack(s)


def request(strategy: int, order: int, votes: int) -> pb.RankRequest:
    """Adaptive ranking judges a pair once per match and repeats close pairs itself: its votes
    per pair come from `adaptive.max_votes_per_pair` instead of `options.votes`."""
    adaptive = strategy == pb.STRATEGY_ADAPTIVE
    return pb.RankRequest(
        request_id=f"order-{strategy}-{order}-{votes}",
        query="q",
        candidates=CANDIDATES,
        strategy=strategy,  # type: ignore[arg-type]
        options=pb.JudgeOptions(votes=1 if adaptive else votes, order=order),  # type: ignore[arg-type]
        adaptive=pb.AdaptiveOptions(max_votes_per_pair=votes) if adaptive else None,
    )


def votes_by_pair(reply: pb.RankResponse) -> dict[frozenset[int], list[pb.Vote]]:
    pairs: dict[frozenset[int], list[pb.Vote]] = {}
    for m in reply.matches:
        pairs.setdefault(frozenset((m.a, m.b)), []).extend(m.votes)
    return pairs


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_random_order_spreads_a_first_shown_bias_over_the_votes(
    biased: Stack, strategy: int
) -> None:
    reply = await biased.stub.Rank(request(strategy, pb.ORDER_RANDOM, 5))
    votes = [v for m in reply.matches for v in m.votes]
    assert votes
    for v in votes:  # the verdict follows the shown order, mapped back to A/B
        expected = pb.WINNER_A if v.shown_order == pb.SHOWN_ORDER_A_FIRST else pb.WINNER_B
        assert v.verdict == expected
    split = [p for p, vs in votes_by_pair(reply).items() if len({v.verdict for v in vs}) == 2]
    assert split, "no pair's votes split: every vote was shown in one order"
    assert {v.shown_order for v in votes} == {pb.SHOWN_ORDER_A_FIRST, pb.SHOWN_ORDER_B_FIRST}


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_as_given_and_both_orders_are_kept(biased: Stack, strategy: int) -> None:
    given = await biased.stub.Rank(request(strategy, pb.ORDER_AS_GIVEN, 3))
    assert all(v.shown_order == pb.SHOWN_ORDER_A_FIRST for m in given.matches for v in m.votes)
    assert all(m.winner == m.a for m in given.matches)
    both = await biased.stub.Rank(request(strategy, pb.ORDER_BOTH, 1))
    for m in both.matches:
        assert sorted(v.shown_order for v in m.votes) == [
            pb.SHOWN_ORDER_A_FIRST,
            pb.SHOWN_ORDER_B_FIRST,
        ]

"""Majority voting: early stop is exact, `votes_needed` is minimal, draws break by probability."""

from __future__ import annotations

import itertools
from functools import cache

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reward_service.ranking import MajorityVote, Outcome, votes_needed


@cache
def settled(k: int, a: int, b: int, u: int) -> bool:
    """Brute force: every way the remaining votes can go leaves the same strict majority."""
    remaining = k - a - b - u
    finals = {
        (a + extra.count(Outcome.A_WINS)) - (b + extra.count(Outcome.B_WINS))
        for extra in itertools.product(list(Outcome), repeat=remaining)
    }
    return all(d > 0 for d in finals) or all(d < 0 for d in finals) or remaining == 0


def brute_votes_needed(k: int, a: int, b: int, u: int) -> int:
    """The fewest further votes after which some sequence has settled the outcome."""
    remaining = k - a - b - u
    for x in range(remaining + 1):
        for extra in itertools.product(list(Outcome), repeat=x):
            state = (
                a + extra.count(Outcome.A_WINS),
                b + extra.count(Outcome.B_WINS),
                u + extra.count(Outcome.TIE),
            )
            if settled(k, *state):
                return x
    raise AssertionError("all votes in must settle it")


@pytest.mark.parametrize("k", range(1, 8))
def test_votes_needed_and_decided_match_brute_force(k: int) -> None:
    for a, b, u in itertools.product(range(k + 1), repeat=3):
        if a + b + u > k:
            continue
        assert votes_needed(k, a, b, u) == brute_votes_needed(k, a, b, u), (k, a, b, u)
        vote = MajorityVote(k)
        for verdict, count in ((Outcome.A_WINS, a), (Outcome.B_WINS, b), (Outcome.TIE, u)):
            for _ in range(count):
                vote.add(verdict)
        assert vote.decided == settled(k, a, b, u), (k, a, b, u)


@given(
    k=st.integers(1, 16),
    votes=st.lists(
        st.tuples(st.sampled_from(list(Outcome)), st.none() | st.floats(0.0, 1.0)),
        min_size=16,
        max_size=16,
    ),
)
def test_stopping_early_never_changes_the_winner(
    k: int, votes: list[tuple[Outcome, float | None]]
) -> None:
    full = MajorityVote(k)
    stopped_at, early_winner = None, None
    for i, (verdict, p) in enumerate(votes[:k]):
        full.add(verdict, p)
        if full.decided and stopped_at is None:
            stopped_at, early_winner = i + 1, full.winner
    assert full.votes_used == k and full.decided
    assert stopped_at is not None and early_winner == full.winner
    if stopped_at < k:  # an early stop is only ever a strict majority
        assert full.winner is not Outcome.TIE


def test_three_of_five() -> None:
    vote = MajorityVote(5)
    assert vote.votes_needed == 3
    vote.add(Outcome.A_WINS, 0.8)
    vote.add(Outcome.B_WINS, 0.3)
    assert vote.votes_needed == 2 and not vote.decided
    vote.add(Outcome.A_WINS, 0.9)
    assert vote.votes_needed == 1
    vote.add(Outcome.A_WINS, 0.7)
    assert vote.decided and vote.winner is Outcome.A_WINS and vote.votes_used == 4
    vote.add(Outcome.B_WINS, 0.1)  # a vote launched in parallel arrives late: accepted
    assert vote.winner is Outcome.A_WINS
    with pytest.raises(ValueError):
        vote.add(Outcome.A_WINS)


def test_level_count_goes_to_the_larger_summed_probability() -> None:
    level = MajorityVote(2)
    level.add(Outcome.A_WINS, 0.6)
    level.add(Outcome.B_WINS, 0.3)  # the B vote is the more confident one: 0.7 vs 0.6
    assert level.decided and level.winner is Outcome.B_WINS
    assert level.p_a == pytest.approx(0.45)

    counts_first = MajorityVote(4)
    for verdict, p in ((Outcome.A_WINS, 0.55), (Outcome.B_WINS, 0.05), (Outcome.TIE, 0.5)):
        counts_first.add(verdict, p)
    assert not counts_first.decided
    counts_first.add(Outcome.A_WINS, 0.4)
    assert counts_first.winner is Outcome.A_WINS  # the count decides; probabilities only break

    even = MajorityVote(2)
    even.add(Outcome.A_WINS, 0.5)
    even.add(Outcome.B_WINS, 0.5)
    assert even.winner is Outcome.TIE


def test_undecided_votes_use_draws_but_count_for_nobody() -> None:
    vote = MajorityVote(3)
    vote.add(Outcome.TIE)
    vote.add(Outcome.TIE)
    assert not vote.decided and vote.votes_needed == 1
    vote.add(Outcome.TIE)
    assert vote.decided and vote.winner is Outcome.TIE and vote.p_a is None


@pytest.mark.parametrize(
    ("args", "error"),
    [((0, 0, 0), False), ((3, 2, 2), True), ((-1, 0, 0), True), ((3, -1, 0), True)],
)
def test_votes_needed_validation(args: tuple[int, int, int], error: bool) -> None:
    if error:
        with pytest.raises(ValueError):
            votes_needed(*args)
    else:
        assert votes_needed(*args) == 0
    with pytest.raises(ValueError):
        MajorityVote(0)
    with pytest.raises(ValueError):
        MajorityVote(3).add(Outcome.A_WINS, 1.5)

"""Reward mappings: bounded, centred, and in the order of the ranking they come from."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reward_service.ranking import (
    bradley_terry,
    bradley_terry_rewards,
    elo,
    elo_rewards,
    knockout,
    knockout_rewards,
    rank_rewards,
    round_robin_pairs,
    win_rate_rewards,
    wins,
)

from .strategies import perfect_outcomes, seeds


def non_increasing_along(ranking, rewards) -> bool:
    values = [rewards[c] for c in ranking]
    return all(x >= y - 1e-12 for x, y in itertools.pairwise(values))


@given(n=st.integers(2, 16), seed=seeds, data=st.data())
@settings(deadline=None, max_examples=50)
def test_round_robin_rewards_follow_their_ranking_and_bounds(
    n: int, seed: int, data: st.DataObject
) -> None:
    quality = list(data.draw(st.permutations(range(n))))
    pairs = round_robin_pairs(n, seed=seed)
    xs, ys = [a for a, _ in pairs], [b for _, b in pairs]
    outcomes = perfect_outcomes(pairs, quality)

    rated = elo(xs, ys, outcomes, seed=seed)
    r = elo_rewards(rated)
    assert math.fsum(r) == pytest.approx(0.0, abs=1e-12)
    assert max(abs(v) for v in r) <= rated.k * (n - 1) / rated.scale
    assert non_increasing_along(rated.ranking, r)

    tally = wins(xs, ys, outcomes)
    r = win_rate_rewards(tally)
    assert all(-0.5 <= v <= 0.5 for v in r) and non_increasing_along(tally.ranking, r)

    fit = bradley_terry(xs, ys, outcomes, n_bootstrap=0)
    r = bradley_terry_rewards(fit)
    assert all(-0.5 < v < 0.5 for v in r) and non_increasing_along(fit.ranking, r)
    assert math.fsum(r) == pytest.approx(0.0, abs=1e-9)  # P(i>j) + P(j>i) = 1 pairs off

    r = rank_rewards(tally.ranking)
    assert r[tally.ranking[0]] == 1.0 and r[tally.ranking[-1]] == -1.0
    assert math.fsum(r) == pytest.approx(0.0, abs=1e-12)


@given(n=st.integers(1, 65), seed=seeds)
@settings(deadline=None)
def test_knockout_rewards_span_minus_one_to_one(n: int, seed: int) -> None:
    result = knockout(n, max, seed=seed)
    r = knockout_rewards(result)
    if n == 1:
        assert r == (0.0,)
        return
    assert r[result.winner] == 1.0
    assert min(r) == -1.0  # round 1 always has n - P/2 >= 1 matches, so someone lost there
    assert all(-1.0 <= v <= 1.0 for v in r)
    assert non_increasing_along(result.ranking, r)


def test_small_groups() -> None:
    assert rank_rewards([0]) == (0.0,)
    assert rank_rewards([]) == ()
    assert rank_rewards([2, 0, 1]) == (0.0, -1.0, 1.0)
    with pytest.raises(ValueError):
        rank_rewards([0, 0])
    assert elo_rewards(elo([], [], [])) == ()
    assert bradley_terry_rewards(bradley_terry([], [], [], n=1, n_bootstrap=0)) == (0.0,)
    assert elo_rewards(elo([0], [1], [1], seed=None), scale=1.0) == pytest.approx((2.0, -2.0))

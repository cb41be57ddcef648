"""Bradley-Terry: agreement with evalica where the plain MLE exists, the prior, bootstrap."""

from __future__ import annotations

import math

import evalica
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reward_service.ranking import Outcome, bradley_terry, round_robin_pairs, wins

from .strategies import matches as matches_strategy
from .strategies import perfect_outcomes, seeds
from .test_elo import GOLDEN_OUTCOMES, GOLDEN_XS, GOLDEN_YS

# log(evalica.bradley_terry(...).scores) on the Elo golden record (tolerance 1e-12).
GOLDEN_MLE = (
    -0.2054177383256995,
    -0.6770578874313969,
    0.05567350020039776,
    0.5857459676357203,
    0.24105615792097854,
)
# Our default (prior = 1 virtual game per candidate): shrunk towards 0, same order.
GOLDEN_PRIOR_1 = (
    -0.18904445384124977,
    -0.5699186399080973,
    0.039815323870946585,
    0.5031560309094111,
    0.21599173896898943,
)


def evalica_log_scores(xs, ys, outcomes, n, solver) -> list[float]:
    import pandas as pd

    result = evalica.bradley_terry(
        xs,
        ys,
        [evalica.Winner(int(o)) for o in outcomes],
        index=pd.Index(range(n)),
        solver=solver,
        tolerance=1e-12,
        limit=100_000,
    )
    return np.log(result.scores.reindex(range(n)).to_numpy()).tolist()


@st.composite
def connected_round_robin(draw: st.DrawFn) -> tuple[int, list[int], list[int], list[Outcome]]:
    """A round robin with random outcomes plus one tie per pair: every pair has points both
    ways, so the plain maximum likelihood exists and evalica's MM iterations converge."""
    n = draw(st.integers(2, 10))
    pairs = round_robin_pairs(n, seed=draw(seeds))
    decided = draw(
        st.lists(
            st.sampled_from([Outcome.A_WINS, Outcome.B_WINS]),
            min_size=len(pairs),
            max_size=len(pairs),
        )
    )
    xs = [a for a, _ in pairs] * 2
    ys = [b for _, b in pairs] * 2
    return n, xs, ys, decided + [Outcome.TIE] * len(pairs)


def test_golden_values() -> None:
    mle = bradley_terry(GOLDEN_XS, GOLDEN_YS, GOLDEN_OUTCOMES, prior=0.0, n_bootstrap=0)
    assert mle.scores == pytest.approx(GOLDEN_MLE, abs=1e-9)
    for solver in ("pyo3", "naive"):
        expected = evalica_log_scores(GOLDEN_XS, GOLDEN_YS, GOLDEN_OUTCOMES, 5, solver)
        assert mle.scores == pytest.approx(expected, abs=1e-9)
    shrunk = bradley_terry(GOLDEN_XS, GOLDEN_YS, GOLDEN_OUTCOMES, n_bootstrap=0)
    assert shrunk.scores == pytest.approx(GOLDEN_PRIOR_1, abs=1e-9)
    assert shrunk.ranking == mle.ranking == (3, 4, 2, 0, 1)


@given(data=connected_round_robin())
@settings(deadline=None)
def test_plain_mle_agrees_with_evalica(data) -> None:
    n, xs, ys, outcomes = data
    ours = bradley_terry(xs, ys, outcomes, n=n, prior=0.0, n_bootstrap=0)
    assert ours.converged
    for solver in ("pyo3", "naive"):
        expected = evalica_log_scores(xs, ys, outcomes, n, solver)
        assert ours.scores == pytest.approx(expected, abs=1e-6)


@given(n=st.integers(2, 65), schedule_seed=seeds, data=st.data())
@settings(deadline=None, max_examples=50)
def test_perfect_judge_orders_every_candidate_and_stays_finite(
    n: int, schedule_seed: int, data: st.DataObject
) -> None:
    quality = list(data.draw(st.permutations(range(n))))
    pairs = round_robin_pairs(n, seed=schedule_seed)
    outcomes = perfect_outcomes(pairs, quality)
    result = bradley_terry([a for a, _ in pairs], [b for _, b in pairs], outcomes, n_bootstrap=0)
    assert result.converged
    assert all(math.isfinite(s) for s in result.scores)
    assert list(result.ranking) == sorted(range(n), key=lambda c: -quality[c])
    assert sum(result.scores) == pytest.approx(0.0, abs=1e-9)


@given(n=st.integers(2, 12), schedule_seed=seeds, data=st.data())
@settings(deadline=None)
def test_full_round_robin_order_follows_points(
    n: int, schedule_seed: int, data: st.DataObject
) -> None:
    """In a complete round robin the penalised fit is monotone in points won (a proof is in the
    module docstring), whatever the outcomes, ties included."""
    pairs = round_robin_pairs(n, seed=schedule_seed)
    outcomes = data.draw(
        st.lists(st.sampled_from(list(Outcome)), min_size=len(pairs), max_size=len(pairs))
    )
    xs, ys = [a for a, _ in pairs], [b for _, b in pairs]
    fit = bradley_terry(xs, ys, outcomes, n=n, n_bootstrap=0)
    points = wins(xs, ys, outcomes, n=n).points
    for i in range(n):
        for j in range(n):
            if points[i] > points[j]:
                assert fit.scores[i] > fit.scores[j]
            if points[i] == points[j]:
                assert fit.scores[i] == pytest.approx(fit.scores[j], abs=1e-7)


@given(n=st.integers(2, 10), schedule_seed=seeds, data=st.data())
@settings(deadline=None)
def test_relabelling_permutes_strengths(n: int, schedule_seed: int, data: st.DataObject) -> None:
    pairs = round_robin_pairs(n, seed=schedule_seed)
    outcomes = data.draw(
        st.lists(st.sampled_from(list(Outcome)), min_size=len(pairs), max_size=len(pairs))
    )
    perm = data.draw(st.permutations(range(n)))
    xs, ys = [a for a, _ in pairs], [b for _, b in pairs]
    base = bradley_terry(xs, ys, outcomes, n=n, n_bootstrap=0)
    moved_xs, moved_ys = [perm[x] for x in xs], [perm[y] for y in ys]
    moved = bradley_terry(moved_xs, moved_ys, outcomes, n=n, n_bootstrap=0)
    for c in range(n):
        assert moved.scores[perm[c]] == pytest.approx(base.scores[c], abs=1e-9)


def test_a_stronger_prior_shrinks_an_undefeated_candidate() -> None:
    pairs = round_robin_pairs(6, seed=0)
    outcomes = perfect_outcomes(pairs, list(range(6)))
    xs, ys = [a for a, _ in pairs], [b for _, b in pairs]
    tops = [bradley_terry(xs, ys, outcomes, prior=p, n_bootstrap=0).scores[5] for p in (0.1, 1, 10)]
    assert tops[0] > tops[1] > tops[2] > 0
    separable = bradley_terry(xs, ys, outcomes, prior=0.0, n_bootstrap=0, max_iter=30)
    assert not separable.converged  # the plain MLE runs off to infinity, and says so


def test_bootstrap_intervals_are_seeded_and_bracket_the_fit() -> None:
    pairs = round_robin_pairs(6, seed=1) * 3
    rng = np.random.default_rng(3)
    outcomes = [Outcome(int(v)) for v in rng.integers(0, 3, len(pairs))]
    xs, ys = [a for a, _ in pairs], [b for _, b in pairs]
    one = bradley_terry(xs, ys, outcomes, n_bootstrap=100, seed=7)
    assert one == bradley_terry(xs, ys, outcomes, n_bootstrap=100, seed=7)
    assert one.ci_low != bradley_terry(xs, ys, outcomes, n_bootstrap=100, seed=8).ci_low
    assert one.ci_low is not None and one.ci_high is not None
    for low, score, high in zip(one.ci_low, one.scores, one.ci_high, strict=True):
        assert low < score < high
    assert (one.n_bootstrap, one.confidence, one.seed, one.prior) == (100, 0.95, 7, 1.0)
    assert bradley_terry(xs, ys, outcomes, n_bootstrap=0).ci_low is None


def test_probability_and_edge_cases() -> None:
    result = bradley_terry([0], [1], [Outcome.A_WINS], n_bootstrap=10)
    assert result.probability(0, 1) + result.probability(1, 0) == pytest.approx(1.0)
    assert 0.5 < result.probability(0, 1) < 1.0
    empty = bradley_terry([], [], [], n=3, n_bootstrap=5)
    assert empty.scores == (0.0, 0.0, 0.0) and empty.ci_low == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError):
        bradley_terry([0], [1], [1], prior=-1.0)


@settings(max_examples=40, deadline=None)
@given(data=matches_strategy(min_size=1))
def test_soft_points_of_the_outcomes_fit_exactly_as_the_outcomes(data) -> None:
    """a_points 1 / 0.5 / 0 for a win / tie / loss is the hard fit."""
    hard = bradley_terry(data.xs, data.ys, data.outcomes, n=data.n, n_bootstrap=0)
    points = [{Outcome.A_WINS: 1.0, Outcome.TIE: 0.5}.get(o, 0.0) for o in data.outcomes]
    soft = bradley_terry(data.xs, data.ys, data.outcomes, n=data.n, n_bootstrap=0, a_points=points)
    assert soft.scores == pytest.approx(hard.scores, abs=1e-9)


def test_soft_points_weigh_each_judgment_by_its_p() -> None:
    """0 beats 1 and 1 beats 2 with the same label but very different p(A): the surer win
    separates its pair more; a p(A) of 0.5 (an undecided judgment) is a tie."""
    xs, ys, outcomes = [0, 1], [1, 2], [Outcome.A_WINS, Outcome.A_WINS]
    soft = bradley_terry(xs, ys, outcomes, n=3, n_bootstrap=0, a_points=[0.95, 0.6])
    assert soft.ranking == (0, 1, 2)
    assert soft.scores[0] - soft.scores[1] > soft.scores[1] - soft.scores[2] > 0
    tie = bradley_terry([0], [1], [Outcome.TIE], n=2, n_bootstrap=0)
    half = bradley_terry([0], [1], [Outcome.A_WINS], n=2, n_bootstrap=0, a_points=[0.5])
    assert half.scores == pytest.approx(tie.scores)


@pytest.mark.parametrize("bad", [[1.2, 0.5], [0.5], [-0.1, 0.5], [math.nan, 0.5]])
def test_soft_points_outside_0_1_or_miscounted_are_rejected(bad: list[float]) -> None:
    with pytest.raises(ValueError, match="a_points"):
        bradley_terry([0, 1], [1, 2], [Outcome.A_WINS] * 2, n=3, a_points=bad)

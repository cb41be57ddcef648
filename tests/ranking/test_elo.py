"""Elo: agreement with evalica and with the RRM reference script, golden values, properties."""

from __future__ import annotations

import random

import evalica
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reward_service.ranking import Outcome, elo, round_robin_pairs

from .strategies import Matches, matches, perfect_outcomes, seeds

# A fixed record of 14 matches among 5 candidates, ties included; the expected ratings were
# computed with evalica 0.4.2 (both solvers agree to the last digit).
GOLDEN_XS = [0, 1, 2, 3, 4, 0, 1, 2, 3, 0, 2, 4, 1, 3]
GOLDEN_YS = [1, 2, 3, 4, 0, 2, 3, 4, 0, 3, 0, 1, 4, 2]
GOLDEN_OUTCOMES = [1, 1, 2, 0, 1, 1, 2, 1, 0, 2, 1, 1, 0, 2]
GOLDEN_EVALICA_ORDER = (
    997.9659272930998,
    996.0682162291512,
    1000.1368157805629,
    1003.8975798895602,
    1001.931460807626,
)
GOLDEN_SEED_0 = (
    998.0909748598907,
    996.0231494928565,
    1000.0911693589512,
    1003.8407502863856,
    1001.9539560019159,
)


def evalica_scores(xs, ys, outcomes, n, solver, **params) -> list[float]:
    result = evalica.elo(
        xs,
        ys,
        [evalica.Winner(int(o)) for o in outcomes],
        index=pd.Index(range(n)),
        solver=solver,
        **params,
    )
    return result.scores.reindex(range(n)).tolist()


def test_golden_values_match_evalica_in_given_order() -> None:
    result = elo(GOLDEN_XS, GOLDEN_YS, GOLDEN_OUTCOMES, seed=None)
    assert result.scores == pytest.approx(GOLDEN_EVALICA_ORDER, abs=1e-9)
    for solver in ("pyo3", "naive"):
        expected = evalica_scores(GOLDEN_XS, GOLDEN_YS, GOLDEN_OUTCOMES, 5, solver)
        assert result.scores == pytest.approx(expected, abs=1e-9)
    assert result.ranking == (3, 4, 2, 0, 1)
    assert result.winner == 3


def test_golden_values_with_the_default_shuffle() -> None:
    result = elo(GOLDEN_XS, GOLDEN_YS, GOLDEN_OUTCOMES)
    assert result.seed == 0
    assert result.scores == pytest.approx(GOLDEN_SEED_0, abs=1e-9)
    assert sorted(result.order) == list(range(len(GOLDEN_XS)))


def test_reproduces_the_reference_script_for_one_question() -> None:
    """The reference: random.seed(0); random.shuffle(matches); evalica.elo(...); idxmax()."""
    rng = random.Random(7)
    n = 8
    pairs = round_robin_pairs(n, seed=3)
    outcomes = [rng.choice([Outcome.A_WINS, Outcome.B_WINS]) for _ in pairs]
    records = [
        {"rival_1": str(a), "rival_2": str(b), "winner": o}
        for (a, b), o in zip(pairs, outcomes, strict=True)
    ]
    state = random.getstate()
    try:
        random.seed(0)  # the reference seeds the global generator once, then shuffles
        random.shuffle(records)
    finally:
        random.setstate(state)
    reference = evalica.elo(
        [r["rival_1"] for r in records],
        [r["rival_2"] for r in records],
        [evalica.Winner(int(r["winner"])) for r in records],
    )
    ours = elo([a for a, _ in pairs], [b for _, b in pairs], outcomes, seed=0)
    for label, rating in reference.scores.items():
        assert ours.scores[int(label)] == pytest.approx(rating, abs=1e-9)
    assert ours.winner == int(reference.scores.idxmax())


@given(
    m=matches(min_size=1),
    k=st.floats(0.5, 64.0),
    initial=st.floats(0.0, 3000.0),
    base=st.floats(1.5, 100.0),
    scale=st.floats(50.0, 1000.0),
)
@settings(deadline=None)
def test_agrees_with_evalica_on_any_matches(
    m: Matches, k: float, initial: float, base: float, scale: float
) -> None:
    params = {"k": k, "initial": initial, "base": base, "scale": scale}
    ours = elo(m.xs, m.ys, m.outcomes, n=m.n, seed=None, **params)
    for solver in ("pyo3", "naive"):
        expected = evalica_scores(m.xs, m.ys, m.outcomes, m.n, solver, **params)
        assert ours.scores == pytest.approx(expected, abs=1e-9)


@given(m=matches(min_size=1), seed=seeds)
def test_shuffled_run_equals_evalica_on_the_reported_order(m: Matches, seed: int) -> None:
    ours = elo(m.xs, m.ys, m.outcomes, n=m.n, seed=seed)
    o = ours.order
    expected = evalica_scores(
        [m.xs[i] for i in o], [m.ys[i] for i in o], [m.outcomes[i] for i in o], m.n, "pyo3"
    )
    assert ours.scores == pytest.approx(expected, abs=1e-9)


@given(m=matches(), seed=seeds, data=st.data())
def test_relabelling_candidates_permutes_ratings_exactly(
    m: Matches, seed: int, data: st.DataObject
) -> None:
    perm = data.draw(st.permutations(range(m.n)))
    base = elo(m.xs, m.ys, m.outcomes, n=m.n, seed=seed)
    moved = elo([perm[x] for x in m.xs], [perm[y] for y in m.ys], m.outcomes, n=m.n, seed=seed)
    for c in range(m.n):
        assert moved.scores[perm[c]] == base.scores[c]


@given(m=matches(), seed=seeds, k=st.floats(0.0, 1000.0), scale=st.floats(1.0, 1000.0))
def test_ratings_are_finite_and_zero_sum(m: Matches, seed: int, k: float, scale: float) -> None:
    result = elo(m.xs, m.ys, m.outcomes, n=m.n, seed=seed, k=k, scale=scale)
    assert all(abs(r) < float("inf") for r in result.scores)
    assert sum(result.scores) == pytest.approx(1000.0 * m.n, abs=1e-6)
    assert result.ranking == tuple(sorted(range(m.n), key=lambda c: (-result.scores[c], c)))


@given(
    n=st.integers(2, 16),
    seed=seeds,
    schedule_seed=seeds,
    data=st.data(),
)
@settings(deadline=None)
def test_perfect_judge_full_order_up_to_16_candidates(
    n: int, seed: int, schedule_seed: int, data: st.DataObject
) -> None:
    """With K=4 and one round robin, Elo orders a perfect judge's candidates exactly for
    n <= 16, whatever the match order: a hill-climbing search over orders that minimises the
    rating gap between adjacent candidates still leaves about 2 points at n = 16. It is NOT
    true in general (see the sweep below)."""
    quality = data.draw(st.permutations(range(n)))
    pairs = round_robin_pairs(n, seed=schedule_seed)
    outcomes = perfect_outcomes(pairs, list(quality))
    result = elo([a for a, _ in pairs], [b for _, b in pairs], outcomes, n=n, seed=seed)
    assert list(result.ranking) == sorted(range(n), key=lambda c: -quality[c])


def test_perfect_judge_beyond_16_candidates_only_swaps_neighbours() -> None:
    """The weaker property that holds for 17..65 candidates (checked on a fixed sweep, since it
    is empirical): every misordering is between candidates adjacent in true quality, and few.

    Why not exact: a candidate's final rating is K * (wins - sum of expected scores), and the
    expected scores depend on when it met whom. With random orders, adjacent swaps appear from
    n ~ 50 (about 1% of round robins at n = 60); an adversarial order swaps neighbours at n = 23
    and candidates two apart at n = 40. Win counts and Bradley-Terry are exact for any n.
    """
    inversions = 0
    for n in range(17, 66, 4):
        for trial in range(6):
            rng = random.Random(1000 * n + trial)
            quality = list(range(n))
            rng.shuffle(quality)
            pairs = round_robin_pairs(n, seed=rng.randrange(2**32))
            outcomes = perfect_outcomes(pairs, quality)
            result = elo([a for a, _ in pairs], [b for _, b in pairs], outcomes, n=n, seed=trial)
            position = {c: i for i, c in enumerate(result.ranking)}
            truth = sorted(range(n), key=lambda c: -quality[c])
            for true_rank, c in enumerate(truth):
                assert abs(position[c] - true_rank) <= 1
            inversions += sum(result.ranking[i] != truth[i] for i in range(n)) // 2
    assert inversions <= 6  # 2 with these seeds: rare, and never more than a neighbour swap


@given(n=st.integers(0, 40), seed=seeds)
def test_round_robin_pairs_each_unordered_pair_once(n: int, seed: int) -> None:
    pairs = round_robin_pairs(n, seed)
    assert len(pairs) == n * (n - 1) // 2
    assert {frozenset(p) for p in pairs} == {
        frozenset((a, b)) for a in range(n) for b in range(a + 1, n)
    }
    assert round_robin_pairs(n, seed) == pairs


def test_round_robin_pairs_randomise_order_and_side() -> None:
    pairs = round_robin_pairs(20, seed=1)
    assert sum(a < b for a, b in pairs) not in (0, len(pairs))
    assert pairs != sorted(pairs)
    assert round_robin_pairs(20, seed=2) != pairs
    assert round_robin_pairs(4, seed=None) == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]


def test_echoes_parameters_and_keeps_unplayed_candidates_at_initial() -> None:
    result = elo([0], [1], [Outcome.TIE], n=3, initial=1500.0, k=32.0, seed=5)
    assert (result.n, result.initial, result.k, result.base, result.scale, result.seed) == (
        3,
        1500.0,
        32.0,
        10.0,
        400.0,
        5,
    )
    assert result.scores == (1500.0, 1500.0, 1500.0)
    assert elo([], [], [], n=0).winner is None


@pytest.mark.parametrize(
    ("xs", "ys", "outcomes"),
    [([0], [1, 2], [1]), ([0], [0], [1]), ([0], [3], [1]), ([0], [1], [7])],
)
def test_rejects_malformed_matches(xs, ys, outcomes) -> None:
    with pytest.raises(ValueError):
        elo(xs, ys, outcomes, n=3)

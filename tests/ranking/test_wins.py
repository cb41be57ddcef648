"""Win counts: evalica's `counting`, conservation, exact order under a perfect judge."""

from __future__ import annotations

import evalica
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from reward_service.ranking import Outcome, round_robin_pairs, wins

from .strategies import Matches, matches, perfect_outcomes, seeds


@given(m=matches(min_size=1))
def test_points_equal_evalica_counting(m: Matches) -> None:
    ours = wins(m.xs, m.ys, m.outcomes, n=m.n)
    for solver in ("pyo3", "naive"):
        theirs = evalica.counting(
            m.xs,
            m.ys,
            [evalica.Winner(int(o)) for o in m.outcomes],
            index=pd.Index(range(m.n)),
            solver=solver,
        )
        assert ours.points == pytest.approx(theirs.scores.reindex(range(m.n)).tolist())


@given(m=matches())
def test_tallies_are_conserved(m: Matches) -> None:
    result = wins(m.xs, m.ys, m.outcomes, n=m.n)
    assert sum(result.wins) == sum(result.losses) == sum(o != Outcome.TIE for o in m.outcomes)
    assert sum(result.games) == 2 * len(m.xs)
    assert all(0.0 <= r <= 1.0 for r in result.scores)
    assert sorted(result.ranking) == list(range(m.n))


@given(m=matches(), data=st.data())
def test_relabelling_permutes_tallies(m: Matches, data: st.DataObject) -> None:
    perm = data.draw(st.permutations(range(m.n)))
    base = wins(m.xs, m.ys, m.outcomes, n=m.n)
    moved = wins([perm[x] for x in m.xs], [perm[y] for y in m.ys], m.outcomes, n=m.n)
    for c in range(m.n):
        assert moved.scores[perm[c]] == base.scores[c]
        assert moved.games[perm[c]] == base.games[c]


@given(n=st.integers(2, 65), schedule_seed=seeds, data=st.data())
def test_perfect_judge_full_round_robin_orders_exactly(
    n: int, schedule_seed: int, data: st.DataObject
) -> None:
    quality = list(data.draw(st.permutations(range(n))))
    pairs = round_robin_pairs(n, seed=schedule_seed)
    result = wins([a for a, _ in pairs], [b for _, b in pairs], perfect_outcomes(pairs, quality))
    assert list(result.ranking) == sorted(range(n), key=lambda c: -quality[c])
    assert sorted(result.wins) == list(range(n))


def test_unplayed_candidates_sit_at_the_neutral_rate_and_show_zero_games() -> None:
    result = wins([0, 0], [1, 1], [Outcome.A_WINS, Outcome.TIE], n=3, tie_weight=0.5)
    assert result.scores == (0.75, 0.25, 0.5)
    assert result.games == (2, 2, 0)
    assert result.ranking == (0, 2, 1)
    assert (result.wins, result.losses, result.ties) == ((1, 0, 0), (0, 1, 0), (1, 1, 0))

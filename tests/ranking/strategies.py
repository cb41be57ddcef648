"""Hypothesis strategies shared by the ranking tests: match lists and hidden qualities."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import strategies as st

from reward_service.ranking import Outcome


@dataclass(frozen=True)
class Matches:
    n: int
    xs: list[int]
    ys: list[int]
    outcomes: list[Outcome]


@st.composite
def matches(
    draw: st.DrawFn, *, min_n: int = 2, max_n: int = 12, min_size: int = 0, max_size: int = 60
) -> Matches:
    """Any list of matches between distinct candidates of 0..n-1, ties included."""
    n = draw(st.integers(min_n, max_n))
    pair = st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)).filter(lambda p: p[0] != p[1])
    pairs = draw(st.lists(pair, min_size=min_size, max_size=max_size))
    outcomes = draw(
        st.lists(st.sampled_from(list(Outcome)), min_size=len(pairs), max_size=len(pairs))
    )
    return Matches(n, [a for a, _ in pairs], [b for _, b in pairs], outcomes)


def perfect_outcomes(pairs: list[tuple[int, int]], quality: list[int]) -> list[Outcome]:
    """A judge that always prefers the higher hidden quality."""
    return [Outcome.A_WINS if quality[a] > quality[b] else Outcome.B_WINS for a, b in pairs]


seeds = st.integers(0, 2**32 - 1)

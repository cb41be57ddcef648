"""The vocabulary every ranking algorithm shares: a match outcome and a match record.

Outcomes use evalica's numbering (Draw=0, X=1, Y=2), so a list of outcomes can be handed to
evalica unchanged and `Outcome(int(verdict))` converts a judge verdict once it is in caller order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum


class Outcome(IntEnum):
    """Who won one comparison of `a` against `b`.

    A judge never says "tie"; TIE stands for an *undecided* judgment (unparseable verdict), which
    the reference scores as half a win in accuracy and Elo. Algorithms that need a winner (the
    knockout) do not accept TIE: the caller resolves it first with `knockout.break_tie`.
    """

    TIE = 0
    A_WINS = 1
    B_WINS = 2


@dataclass(frozen=True, slots=True)
class MatchResult:
    """One decided (or undecided) comparison; `p_a` is the judge's probability that `a` is
    better, None when the judge gave no probability."""

    a: int
    b: int
    outcome: Outcome
    p_a: float | None = None

    @property
    def winner(self) -> int | None:
        """The winning candidate, None for a tie."""
        if self.outcome is Outcome.A_WINS:
            return self.a
        if self.outcome is Outcome.B_WINS:
            return self.b
        return None


def split_matches(
    matches: Sequence[MatchResult],
) -> tuple[list[int], list[int], list[Outcome]]:
    """Column form `(xs, ys, outcomes)`, the shape `elo`, `bradley_terry` and `wins` take."""
    return [m.a for m in matches], [m.b for m in matches], [m.outcome for m in matches]


def validate_matches(
    xs: Sequence[int], ys: Sequence[int], outcomes: Sequence[int], n: int | None
) -> tuple[int, list[Outcome]]:
    """Check the columns once for every algorithm and return `(n, outcomes as Outcome)`.

    `n` defaults to one more than the largest index seen, so candidates that never played are
    only counted when the caller says how many there are.
    """
    if not len(xs) == len(ys) == len(outcomes):
        raise ValueError(
            f"xs, ys and outcomes differ in length: {len(xs)}, {len(ys)}, {len(outcomes)}"
        )
    seen = max([*xs, *ys], default=-1) + 1
    if n is None:
        n = seen
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    for x, y in zip(xs, ys, strict=True):
        if not (0 <= x < n and 0 <= y < n):
            raise ValueError(f"candidate index out of range 0..{n - 1}: ({x}, {y})")
        if x == y:
            raise ValueError(f"a candidate cannot play itself: ({x}, {y})")
    return n, [Outcome(o) for o in outcomes]


def ranking_from_scores(scores: Sequence[float]) -> tuple[int, ...]:
    """Indices best first; equal scores keep index order, so the order never depends on
    floating-point noise in a sort and is the same on every run."""
    return tuple(sorted(range(len(scores)), key=lambda i: (-scores[i], i)))

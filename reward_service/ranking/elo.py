"""Round-robin scheduling and sequential Elo ratings, exactly as the RRM reference computes them.

The reference (`RRM-evaluation/scripts/elo_accuracy_results.py` in microsoft/LMOps) calls
`random.seed(0)`, shuffles each question's matches with `random.shuffle`, then feeds them to
`evalica.elo` with its defaults (initial 1000, base 10, scale 400, K 4, a draw = half a win).
evalica itself does not shuffle: it applies the matches in the order given. So here the shuffle is
explicit and seeded per call: `elo(..., seed=0)` reproduces the reference's permutation for one
question (the reference reuses one global generator across questions, which no service can
reproduce per request), and `seed=None` keeps the given order, which is what evalica does.

Sequential Elo depends on the match order. With K = 4 and a perfect judge, one round robin is
ordered exactly up to 16 candidates whatever the order; beyond that, neighbours in quality can
swap (rarely with random orders below ~50 candidates). Win counts and Bradley-Terry have no such
order effect; Elo is kept because it is what the paper measured.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from reward_service.ranking.outcome import Outcome, ranking_from_scores, validate_matches

# A draw (an undecided judgment) scores half a win for both sides, as in evalica's tie_weight.
TIE_SCORE = 0.5


@dataclass(frozen=True, slots=True)
class EloResult:
    """Ratings after all updates. `order` lists the match indices in the order they were applied,
    so a rating can be recomputed by hand (or by evalica) from the same sequence."""

    n: int
    scores: tuple[float, ...]
    ranking: tuple[int, ...]
    order: tuple[int, ...]
    initial: float
    base: float
    scale: float
    k: float
    seed: int | None

    @property
    def winner(self) -> int | None:
        """The arg-max rating (the reference's best-of-N pick); None when there are no candidates.

        Equal ratings go to the lower index. The reference takes pandas' `idxmax`, whose tie
        order follows first appearance in the shuffled matches; exact ties need a symmetric
        record (e.g. two candidates and one draw), so the two rules practically never differ.
        """
        return self.ranking[0] if self.ranking else None


def expected_score(rating_a: float, rating_b: float, *, base: float, scale: float) -> float:
    """P(a beats b) under the Elo model: 1 / (1 + base ** ((rating_b - rating_a) / scale)).

    Written as a logistic in the stable direction, so ratings far apart give 0 or 1 instead of
    an OverflowError; equal to evalica's `q_a / (q_a + q_b)` up to rounding.
    """
    d = (rating_b - rating_a) / scale * math.log(base)
    if d > 0:
        t = math.exp(-d)
        return t / (1.0 + t)
    return 1.0 / (1.0 + math.exp(d))


def elo(
    xs: Sequence[int],
    ys: Sequence[int],
    outcomes: Sequence[int],
    *,
    n: int | None = None,
    initial: float = 1000.0,
    base: float = 10.0,
    scale: float = 400.0,
    k: float = 4.0,
    seed: int | None = 0,
) -> EloResult:
    """Sequential Elo over the matches `xs[i]` vs `ys[i]` with `outcomes[i]`.

    The matches are shuffled with `random.Random(seed)` (None: kept in the given order), then each
    updates both ratings at once from the pre-match ratings, as evalica does. Candidates that never
    played keep `initial`. The shuffle permutes list positions, so pass the matches in a fixed
    (schedule) order, never in completion order, or the ratings would depend on timing.
    """
    n, results = validate_matches(xs, ys, outcomes, n)
    if not (base > 0 and scale > 0 and math.isfinite(k) and math.isfinite(initial)):
        raise ValueError(f"need base > 0, scale > 0, finite k and initial; got {base}, {scale}")
    order = list(range(len(results)))
    if seed is not None:
        random.Random(seed).shuffle(order)
    ratings = [float(initial)] * n
    for i in order:
        x, y = xs[i], ys[i]
        e_x = expected_score(ratings[x], ratings[y], base=base, scale=scale)
        outcome = results[i]
        s_x = 1.0 if outcome is Outcome.A_WINS else TIE_SCORE if outcome is Outcome.TIE else 0.0
        delta = k * (s_x - e_x)
        ratings[x] += delta
        ratings[y] -= delta
    return EloResult(
        n=n,
        scores=tuple(ratings),
        ranking=ranking_from_scores(ratings),
        order=tuple(order),
        initial=initial,
        base=base,
        scale=scale,
        k=k,
        seed=seed,
    )


def round_robin_pairs(n: int, seed: int | None = 0) -> list[tuple[int, int]]:
    """Every unordered pair of `n` candidates exactly once, as `(shown first, shown second)`.

    Both the list order and which side is shown first are drawn from `random.Random(seed)`: the
    reference shows each pair in a random order to spread the judge's position bias, and a random
    list order keeps a candidate's comparisons from clustering at the head of a queue.
    `seed=None` gives the plain lexicographic schedule with the lower index first.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    pairs = [(a, b) for a in range(n) for b in range(a + 1, n)]
    if seed is None:
        return pairs
    rng = random.Random(seed)
    rng.shuffle(pairs)
    return [(a, b) if rng.random() < 0.5 else (b, a) for a, b in pairs]

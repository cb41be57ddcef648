"""Win counts and win rates: the simplest round-robin ranking, and the wins/losses every
strategy reports per candidate."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from reward_service.ranking.outcome import Outcome, validate_matches

# A candidate that played no game has no evidence either way; it sits at the neutral rate.
NO_GAMES_WIN_RATE = 0.5


@dataclass(frozen=True, slots=True)
class WinsResult:
    """Per-candidate tallies. `scores[i]` is the win rate `(wins + tie_weight * ties) / games`,
    or NO_GAMES_WIN_RATE when `games[i] == 0` (visible in `games`, so never mistaken for play)."""

    n: int
    scores: tuple[float, ...]
    ranking: tuple[int, ...]
    wins: tuple[int, ...]
    losses: tuple[int, ...]
    ties: tuple[int, ...]
    games: tuple[int, ...]
    tie_weight: float

    @property
    def points(self) -> tuple[float, ...]:
        """Wins plus `tie_weight` per tie: evalica's `counting` score."""
        return tuple(w + self.tie_weight * t for w, t in zip(self.wins, self.ties, strict=True))


def wins(
    xs: Sequence[int],
    ys: Sequence[int],
    outcomes: Sequence[int],
    *,
    n: int | None = None,
    tie_weight: float = 0.5,
) -> WinsResult:
    """Tally the matches. The ranking is by win rate (fair when candidates played different
    numbers of games), then by wins, then by index."""
    n, results = validate_matches(xs, ys, outcomes, n)
    won, lost, tied = [0] * n, [0] * n, [0] * n
    for x, y, outcome in zip(xs, ys, results, strict=True):
        if outcome is Outcome.A_WINS:
            won[x] += 1
            lost[y] += 1
        elif outcome is Outcome.B_WINS:
            won[y] += 1
            lost[x] += 1
        else:
            tied[x] += 1
            tied[y] += 1
    games = [won[i] + lost[i] + tied[i] for i in range(n)]
    rates = [
        (won[i] + tie_weight * tied[i]) / games[i] if games[i] else NO_GAMES_WIN_RATE
        for i in range(n)
    ]
    ranking = tuple(sorted(range(n), key=lambda i: (-rates[i], -won[i], i)))
    return WinsResult(
        n=n,
        scores=tuple(rates),
        ranking=ranking,
        wins=tuple(won),
        losses=tuple(lost),
        ties=tuple(tied),
        games=tuple(games),
        tie_weight=tie_weight,
    )

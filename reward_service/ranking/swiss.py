"""Swiss-system tournament: every candidate plays every round against one with a similar score,
never the same opponent twice; a full ranking in about n/2 * (log2 n + 2) judgments.

Pairing by score makes most judgments between neighbours in quality, where a ranking needs them;
the final order comes from a Bradley-Terry fit of all the judgments (it weighs whom you beat, so
it needs no Buchholz-style tie-breaks). A round's pairs depend on every result of the round
before, so rounds are the one barrier here; inside a round all matches run at once.

Odd n: each round the lowest-standing candidate that had no bye yet sits out and scores a point
for pairing (the fit never sees byes). When no pairing without a rematch exists any more, the
tournament ends early: fewer rounds, never a rematch.
"""

from __future__ import annotations

import math
import random

from reward_service.ranking.bradley_terry import bradley_terry
from reward_service.ranking.knockout import PendingMatch
from reward_service.ranking.outcome import MatchResult, Outcome
from reward_service.ranking.rewards import bradley_terry_rewards
from reward_service.ranking.schedule import ScheduleResult, points, tally

# Backtracking steps one pairing may take before it counts as impossible (far above what the
# pairings of <= 64 candidates over log2 n + 2 rounds need).
_MAX_PAIRING_STEPS = 200_000


def default_rounds(n: int) -> int:
    """ceil(log2 n) + 2 rounds, at most n - 1 (a round robin's worth)."""
    if n < 2:
        return 0
    return min(math.ceil(math.log2(n)) + 2, n - 1)


class SwissTournament:
    """The state of one Swiss tournament; drive it with `take_ready` / `record`."""

    def __init__(self, n: int, seed: int = 0, rounds: int | None = None) -> None:
        if n < 1:
            raise ValueError(f"a Swiss tournament needs at least one candidate, got n={n}")
        self.n = n
        self.seed = seed
        self.max_rounds = default_rounds(n) if rounds is None else rounds
        if not 0 <= self.max_rounds <= max(n - 1, 0) + (n % 2):
            raise ValueError(f"rounds must be within 0..{n - 1 + n % 2} for n={n}")
        rng = random.Random(f"swiss:{seed}")
        self._tiebreak = list(range(n))
        rng.shuffle(self._tiebreak)  # initial standings: a seeded random order
        self._score = [0.0] * n
        self._played: set[frozenset[int]] = set()
        self._had_bye: set[int] = set()
        self._pending: dict[int, PendingMatch] = {}
        self._results: list[MatchResult] = []
        self._round = 0  # the round whose pairs were issued last
        self._next_id = 0
        self._finished = False
        self._issued = False
        self._advance()

    def _standings(self) -> list[int]:
        return sorted(range(self.n), key=lambda c: (-self._score[c], self._tiebreak[c]))

    def _pair(self, players: list[int]) -> list[tuple[int, int]] | None:
        """Pair top-down by standing with backtracking: the first unplayed opponent, else the
        next. None when every pairing has a rematch."""
        steps = 0

        def solve(rest: list[int]) -> list[tuple[int, int]] | None:
            nonlocal steps
            if not rest:
                return []
            first = rest[0]
            for i in range(1, len(rest)):
                steps += 1
                if steps > _MAX_PAIRING_STEPS:
                    return None
                if frozenset((first, rest[i])) in self._played:
                    continue
                tail = solve(rest[1:i] + rest[i + 1 :])
                if tail is not None:
                    return [(first, rest[i]), *tail]
            return None

        return solve(players)

    def _advance(self) -> None:
        """Pair the next round as soon as the last one is fully recorded, or finish."""
        if self._pending or self._finished:
            return
        if self._round >= self.max_rounds or self.n < 2:
            self._finished = True
            return
        self._start_round()

    def _start_round(self) -> None:
        standing = self._standings()
        if self.n % 2:
            bye = next((c for c in reversed(standing) if c not in self._had_bye), standing[-1])
            standing.remove(bye)
        pairs = self._pair(standing)
        if pairs is None:  # no rematch-free pairing left: end here
            self._finished = True
            return
        if self.n % 2:
            self._had_bye.add(bye)
            self._score[bye] += 1.0
        self._round += 1
        for position, (a, b) in enumerate(pairs):
            self._pending[self._next_id] = PendingMatch(self._next_id, self._round, position, a, b)
            self._next_id += 1
        self._issued = False

    def take_ready(self) -> list[PendingMatch]:
        if self._issued or self._finished:
            return []
        self._issued = True
        return list(self._pending.values())

    def record(self, match_id: int, outcome: Outcome, p_a: float | None = None) -> None:
        match = self._pending.pop(match_id, None)
        if match is None:
            raise ValueError(f"match {match_id} is not in flight")
        outcome = Outcome(outcome)
        self._results.append(MatchResult(match.a, match.b, outcome, p_a))
        self._played.add(frozenset((match.a, match.b)))
        self._score[match.a] += points(outcome)
        self._score[match.b] += 1.0 - points(outcome)
        self._advance()

    @property
    def rounds_complete(self) -> int:
        return self._round - (1 if self._pending else 0)

    @property
    def rounds(self) -> int:
        """Rounds paired so far (the final count once done)."""
        return self._round

    @property
    def done(self) -> bool:
        return self._finished

    def result(self) -> ScheduleResult:
        if not self.done:
            raise ValueError("the Swiss tournament is not finished")
        xs = [m.a for m in self._results]
        ys = [m.b for m in self._results]
        fit = bradley_terry(xs, ys, [m.outcome for m in self._results], n=self.n, n_bootstrap=0)
        won, lost = tally(self.n, self._results)
        return ScheduleResult(
            strategy="swiss",
            n=self.n,
            ranking=fit.ranking,
            scores=fit.scores,
            rewards=bradley_terry_rewards(fit),
            wins=won,
            losses=lost,
            matches=tuple(self._results),
            rounds=self._round,
        )

"""In-group reference (BRPO, Writing-Zero): one response of the group is the reference and every
other one is compared with it: n - 1 judgments, one reward per candidate.

The reward is p(candidate beats the reference) - 0.5 (the judge's probability when it gave one,
else the vote: 1, 0, or 0.5 undecided); the reference itself gets 0, as good as itself. Cheaper
than any tournament, and each reward depends on one judgment only, so a noisy judgment moves
one candidate's reward, not the whole group's order. All judgments run at once.
"""

from __future__ import annotations

from reward_service.ranking.knockout import PendingMatch
from reward_service.ranking.outcome import MatchResult, Outcome, ranking_from_scores
from reward_service.ranking.schedule import ScheduleResult, against_one, points, tally


class InGroupReference:
    """Compare every candidate with `reference` (default: a seeded random group member)."""

    def __init__(self, n: int, seed: int = 0, reference: int | None = None) -> None:
        self.reference, matches = against_one(n, seed, reference, "reference")
        self.n = n
        self.seed = seed
        self._matches = {m.match_id: m for m in matches}
        self._in_flight: dict[int, PendingMatch] = {}
        self._issued = False
        self._results: dict[int, MatchResult] = {}
        self._order: list[int] = []

    def take_ready(self) -> list[PendingMatch]:
        if self._issued:
            return []
        self._issued = True
        self._in_flight = dict(self._matches)
        return list(self._matches.values())

    def record(self, match_id: int, outcome: Outcome, p_a: float | None = None) -> None:
        m = self._in_flight.pop(match_id, None)
        if m is None:
            raise ValueError(f"match {match_id} is not in flight")
        self._results[match_id] = MatchResult(m.a, m.b, Outcome(outcome), p_a)
        self._order.append(match_id)

    @property
    def rounds_complete(self) -> int:
        return 1 if self.done and self.n > 1 else 0

    @property
    def done(self) -> bool:
        return len(self._results) == len(self._matches)

    def result(self) -> ScheduleResult:
        if not self.done:
            raise ValueError("the in-group reference comparisons are not finished")
        p_beats = [0.5] * self.n
        for r in self._results.values():
            p_beats[r.a] = r.p_a if r.p_a is not None else points(r.outcome)
        matches = [self._results[i] for i in self._order]
        won, lost = tally(self.n, matches)
        return ScheduleResult(
            strategy="in_group_reference",
            n=self.n,
            ranking=ranking_from_scores(p_beats),
            scores=tuple(p_beats),
            rewards=tuple(p - 0.5 for p in p_beats),
            wins=won,
            losses=lost,
            matches=tuple(matches),
            rounds=1 if self.n > 1 else 0,
        )

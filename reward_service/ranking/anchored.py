"""Anchored, seeded single elimination (ArenaRL): a cheap first pass compares every candidate with
one anchor response, and its results seed a knockout bracket, so strong candidates meet late.

A random bracket often pairs the two best in round 1 and throws the runner-up's result away;
seeding by "beats the anchor, and how surely" keeps them apart until the final at the price of
n - 1 extra judgments (about 2n in all, still O(n)). A bracket match between the anchor and a
candidate it already met in the first pass reuses that judgment instead of asking again.

Rounds: round 1 is the anchor pass; bracket round r is round r + 1. The anchor pass is a
barrier (seeds need all of it); inside the bracket a match starts as soon as both entrants
are known, as in `KnockoutBracket`.
"""

from __future__ import annotations

import random

from reward_service.ranking.knockout import KnockoutBracket, PendingMatch, break_tie, seeded_layout
from reward_service.ranking.outcome import MatchResult, Outcome
from reward_service.ranking.rewards import rank_rewards
from reward_service.ranking.schedule import ScheduleResult, against_one, points, tally


class AnchoredKnockout:
    """Seeding pass against `anchor` (default: a seeded random candidate), then the bracket."""

    def __init__(self, n: int, seed: int = 0, anchor: int | None = None) -> None:
        self.anchor, self._seeding = against_one(n, seed, anchor, "anchor")
        self.n = n
        self.seed = seed
        self._offset = max(n - 1, 0)  # bracket match ids follow the anchor pass's
        self._seed_results: dict[int, MatchResult] = {}
        self._bracket: KnockoutBracket | None = None
        self._seeds: list[int] = []
        self._results: list[MatchResult] = []
        self._in_flight: dict[int, PendingMatch] = {}
        self._queued: list[PendingMatch] = list(self._seeding)
        if n == 1:
            self._start_bracket()

    def _anchor_score(self, c: int) -> tuple[float, float]:
        """(points against the anchor, p(beats the anchor)); the anchor is level with itself."""
        if c == self.anchor:
            return 0.5, 0.5
        r = self._seed_results[c if c < self.anchor else c - 1]
        p = r.p_a if r.p_a is not None else points(r.outcome)
        return points(r.outcome), p

    def _start_bracket(self) -> None:
        order = list(range(self.n))
        random.Random(f"seeds:{self.seed}").shuffle(order)  # last tie-break: a seeded coin
        tiebreak = {c: i for i, c in enumerate(order)}
        self._seeds = sorted(
            range(self.n), key=lambda c: (*(-s for s in self._anchor_score(c)), tiebreak[c])
        )
        self._bracket = KnockoutBracket(self.n, self.seed, layout=seeded_layout(self._seeds))
        self._pump()

    def _earlier(self, a: int, b: int) -> MatchResult | None:
        """The anchor pass's judgment of this pair, oriented as (a, b), if there was one."""
        if self.anchor not in (a, b):
            return None
        other = b if a == self.anchor else a
        r = self._seed_results[other if other < self.anchor else other - 1]
        if r.a == a:
            return r
        flipped = {Outcome.A_WINS: Outcome.B_WINS, Outcome.B_WINS: Outcome.A_WINS}
        p_a = None if r.p_a is None else 1.0 - r.p_a
        return MatchResult(a, b, flipped.get(r.outcome, Outcome.TIE), p_a)

    def take_ready(self) -> list[PendingMatch]:
        ready, self._queued = self._queued, []
        self._in_flight.update((m.match_id, m) for m in ready)
        return ready

    def _pump(self) -> None:
        """Queue the bracket's newly ready matches; a rematch with the anchor is answered from
        the anchor pass at once (which can make further matches ready)."""
        assert self._bracket is not None
        while fresh := self._bracket.take_ready():
            for m in fresh:
                earlier = self._earlier(m.a, m.b)
                if earlier is None:
                    match_id = m.match_id + self._offset
                    self._queued.append(PendingMatch(match_id, m.round + 1, m.position, m.a, m.b))
                else:
                    self._advance(m.match_id, earlier)

    def _advance(self, bracket_id: int, r: MatchResult) -> None:
        assert self._bracket is not None
        winner = r.winner
        if winner is None:
            winner = break_tie(r.a, r.b, r.p_a, seed=self.seed, salt=bracket_id)
        self._bracket.record(bracket_id, winner, r.p_a)

    def record(self, match_id: int, outcome: Outcome, p_a: float | None = None) -> None:
        m = self._in_flight.pop(match_id, None)
        if m is None:
            raise ValueError(f"match {match_id} is not in flight")
        r = MatchResult(m.a, m.b, Outcome(outcome), p_a)
        self._results.append(r)
        if match_id < self._offset:
            self._seed_results[match_id] = r
            if len(self._seed_results) == len(self._seeding):
                self._start_bracket()
        else:
            self._advance(match_id - self._offset, r)
            self._pump()

    @property
    def rounds_complete(self) -> int:
        if self._bracket is None:
            return 0
        return 1 + self._bracket.rounds_complete

    @property
    def done(self) -> bool:
        return self._bracket is not None and self._bracket.done

    def result(self) -> ScheduleResult:
        if self._bracket is None or not self._bracket.done:
            raise ValueError("the anchored knockout is not finished")
        bracket = self._bracket.result()
        seed_rank = {c: i for i, c in enumerate(self._seeds)}
        # Like the knockout's order, but the last tie-break is the seed (evidence), not the slot.
        eliminator: dict[int, int] = {}
        for m in bracket.matches:
            w = m.winner
            assert w is not None
            eliminator[m.b if w == m.a else m.a] = w
        reached = bracket.rounds_reached

        def key(c: int) -> tuple[int, int, int]:
            by = eliminator.get(c)
            return (-reached[c], -(reached[by] if by is not None else 0), seed_rank[c])

        ranking = tuple(sorted(range(self.n), key=key))
        won, lost = tally(self.n, self._results)
        return ScheduleResult(
            strategy="anchored_knockout",
            n=self.n,
            ranking=ranking,
            scores=tuple(float(r) for r in reached),
            rewards=rank_rewards(ranking),
            wins=won,
            losses=lost,
            matches=tuple(self._results),
            rounds=1 + bracket.rounds if self.n > 1 else 0,
        )

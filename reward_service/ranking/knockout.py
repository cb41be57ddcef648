"""A single-elimination bracket that an async service can drive one match at a time.

There is no round barrier: a match is offered as soon as both of its entrants are known, so a
second-round match can run while other first-round matches are still being judged. The bracket is
a deterministic function of `(n, seed)` and the recorded winners, so a service that persisted its
results can rebuild it after a crash by replaying `record` calls.

Bye rule (the reference has none): the bracket has P = 2**ceil(log2 n) slots, filled from a
seeded random permutation of the candidates. The first P - n first-round pairs get one candidate
and one empty slot (the bye); since P - n < P/2, no pair is two byes. A bye-holder enters round 2
without a match. So round 1 has n - P/2 matches, round r >= 2 has P / 2**r, and the total is
exactly n - 1 matches in ceil(log2 n) rounds (n = 1: no match, no round, the only candidate wins).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from reward_service.ranking.outcome import MatchResult, Outcome


@dataclass(frozen=True, slots=True)
class PendingMatch:
    """A match whose two entrants are known. `a` comes from the lower-numbered bracket slot.

    `match_id = P - P // 2**(round - 1) + position`: rounds are numbered from 1 and positions
    from 0 within a round, so ids are stable for a given `n` (bye pairs leave gaps in round 1).
    """

    match_id: int
    round: int
    position: int
    a: int
    b: int


@dataclass(frozen=True, slots=True)
class KnockoutResult:
    """The finished bracket.

    `rounds_reached[c]` is the round in which `c` lost, or `rounds + 1` for the winner (so
    `rounds_reached[c] - 1` rounds survived, byes included). The ranking orders by round reached,
    then by how far the candidate that eliminated you went (losing to the finalist beats losing
    to a first-round loser's conqueror), then by bracket slot, which the seed randomised.
    """

    n: int
    seed: int
    rounds: int
    winner: int
    ranking: tuple[int, ...]
    rounds_reached: tuple[int, ...]
    wins: tuple[int, ...]
    losses: tuple[int, ...]
    matches: tuple[MatchResult, ...]
    slots: tuple[int | None, ...]

    @property
    def scores(self) -> tuple[float, ...]:
        """Round reached, as the per-candidate score the other strategies report."""
        return tuple(float(r) for r in self.rounds_reached)


def break_tie(a: int, b: int, p_a: float | None, *, seed: int, salt: int = 0) -> int:
    """Pick a winner for an undecided match: the side the judge's probability favours, else a
    seeded coin. The coin depends only on `{a, b}`, `seed` and `salt` (pass the match id), so a
    retry decides the same way and swapping the shown order does not flip it."""
    if p_a is not None and math.isfinite(p_a) and p_a != 0.5:
        return a if p_a > 0.5 else b
    lo, hi = min(a, b), max(a, b)
    coin = random.Random(f"break_tie:{seed}:{salt}:{lo}:{hi}").random()
    return lo if coin < 0.5 else hi


class KnockoutBracket:
    """The mutable state of one knockout; pure (no I/O, no clock).

    Drive it with `take_ready()` (or `ready_matches()` + `start()`), then `record()` each winner
    in any order; new matches become ready as soon as their two feeding matches are recorded.
    """

    def __init__(
        self, n: int, seed: int = 0, *, layout: Sequence[int | None] | None = None
    ) -> None:
        """`layout` (optional) places the candidates in the P slots instead of the seeded draw
        (see `seeded_layout`): None marks a bye and may only be the second slot of a pair."""
        if n < 1:
            raise ValueError(f"a knockout needs at least one candidate, got n={n}")
        self.n = n
        self.seed = seed
        self.rounds = math.ceil(math.log2(n)) if n > 1 else 0
        self.size = 1 << self.rounds
        if layout is None:
            order = list(range(n))
            random.Random(seed).shuffle(order)
            drawn = iter(order)
            slots: list[int | None] = [order[0]] if n == 1 else []
            for pair in range(self.size // 2):
                bye = pair < self.size - n
                slots.extend([next(drawn), None if bye else next(drawn)])
        else:
            slots = list(layout)
            if len(slots) != max(self.size, 1) or sorted(c for c in slots if c is not None) != list(
                range(n)
            ):
                raise ValueError(f"layout must place 0..{n - 1} in {self.size} slots")
            if any(c is None for c in slots[0::2]):
                raise ValueError("a bye (None) may only be the second slot of a pair")
        self.slots: tuple[int | None, ...] = tuple(slots)
        # _levels[r][j]: the entrant of round r + 1 at position j (None: not decided yet);
        # the last level holds the champion.
        self._levels: list[list[int | None]] = [list(self.slots)]
        self._levels += [[None] * (self.size >> r) for r in range(1, self.rounds + 1)]
        self._reached = [1] * n
        self._eliminated_by: list[int | None] = [None] * n
        self._started: set[int] = set()
        self._results: dict[int, MatchResult] = {}
        self._order: list[int] = []
        for position in range(self.size // 2 if self.rounds else 0):
            if self.slots[2 * position + 1] is None:  # a bye: advance without a match
                self._advance(1, position, self.slots[2 * position])

    def _match_id(self, round_: int, position: int) -> int:
        return self.size - (self.size >> (round_ - 1)) + position

    def _locate(self, match_id: int) -> tuple[int, int]:
        for round_ in range(1, self.rounds + 1):
            first = self._match_id(round_, 0)
            if first <= match_id < first + (self.size >> round_):
                return round_, match_id - first
        raise ValueError(f"no match {match_id} in a bracket of {self.n}")

    def _advance(self, round_: int, position: int, winner: int | None) -> None:
        assert winner is not None
        self._levels[round_][position] = winner
        self._reached[winner] = round_ + 1

    def _pending(self, round_: int, position: int) -> PendingMatch | None:
        a, b = self._levels[round_ - 1][2 * position], self._levels[round_ - 1][2 * position + 1]
        if a is None or b is None:
            return None
        return PendingMatch(self._match_id(round_, position), round_, position, a, b)

    def ready_matches(self) -> list[PendingMatch]:
        """Matches with both entrants known, neither started nor recorded, by match id."""
        ready = []
        for round_ in range(1, self.rounds + 1):
            for position in range(self.size >> round_):
                match = self._pending(round_, position)
                if match is None or match.match_id in self._started:
                    continue
                if match.match_id not in self._results:
                    ready.append(match)
        return ready

    def start(self, match_id: int) -> None:
        """Mark a ready match as in flight, so `ready_matches` stops offering it."""
        if not any(m.match_id == match_id for m in self.ready_matches()):
            raise ValueError(f"match {match_id} is not ready (unknown entrants or already taken)")
        self._started.add(match_id)

    def take_ready(self) -> list[PendingMatch]:
        """`ready_matches()`, each marked as started: what a scheduler submits next."""
        ready = self.ready_matches()
        self._started.update(m.match_id for m in ready)
        return ready

    @property
    def in_flight(self) -> frozenset[int]:
        """Started matches that have no result yet."""
        return frozenset(self._started - self._results.keys())

    def record(self, match_id: int, winner: int, p_a: float | None = None) -> None:
        """Store a match's winner and advance it. Recording the same winner again is a no-op
        (a retried job); a different winner for a recorded match is an error."""
        round_, position = self._locate(match_id)
        match = self._pending(round_, position)
        if match is None:
            raise ValueError(f"match {match_id} cannot be recorded: its entrants are not known")
        if winner not in (match.a, match.b):
            raise ValueError(f"{winner} is not in match {match_id} ({match.a} vs {match.b})")
        previous = self._results.get(match_id)
        if previous is not None:
            if previous.winner != winner:
                raise ValueError(f"match {match_id} already won by {previous.winner}, not {winner}")
            return
        outcome = Outcome.A_WINS if winner == match.a else Outcome.B_WINS
        self._results[match_id] = MatchResult(match.a, match.b, outcome, p_a)
        self._order.append(match_id)
        loser = match.b if winner == match.a else match.a
        self._eliminated_by[loser] = winner
        self._advance(round_, position, winner)

    @property
    def matches_played(self) -> int:
        return len(self._results)

    @property
    def rounds_complete(self) -> int:
        """How many rounds have every match recorded (byes need none): the progress a service
        reports as "round finished". Round r can only complete after round r - 1."""
        complete = 0
        for round_ in range(1, self.rounds + 1):
            if None in self._levels[round_]:
                break
            complete = round_
        return complete

    @property
    def done(self) -> bool:
        return self._levels[-1][0] is not None

    @property
    def winner(self) -> int | None:
        """The champion, None until the final is recorded."""
        return self._levels[-1][0]

    def result(self) -> KnockoutResult:
        """The frozen outcome; only once `done`."""
        champion = self.winner
        if champion is None:
            raise ValueError(f"the knockout is not finished ({self.matches_played}/{self.n - 1})")
        slot_of = {c: s for s, c in enumerate(self.slots) if c is not None}

        def key(c: int) -> tuple[int, int, int]:
            eliminator = self._eliminated_by[c]
            eliminator_reached = self._reached[eliminator] if eliminator is not None else 0
            return (-self._reached[c], -eliminator_reached, slot_of[c])

        matches = tuple(self._results[i] for i in self._order)
        won, lost = [0] * self.n, [0] * self.n
        for m in matches:
            winner = m.winner
            assert winner is not None
            won[winner] += 1
            lost[m.b if winner == m.a else m.a] += 1
        return KnockoutResult(
            n=self.n,
            seed=self.seed,
            rounds=self.rounds,
            winner=champion,
            ranking=tuple(sorted(range(self.n), key=key)),
            rounds_reached=tuple(self._reached),
            wins=tuple(won),
            losses=tuple(lost),
            matches=matches,
            slots=self.slots,
        )


def seeded_layout(seeds: Sequence[int]) -> list[int | None]:
    """Standard tournament seeding: `seeds` best first; seed s meets seed P + 1 - s in round 1,
    the top two can only meet in the final, and the byes go to the top seeds."""
    n = len(seeds)
    size = 1 << (math.ceil(math.log2(n)) if n > 1 else 0)
    order = [1]
    while len(order) < size:
        order = [x for s in order for x in (s, 2 * len(order) + 1 - s)]
    return [seeds[s - 1] if s <= n else None for s in order]


def knockout(n: int, judge_fn: Callable[[int, int], int], seed: int = 0) -> KnockoutResult:
    """Run a whole bracket synchronously; `judge_fn(a, b)` returns the winner (a or b).
    For simulations and tests; the service drives `KnockoutBracket` itself."""
    bracket = KnockoutBracket(n, seed)
    while not bracket.done:
        for match in bracket.take_ready():
            bracket.record(match.match_id, judge_fn(match.a, match.b))
    return bracket.result()

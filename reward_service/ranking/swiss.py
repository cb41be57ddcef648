"""Swiss-system tournament: every candidate plays every round against one with a similar score,
never the same opponent twice; a full ranking in about n/2 * (log2 n + 2) judgments.

Pairing: by points (a win 1, an undecided judgment half), inside a score group by the current
Bradley-Terry estimate, top-down (1 v 2, 3 v 4, ...), skipping any opponent already met. Pairing
neighbours in quality puts the judgments where a ranking needs them. The final order is a
Bradley-Terry fit of all the judgments (it weighs whom you beat, so it needs no Buchholz-style
tie-breaks); a judgment with a p(A) enters the fit as p(A) points (a soft outcome), else as 1 / 0.5
/ 0.

Pipelined: the next round is paired score group by score group as soon as a group is known, not
after the whole round. After a candidate's round-r game its round-(r+1) score group is fixed once
no game still running in round r can bring another candidate to the same score: the candidates
whose points exceed (the highest points of anyone still playing) + 1 are paired at once, the top
one in that set with its nearest unmet neighbour, and so on; an odd one left at the bottom of the
set floats down and waits for the next group. A batch is paired only if everyone still unpaired
can then still be paired without a rematch (checked by finding such a pairing), so pairing early
never ends a round early. Two rounds at most are in flight: round r + 2 is paired only once every
round-(r + 1) pair is known (its no-rematch constraints need them). With everything finished at
the same time this is exactly round-by-round pairing; with judgments finishing at different
times the strong candidates (whose groups close first) move on while slow games end.

Odd n: a phantom at the bottom of the standings; playing it is a bye (a point for pairing, never
seen by the fit, at most once per candidate while another candidate has none: the lowest-standing
candidate without one gets it). When no rematch-free pairing of a round exists any more, the
tournament ends before it: fewer rounds, never a rematch.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

from reward_service.ranking.bradley_terry import BradleyTerryResult, bradley_terry
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


def pair_top_down(
    players: list[int], met: Callable[[int, int], bool], max_steps: int = _MAX_PAIRING_STEPS
) -> list[tuple[int, int]] | None:
    """Pair `players` in their order with backtracking: the first with its first unmet opponent,
    else the next. None when every pairing has a rematch (or the search gives up)."""
    steps = 0

    def solve(rest: list[int]) -> list[tuple[int, int]] | None:
        nonlocal steps
        if not rest:
            return []
        first = rest[0]
        for i in range(1, len(rest)):
            steps += 1
            if steps > max_steps:
                return None
            if met(first, rest[i]):
                continue
            tail = solve(rest[1:i] + rest[i + 1 :])
            if tail is not None:
                return [(first, rest[i]), *tail]
        return None

    return solve(players) if len(players) % 2 == 0 else None


class SwissTournament:
    """The state of one Swiss tournament; drive it with `take_ready` / `record`.

    `pipelined=False` pairs a round only after the last one is fully recorded (the classic
    barrier; kept to measure what pipelining costs)."""

    def __init__(
        self,
        n: int,
        seed: int = 0,
        rounds: int | None = None,
        *,
        pipelined: bool = True,
        prior: float = 1.0,
    ) -> None:
        if n < 1:
            raise ValueError(f"a Swiss tournament needs at least one candidate, got n={n}")
        self.n = n
        self.seed = seed
        self.pipelined = pipelined
        self.prior = prior
        self.max_rounds = default_rounds(n) if rounds is None else rounds
        if not 0 <= self.max_rounds <= max(n - 1, 0) + (n % 2):
            raise ValueError(f"rounds must be within 0..{n - 1 + n % 2} for n={n}")
        rng = random.Random(f"swiss:{seed}")
        self._tiebreak = list(range(n))
        rng.shuffle(self._tiebreak)  # initial standings: a seeded random order
        self._phantom = n if n % 2 else None  # the bye
        self._players = list(range(n)) + ([n] if n % 2 else [])
        self._score = [0.0] * n
        self._played: set[frozenset[int]] = set()  # pairs met or paired, byes as (c, phantom)
        self._busy: dict[int, int] = {}  # candidate -> id of its match in flight
        self._pending: dict[int, PendingMatch] = {}
        self._fresh: list[PendingMatch] = []  # paired, not yet handed out
        self._open_in_round: dict[int, int] = {}  # round -> its matches not yet recorded
        self._results: list[MatchResult] = []
        self._round = 0  # the round being paired (or paired last)
        self._unpaired: list[int] = []  # players still to pair in `self._round`
        self._fallback: list[tuple[int, int]] = []  # a valid pairing of `_unpaired`
        self._position = 0
        self._next_id = 0
        self._finished = False
        self._strength: tuple[float, ...] = (0.0,) * n
        self._fitted_at = 0
        self._advance()

    # -- standings -------------------------------------------------------------------------

    def _fit(self) -> tuple[float, ...]:
        """The Bradley-Terry strengths of the results so far (cached per result count)."""
        if self._fitted_at != len(self._results):
            self._strength = self._bradley_terry().scores
            self._fitted_at = len(self._results)
        return self._strength

    def _bradley_terry(self) -> BradleyTerryResult:
        rs = self._results
        soft = [m.p_a if m.p_a is not None else points(m.outcome) for m in rs]
        return bradley_terry(
            [m.a for m in rs],
            [m.b for m in rs],
            [m.outcome for m in rs],
            n=self.n,
            prior=self.prior,
            n_bootstrap=0,
            a_points=soft,
        )

    def _points(self, c: int) -> float:
        return -math.inf if c == self._phantom else self._score[c]

    def _standing(self, players: list[int]) -> list[int]:
        """Best first: points, then (without a bye so far, for the phantom's sake) strength."""
        strength = self._fit() if self._results else None

        def key(c: int) -> tuple[float, float, int]:
            if c == self._phantom:
                return (math.inf, 0.0, 0)
            return (-self._score[c], -(strength[c] if strength else 0.0), self._tiebreak[c])

        return sorted(players, key=key)

    def _met(self, a: int, b: int) -> bool:
        return frozenset((a, b)) in self._played

    # -- pairing ---------------------------------------------------------------------------

    def _advance(self) -> None:
        """Pair whatever can be paired now; finish when nothing is left to play."""
        while not self._finished:
            if not self._unpaired and (
                self._round >= self.max_rounds or self.n < 2 or not self._open_round()
            ):
                if not self._pending:
                    self._finished = True
                return
            if not self._pair_ready():
                return

    def _open_round(self) -> bool:
        """Start pairing the next round, if a rematch-free pairing of everyone exists (waits for
        the current round to finish when pipelining is off)."""
        if self._pending and not self.pipelined:
            return False
        whole = pair_top_down(self._standing(self._players), self._met)
        if whole is None:  # no rematch-free pairing left: end here
            self.max_rounds = self._round
            return False
        self._round += 1
        self._position = 0
        self._unpaired = list(self._players)
        self._fallback = whole
        return True

    def _ready(self) -> list[int]:
        """The unpaired players whose score group for this round is final, best first."""
        playing = [c for c in self._unpaired if c in self._busy]  # still in the last round
        if not playing:
            return self._standing(self._unpaired)
        reach = max(self._score[c] for c in playing) + 1.0
        free = [c for c in self._unpaired if c not in self._busy and self._points(c) > reach]
        return self._standing(free) if len(free) > 1 else []  # (the fit only when it is used)

    def _pair_ready(self) -> bool:
        """Pair the ready batch if the rest can still be paired; True if anything was paired."""
        batch = self._ready()
        if len(batch) % 2:
            batch = batch[:-1]  # the lowest floats down to the next group
        if not batch:
            return False
        pairs = pair_top_down(batch, self._met)
        rest = [c for c in self._unpaired if c not in batch]
        rest_pairs = None
        if pairs is not None:
            for a, b in pairs:  # tentatively
                self._played.add(frozenset((a, b)))
            rest_pairs = pair_top_down(self._standing(rest), self._met)
            for a, b in pairs:
                self._played.discard(frozenset((a, b)))
        if pairs is None or rest_pairs is None:
            if len(batch) < len(self._unpaired):
                return False  # wait for more results
            pairs, rest = self._fallback, []  # the end of the round: the known valid pairing
        for a, b in pairs:
            self._issue(a, b)
        self._unpaired = rest
        self._fallback = rest_pairs or []
        return True

    def _issue(self, a: int, b: int) -> None:
        self._played.add(frozenset((a, b)))
        if self._phantom in (a, b):
            bye = b if a == self._phantom else a
            self._score[bye] += 1.0
            return
        match = PendingMatch(self._next_id, self._round, self._position, a, b)
        self._next_id += 1
        self._position += 1
        self._pending[match.match_id] = match
        self._busy[a] = self._busy[b] = match.match_id
        self._open_in_round[self._round] = self._open_in_round.get(self._round, 0) + 1
        self._fresh.append(match)

    # -- the Schedule interface ------------------------------------------------------------

    def take_ready(self) -> list[PendingMatch]:
        fresh, self._fresh = self._fresh, []
        return fresh

    def record(self, match_id: int, outcome: Outcome, p_a: float | None = None) -> None:
        match = self._pending.pop(match_id, None)
        if match is None:
            raise ValueError(f"match {match_id} is not in flight")
        outcome = Outcome(outcome)
        self._results.append(MatchResult(match.a, match.b, outcome, p_a))
        del self._busy[match.a], self._busy[match.b]
        self._open_in_round[match.round] -= 1
        self._score[match.a] += points(outcome)
        self._score[match.b] += 1.0 - points(outcome)
        self._advance()

    @property
    def rounds_complete(self) -> int:
        """Rounds fully paired and fully recorded."""
        complete = 0
        for r in range(1, self._round + 1):
            if self._open_in_round.get(r, 0) or (r == self._round and self._unpaired):
                break
            complete = r
        return complete

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
        fit = self._bradley_terry()
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

"""The shape every incremental strategy shares (beside `KnockoutBracket`): it proposes the judgments
it can use now, takes their results in any order, and ends with a ranking, scores and rewards.

A service drives a `Schedule` the same way for every strategy: submit `take_ready()`, `record()`
each result as it arrives, repeat until `done`. Nothing waits for a round unless the strategy
needs the round's results to know the next pairs (Swiss pairing, seeding before a bracket).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from reward_service.ranking.knockout import PendingMatch
from reward_service.ranking.outcome import MatchResult, Outcome


@dataclass(frozen=True, slots=True)
class ScheduleResult:
    """A finished strategy. `matches` holds one entry per judgment made, in record order;
    `rewards` is the strategy's own reward mapping (centred, one per candidate)."""

    strategy: str
    n: int
    ranking: tuple[int, ...]
    scores: tuple[float, ...]
    rewards: tuple[float, ...]
    wins: tuple[int, ...]
    losses: tuple[int, ...]
    matches: tuple[MatchResult, ...]
    rounds: int

    @property
    def winner(self) -> int:
        return self.ranking[0]


class Schedule(Protocol):
    """An incremental ranking strategy; pure (no I/O, no clock), seeded, replayable."""

    n: int

    def take_ready(self) -> list[PendingMatch]:
        """The judgments to start now, each marked as started (empty: wait for results)."""
        ...

    def record(self, match_id: int, outcome: Outcome, p_a: float | None = None) -> None:
        """One judgment's result in (a, b) order; TIE is an undecided judgment."""
        ...

    @property
    def done(self) -> bool: ...

    @property
    def rounds_complete(self) -> int:
        """Rounds whose every judgment is recorded (a progress count for streaming)."""
        ...

    def result(self) -> ScheduleResult: ...


def against_one(n: int, seed: int, given: int | None, role: str) -> tuple[int, list[PendingMatch]]:
    """The member everyone is compared with (`given`, else a seeded random one) and the n - 1
    judgments `(other, member)`, all in round 1, by match id."""
    if n < 1:
        raise ValueError(f"a {role} needs at least one candidate, got n={n}")
    if given is not None and not 0 <= given < n:
        raise ValueError(f"{role} must be within 0..{n - 1}, got {given}")
    member = random.Random(f"{role}:{seed}").randrange(n) if given is None else given
    others = (c for c in range(n) if c != member)
    return member, [PendingMatch(i, 1, i, c, member) for i, c in enumerate(others)]


def points(outcome: Outcome) -> float:
    """What `a` scored: a win 1, an undecided judgment half, a loss 0."""
    return 1.0 if outcome is Outcome.A_WINS else 0.5 if outcome is Outcome.TIE else 0.0


def tally(n: int, matches: list[MatchResult]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Wins and losses per candidate (undecided judgments count for neither)."""
    won, lost = [0] * n, [0] * n
    for m in matches:
        winner = m.winner
        if winner is not None:
            won[winner] += 1
            lost[m.b if winner == m.a else m.a] += 1
    return tuple(won), tuple(lost)


Judge = Callable[[int, int], tuple[Outcome, float | None]]


def run_schedule(schedule: Schedule, judge: Judge) -> ScheduleResult:
    """Drive a schedule synchronously with `judge(a, b) -> (outcome, p_a)`: for simulations and
    tests; the service drives it with concurrent judgments instead."""
    while not schedule.done:
        ready = schedule.take_ready()  # may finish the schedule (a decision without a judgment)
        if not ready and not schedule.done:
            raise RuntimeError("a schedule offered nothing while not done and nothing in flight")
        for m in ready:
            outcome, p_a = judge(m.a, m.b)
            schedule.record(m.match_id, outcome, p_a)
    return schedule.result()

"""Plain data the judge, queue, worker and gateway pass to each other (no gRPC, no I/O).

Everything here speaks in *shown order*: "first" is whatever the judge saw as Assistant 1.
Mapping back to the caller's A/B happens once, in the gateway.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum, StrEnum


class Verdict(IntEnum):
    """A judge's pick among the two responses, in the order they were shown."""

    UNDECIDED = 0
    FIRST = 1
    SECOND = 2


class ParseStatus(StrEnum):
    OK = "ok"  # the judge named a winner by itself
    BUDGET_FORCED = "budget_forced"  # reasoning budget ran out; verdict read from logprobs
    UNPARSEABLE = "unparseable"  # finished without a verdict we can read
    FAILED = "failed"  # no judgment was made (engine error, retries exhausted, deadline)
    DEADLINE_FORCED = "deadline_forced"  # the job's deadline neared: reasoning closed, verdict read
    STOP_FORCED = "stop_forced"  # stopped without a verdict; read from logprobs, as asked


@dataclass(frozen=True, slots=True)
class Turn:
    role: str  # "user" | "assistant" | "system"
    content: str


@dataclass(frozen=True, slots=True)
class Pair:
    """One comparison as the judge sees it: a query, optional history, two responses."""

    query: str
    first: str
    second: str
    history: tuple[Turn, ...] = ()


@dataclass(frozen=True, slots=True)
class VoteTask:
    """One sample of one comparison in one shown order: the unit of work on the queue."""

    pair: Pair
    max_reasoning_tokens: int
    temperature: float
    seed: int | None = None
    return_reasoning: bool = False
    vote_index: int = 0
    # Close the reasoning and read a forced verdict when the job's deadline nears (rather than
    # miss it); False lets the judgment run on.
    deadline_forcing: bool = True
    # Read a forced verdict when the judge stops without one (default: UNPARSEABLE, no vote).
    force_verdict_on_stop: bool = False


@dataclass(frozen=True, slots=True)
class VoteResult:
    """What one judgment produced, in shown order.

    `p_first` is None when there is no probability to report: FAILED, UNPARSEABLE, or (rarely) an
    OK verdict whose read had neither verdict token in the engine's top-k.
    """

    verdict: Verdict
    p_first: float | None
    status: ParseStatus
    reasoning_tokens: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0
    reasoning: str | None = None
    error: str | None = None
    cache_hit: bool = False

    @property
    def decided(self) -> bool:
        return self.verdict is not Verdict.UNDECIDED and self.status is not ParseStatus.FAILED

    @classmethod
    def failed(cls, reason: str) -> VoteResult:
        return cls(verdict=Verdict.UNDECIDED, p_first=None, status=ParseStatus.FAILED, error=reason)


@dataclass(frozen=True, slots=True)
class Limits:
    max_text_chars: int = 32_000
    max_pairs: int = 512
    max_votes: int = 16
    max_reasoning_tokens: int = 8192
    max_candidates_knockout: int = 64
    max_candidates_round_robin: int = 32
    max_history_turns: int = 64
    max_message_bytes: int = 64 * 1024 * 1024
    # Judgments (items x matches x votes x orders) one call may plan: a single call must not be
    # able to fill the whole queue or pin a gateway's CPU; equals the default queue bound.
    max_judgments_per_call: int = 100_000
    extra: dict[str, int] = field(default_factory=dict)

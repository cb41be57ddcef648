"""The `Broker` contract between gateways (submit, wait, cancel) and workers (receive, complete,
release), and the versioned job envelope that travels on it.

Delivery is at least once: a job handed to a worker that never completes it comes back after the
visibility timeout, with its try count raised. Job ids derive from content, so a job whose result
already exists is answered from that result instead of running again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from reward_service.domain import VoteResult, VoteTask

ENVELOPE_VERSION = 1


@dataclass(frozen=True, slots=True)
class JobEnvelope:
    job_id: str
    task: VoteTask
    # Unix time after which nobody waits for the answer: workers skip the job.
    deadline: float
    enqueued_at: float = field(default_factory=time.time)
    # Delivery attempts so far (1 on the first delivery).
    tries: int = 0
    # Which gateway waits for the result (the reply route).
    reply_to: str = ""
    # Read/write the verdict cache for this job.
    use_cache: bool = True
    version: int = ENVELOPE_VERSION

    def expired(self, now: float | None = None) -> bool:
        return (time.time() if now is None else now) >= self.deadline


@dataclass(frozen=True, slots=True)
class Delivery:
    """A job handed to one worker; `token` identifies this delivery for complete/release."""

    envelope: JobEnvelope
    token: str


@runtime_checkable
class Broker(Protocol):
    # A delivery not completed, released or extended for this long goes to another worker.
    visibility_timeout_s: float
    # Deliveries a job may fail (crashed worker, bad input) before it is dead-lettered.
    max_tries: int

    # ---- gateway side ----
    async def submit(self, jobs: Sequence[JobEnvelope]) -> list[asyncio.Future[VoteResult]]:
        """Enqueue jobs (or find their existing results). Raises `Overloaded` when full."""
        ...

    async def cancel(self, job_ids: Sequence[str]) -> None:
        """Nobody waits for these any more: skip them if queued, abort them if running."""
        ...

    # ---- worker side ----
    async def receive(self, consumer: str, max_jobs: int, timeout_s: float) -> list[Delivery]:
        """Up to `max_jobs` deliveries, waiting at most `timeout_s` for the first."""
        ...

    async def complete(self, delivery: Delivery, result: VoteResult) -> None:
        """Store the result, route it to the waiting gateway, then acknowledge the job."""
        ...

    async def extend(self, consumer: str, deliveries: Sequence[Delivery]) -> set[str]:
        """Still working on these: restart their visibility timeout (the worker's heartbeat), so
        a judgment longer than the timeout is not handed to a second worker. Returns the tokens
        of deliveries this consumer no longer holds (taken over while it was unresponsive): that
        work is another worker's now, and must not be acknowledged from here."""
        ...

    async def release(self, delivery: Delivery, *, count_try: bool = False) -> None:
        """Hand an unfinished job back for another worker.

        Shutdown and engine outages are not the job's fault, so by default the hand-back does not
        spend one of its `max_tries` (an outage must never dead-letter work). `count_try=True`
        is for failures the job itself caused (an engine that is up rejected this input).
        """
        ...

    async def discard(self, delivery: Delivery, reason: str) -> None:
        """Acknowledge without storing a result: nobody waits (cancelled, deadline passed)."""
        ...

    async def cancelled(self, job_ids: Sequence[str]) -> set[str]:
        """Which of these jobs were cancelled by their callers."""
        ...

    # ---- both ----
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def depth(self) -> int:
        """Jobs queued or in flight (for backpressure and metrics)."""
        ...

"""The embedded, in-process broker: the single-machine default behind `rrm serve`.

It keeps the same at-least-once semantics as the Redis broker (visibility timeout, try counts,
dead letters, content-addressed results), so the gateway and worker code paths are identical.
Everything it remembers is bounded, because `rrm serve` runs for weeks of training: stored
results expire and are capped (oldest first), dead letters are a bounded deque, and waiters and
cancellation marks are dropped together with their job.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, replace

from reward_service import metrics
from reward_service.domain import ParseStatus, VoteResult
from reward_service.errors import Overloaded
from reward_service.queue.base import Delivery, JobEnvelope

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _InFlight:
    job_id: str
    visible_at: float


class MemoryBroker:
    def __init__(
        self,
        *,
        max_depth: int = 100_000,
        visibility_timeout_s: float = 120.0,
        max_tries: int = 3,
        result_ttl_s: float = 3600.0,
        max_results: int = 100_000,
        max_dead_letters: int = 1_000,
    ) -> None:
        self.max_depth = max_depth
        self.visibility_timeout_s = visibility_timeout_s
        self.max_tries = max_tries
        self.result_ttl_s = result_ttl_s
        # Results only make retries free; past the cap the oldest go (a retry then re-judges).
        self.max_results = max_results
        self._jobs: dict[str, JobEnvelope] = {}
        self._ready: deque[str] = deque()
        self._inflight: dict[str, _InFlight] = {}
        # Insertion order is expiry order (one TTL for all; a re-stored id moves to the end), so
        # expired and over-cap entries are always at the front: sweeping is amortised O(1).
        self._results: OrderedDict[str, tuple[VoteResult, float]] = OrderedDict()
        self._waiters: dict[str, list[asyncio.Future[VoteResult]]] = {}
        self._cancelled: set[str] = set()
        self._dead_letters: deque[tuple[str, str]] = deque(maxlen=max_dead_letters)
        self._wakeup = asyncio.Event()
        self._tokens = itertools.count()

    # ---- lifecycle ----
    async def start(self) -> None:
        return None

    async def close(self) -> None:
        for futures in self._waiters.values():
            for fut in futures:
                if not fut.done():
                    fut.cancel()
        self._waiters.clear()

    async def depth(self) -> int:
        return len(self._jobs)

    @property
    def dead_letters(self) -> list[tuple[str, str]]:
        """(job id, reason) of the latest jobs given up on (retries exhausted), oldest first."""
        return list(self._dead_letters)

    def stored_results(self) -> int:
        """Results held for retries (after sweeping the expired): for metrics and tests."""
        self._sweep_results()
        return len(self._results)

    # ---- gateway side ----
    async def submit(self, jobs: Sequence[JobEnvelope]) -> list[asyncio.Future[VoteResult]]:
        loop = asyncio.get_running_loop()
        self._sweep_results()
        new = [j for j in jobs if j.job_id not in self._jobs and self._stored(j.job_id) is None]
        if len(self._jobs) + len(new) > self.max_depth:
            raise Overloaded(f"queue holds {len(self._jobs)} judgments (limit {self.max_depth})")
        futures: list[asyncio.Future[VoteResult]] = []
        for job in jobs:
            fut: asyncio.Future[VoteResult] = loop.create_future()
            stored = self._stored(job.job_id)
            if stored is not None:
                fut.set_result(stored)
            else:
                self._waiters.setdefault(job.job_id, []).append(fut)
                self._cancelled.discard(job.job_id)
                queued = self._jobs.get(job.job_id)
                if queued is None:
                    self._jobs[job.job_id] = job
                    self._ready.append(job.job_id)
                elif job.deadline > queued.deadline:
                    # A later caller (a retry) waits longer: the job lives until its deadline.
                    self._jobs[job.job_id] = replace(queued, deadline=job.deadline)
            futures.append(fut)
        self._wakeup.set()
        return futures

    async def cancel(self, job_ids: Sequence[str]) -> None:
        for job_id in job_ids:
            waiting = [f for f in self._waiters.get(job_id, []) if not f.done()]
            if waiting:
                self._waiters[job_id] = waiting
                continue  # another caller still waits for the same job
            self._waiters.pop(job_id, None)
            if job_id in self._jobs:
                self._cancelled.add(job_id)

    # ---- worker side ----
    async def receive(self, consumer: str, max_jobs: int, timeout_s: float) -> list[Delivery]:
        deadline = time.monotonic() + timeout_s
        while True:
            self._reclaim_expired()
            out: list[Delivery] = []
            while self._ready and len(out) < max_jobs:
                job_id = self._ready.popleft()
                job = self._jobs.get(job_id)
                if job is None:
                    continue
                if job_id in self._cancelled:
                    self._forget(job_id)
                    continue
                job = replace(job, tries=job.tries + 1)
                self._jobs[job_id] = job
                if job.tries > self.max_tries:
                    self._dead_letter(job_id, f"gave up after {job.tries - 1} tries")
                    continue
                token = f"{consumer}:{next(self._tokens)}"
                self._inflight[token] = _InFlight(
                    job_id, time.monotonic() + self.visibility_timeout_s
                )
                out.append(Delivery(envelope=job, token=token))
            if out:
                return out
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout=min(remaining, 0.5))

    async def complete(self, delivery: Delivery, result: VoteResult) -> None:
        job_id = delivery.envelope.job_id
        # A failure is routed to its waiters but not stored: a retry must get a fresh try.
        if result.status is not ParseStatus.FAILED:
            self._results[job_id] = (result, time.monotonic() + self.result_ttl_s)
            self._results.move_to_end(job_id)
            self._sweep_results()
        self._resolve(job_id, result)
        self._ack(delivery)

    async def extend(self, consumer: str, deliveries: Sequence[Delivery]) -> set[str]:
        visible_at = time.monotonic() + self.visibility_timeout_s
        lost: set[str] = set()
        for delivery in deliveries:
            entry = self._inflight.get(delivery.token)
            if entry is None:
                lost.add(delivery.token)
            else:
                entry.visible_at = visible_at
        return lost

    async def release(self, delivery: Delivery, *, count_try: bool = False) -> None:
        if self._inflight.pop(delivery.token, None) is not None:
            job_id = delivery.envelope.job_id
            job = self._jobs.get(job_id)
            if job is not None and not count_try:  # receive counts the next delivery
                self._jobs[job_id] = replace(job, tries=max(0, job.tries - 1))
            self._ready.appendleft(job_id)
            self._wakeup.set()

    async def discard(self, delivery: Delivery, reason: str) -> None:
        job_id = delivery.envelope.job_id
        log.debug("discarding job %s: %s", job_id, reason)
        if self._inflight.pop(delivery.token, None) is None:
            return
        job = self._jobs.get(job_id)
        if self._live_waiters(job_id) and job is not None:
            if not job.expired():
                # Re-submitted after the worker saw it cancelled: the new caller still waits.
                self._cancelled.discard(job_id)
                self._ready.append(job_id)
                self._wakeup.set()
                return
            self._resolve(job_id, VoteResult.failed(reason))  # never leave a caller hanging
        self._forget(job_id)

    async def cancelled(self, job_ids: Sequence[str]) -> set[str]:
        return {j for j in job_ids if j in self._cancelled}

    # ---- internals ----
    def _stored(self, job_id: str) -> VoteResult | None:
        entry = self._results.get(job_id)
        if entry is None:
            return None
        if entry[1] < time.monotonic():
            del self._results[job_id]
            return None
        return entry[0]

    def _ack(self, delivery: Delivery) -> None:
        if self._inflight.pop(delivery.token, None) is not None:
            self._forget(delivery.envelope.job_id)

    def _forget(self, job_id: str) -> None:
        self._jobs.pop(job_id, None)
        self._cancelled.discard(job_id)
        if not self._live_waiters(job_id):
            self._waiters.pop(job_id, None)  # only futures whose callers gave up

    def _live_waiters(self, job_id: str) -> bool:
        return any(not f.done() for f in self._waiters.get(job_id, ()))

    def _sweep_results(self) -> None:
        now = time.monotonic()
        results = self._results
        while results and (
            len(results) > self.max_results or next(iter(results.values()))[1] < now
        ):
            results.popitem(last=False)

    def _resolve(self, job_id: str, result: VoteResult) -> None:
        for fut in self._waiters.pop(job_id, []):
            if not fut.done():
                fut.set_result(result)

    def _dead_letter(self, job_id: str, reason: str) -> None:
        log.warning("job %s dead-lettered: %s", job_id, reason)
        metrics.DEAD_LETTERS.inc()
        self._dead_letters.append((job_id, reason))
        self._forget(job_id)
        self._resolve(job_id, VoteResult.failed(reason))

    def _reclaim_expired(self) -> None:
        now = time.monotonic()
        for token, entry in list(self._inflight.items()):
            if entry.visible_at <= now:
                del self._inflight[token]
                if entry.job_id in self._jobs:
                    self._ready.append(entry.job_id)

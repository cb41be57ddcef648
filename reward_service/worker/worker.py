"""The worker loop: keep up to `max_in_flight` judgments running, continuously, not in batches.

A free slot is refilled as soon as any judgment ends, so the engine's continuous batching always
has work. Results are written before the job is acknowledged (at-least-once); jobs whose callers
are gone are skipped or aborted; an engine death hands the in-flight jobs back to the queue.
A heartbeat restarts the visibility timeout of every running judgment, so only a worker that
stops responding (dead, paused, cut off) has its jobs redelivered, however long a judgment takes;
a judgment whose delivery was taken over meanwhile is aborted, as the other worker runs it now.
A judgment still reasoning `deadline_margin_s` before its job's deadline is cut and answered with
a forced verdict (see `vote.py`), so callers get verdicts, not DEADLINE_EXCEEDED.

Engine outages are not the jobs' fault (see `engine_guard.py`): the worker stops taking jobs,
hands its in-flight ones back without spending their tries, reports not ready, and resumes when
the engine answers again, or raises `EngineLost` when it will not come back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from reward_service import metrics
from reward_service.domain import ParseStatus, VoteResult
from reward_service.errors import EngineDead, EngineTimeout, Unavailable
from reward_service.queue.base import Broker, Delivery
from reward_service.queue.cache import VerdictCache
from reward_service.queue.fleet import REPORT_EVERY_S, Fleet, WorkerStatus
from reward_service.queue.jobs import task_fingerprint
from reward_service.queue.names import VERDICT_CACHE_TTL_S
from reward_service.worker.engine_guard import EngineGuard, wait_any
from reward_service.worker.runner import VoteRunner

log = logging.getLogger(__name__)
# Not stored for later requests: no judgment, or one cut short by this request's deadline.
NOT_CACHED = frozenset({ParseStatus.FAILED, ParseStatus.DEADLINE_FORCED})


class Worker:
    def __init__(
        self,
        broker: Broker,
        runner: VoteRunner,
        *,
        name: str = "worker",
        max_in_flight: int = 64,
        poll_s: float = 0.5,
        cancel_check_s: float = 0.2,
        stall_check_s: float = 30.0,
        cache: VerdictCache | None = None,
        cache_scope: tuple[str, str] = ("", ""),
        cache_ttl_s: float = VERDICT_CACHE_TTL_S,
        heartbeat_s: float | None = None,
        guard: EngineGuard | None = None,
        fleet: Fleet | None = None,
        deadline_margin_s: float = 5.0,
    ) -> None:
        self.broker = broker
        self.runner = runner
        self.guard = guard or EngineGuard(runner, name=name)
        self.guard.on_change(self._on_engine_change)
        self._outage_cancelled: set[asyncio.Task[Any]] = set()
        self._judging: set[asyncio.Task[Any]] = set()  # inside runner.run right now
        self.fleet = fleet
        self.cache = cache
        # (model, template version): part of every cache key, so a new judge never sees old votes
        self.cache_scope = cache_scope
        self.cache_ttl_s = cache_ttl_s
        self.name = name
        self.max_in_flight = max_in_flight
        self.poll_s = poll_s
        self.cancel_check_s = cancel_check_s
        # With judgments running and none finished for this long, probe the engine: a server that
        # hangs (or a network that drops packets) fails no request until the request timeout.
        self.stall_check_s = stall_check_s
        # Reasoning ends this long before a job's deadline (then a forced verdict is read), so
        # the caller gets an answer rather than DEADLINE_EXCEEDED.
        self.deadline_margin_s = deadline_margin_s
        self._last_finish = time.monotonic()
        # Four heartbeats per visibility timeout: one late or lost beat costs nothing.
        self.heartbeat_s = heartbeat_s or max(0.05, broker.visibility_timeout_s / 4)
        self._lost: set[asyncio.Task[None]] = set()  # cancelled: another worker holds the job
        self.lost_leases = 0
        self._running: dict[asyncio.Task[None], Delivery] = {}
        self._stopping = asyncio.Event()
        self.completed = 0
        self.failed = 0

    @property
    def in_flight(self) -> int:
        return len(self._running)

    def stop(self) -> None:
        """Stop taking new jobs; `run` then finishes (or hands back) what is in flight."""
        self._stopping.set()

    async def run(self, grace_s: float = 60.0) -> None:
        watcher = asyncio.create_task(self._watch_cancellations())
        heartbeat = asyncio.create_task(self._heartbeat())
        reporter = asyncio.create_task(self._report_status())
        watchdog = asyncio.create_task(self._watch_for_stalls())
        try:
            while not self._stopping.is_set():
                if self.guard.lost is not None:
                    await self._drain(0)
                    raise self.guard.lost
                if not self.guard.is_up:
                    await self._wait_for_engine()
                    continue
                free = self.max_in_flight - len(self._running)
                if free <= 0:
                    await asyncio.wait(self._running, return_when=asyncio.FIRST_COMPLETED)
                    continue
                deliveries = await self.broker.receive(self.name, free, self.poll_s)
                for delivery in deliveries:
                    if not self.guard.is_up:  # went down while we waited for jobs
                        metrics.RELEASED.labels("engine_outage").inc()
                        await self.broker.release(delivery)
                        continue
                    task = asyncio.create_task(self._handle(delivery))
                    self._running[task] = delivery
                    task.add_done_callback(self._running.pop)
            await self._drain(grace_s)
        finally:
            watcher.cancel()
            heartbeat.cancel()
            reporter.cancel()
            watchdog.cancel()
            await self.guard.close()

    async def _wait_for_engine(self) -> None:
        await wait_any(self._stopping, self.guard.up, self.guard.gone)

    async def _watch_for_stalls(self) -> None:
        while True:
            await asyncio.sleep(self.stall_check_s / 2)
            stalled_s = time.monotonic() - self._last_finish
            if not self._judging or stalled_s < self.stall_check_s or not self.guard.is_up:
                continue
            if not await self.guard.engine_answers():
                self.guard.outage(
                    f"no judgment finished for {stalled_s:.0f} s and the engine does not answer "
                    "a probe"
                )
            else:
                self._last_finish = time.monotonic()  # slow, not stuck: look again later

    async def _report_status(self) -> None:
        """Tell the gateways (through `fleet`) whether this worker's engine works: on every
        change and every `REPORT_EVERY_S`, so a gateway can name an outage to its callers."""
        if self.fleet is None:
            return
        last: tuple[bool, str] | None = None
        reported_at = 0.0
        while True:
            guard = self.guard
            state = (guard.is_up, guard.reason)
            if state != last or time.monotonic() - reported_at >= REPORT_EVERY_S:
                status = WorkerStatus(
                    name=self.name,
                    engine_up=guard.is_up,
                    reason=guard.reason,
                    down_since=guard.down_since or 0.0,
                )
                await self.fleet.report(status)
                last, reported_at = state, time.monotonic()
            await asyncio.sleep(0.5)

    def _on_engine_change(self, up: bool) -> None:
        """Down: hand every running judgment back now (on a hung server they would otherwise
        wait for the request timeout), without spending their tries."""
        if up:
            return
        for task in list(self._judging):  # not those already handing their job back
            if not task.done():
                self._outage_cancelled.add(task)
                task.add_done_callback(self._outage_cancelled.discard)
                task.cancel()

    async def _drain(self, grace_s: float) -> None:
        if not self._running:
            return
        log.info("%s: finishing %d in-flight judgments", self.name, len(self._running))
        _, pending = await asyncio.wait(set(self._running), timeout=grace_s)
        for task in pending:
            delivery = self._running.get(task)
            task.cancel()
            if delivery is not None and task not in self._outage_cancelled:
                metrics.RELEASED.labels("shutdown").inc()
                await self.broker.release(delivery)
        await asyncio.gather(*pending, return_exceptions=True)

    async def _handle(self, delivery: Delivery) -> None:
        env = delivery.envelope
        metrics.QUEUE_WAIT.observe(max(0.0, time.time() - env.enqueued_at))
        if env.expired():
            metrics.DISCARDED.inc()
            await self.broker.discard(delivery, "deadline passed before the job started")
            return
        fingerprint = None
        if self.cache is not None and env.use_cache:
            model, template = self.cache_scope
            fingerprint = task_fingerprint(env.task, model=model, template_version=template)
            cached = await self.cache.get(fingerprint)
            metrics.CACHE.labels("hit" if cached is not None else "miss").inc()
            if cached is not None:
                await self.broker.complete(delivery, cached)
                return
        metrics.IN_FLIGHT.inc()
        started = time.perf_counter()
        current = asyncio.current_task()
        try:
            if current is not None:
                if not self._judging:  # idle until now: nothing was overdue
                    self._last_finish = time.monotonic()
                self._judging.add(current)
            try:
                verdict_by = env.deadline - self.deadline_margin_s
                result = await self.runner.run(env.task, env.job_id, verdict_by)
            finally:
                self._judging.discard(current)  # type: ignore[arg-type]
        except asyncio.CancelledError:
            # Cancelled by the caller (see _watch_cancellations), by an engine outage or by
            # shutdown: the engine request was aborted with the task. Shutdown releases the
            # delivery in _drain; an outage hands it back here.
            if current in self._outage_cancelled:
                metrics.RELEASED.labels("engine_outage").inc()
                await self.broker.release(delivery)
                return
            if not self._stopping.is_set() and current not in self._lost:
                metrics.DISCARDED.inc()
                await self.broker.discard(delivery, "cancelled")
            raise
        except Unavailable as exc:  # EngineDead included
            await self._engine_failed(delivery, exc)
            return
        except Exception as exc:  # a judgment that cannot be made is reported, never dropped
            log.exception("%s: job %s failed", self.name, env.job_id)
            self.failed += 1
            result = VoteResult.failed(f"{type(exc).__name__}: {exc}")
        else:
            self.completed += 1
            self._last_finish = time.monotonic()
            metrics.JUDGMENT_LATENCY.observe(time.perf_counter() - started)
            metrics.PROMPT_TOKENS.inc(result.prompt_tokens)
            metrics.COMPLETION_TOKENS.inc(result.completion_tokens)
        finally:
            metrics.IN_FLIGHT.dec()
        metrics.JUDGMENTS.labels(str(result.status)).inc()
        if fingerprint is not None and self.cache is not None and result.status not in NOT_CACHED:
            await self.cache.put(fingerprint, result, self.cache_ttl_s)
        await self.broker.complete(delivery, result)

    async def _engine_failed(self, delivery: Delivery, exc: Unavailable) -> None:
        """An outage hands the job back free, and so does a timeout of an engine that is up
        (overload); any other failure on an engine that answers a probe was caused by this
        input and spends one of its tries (max_tries then dead-letters it). A job too long for
        the engine's request timeout is thus retried until its deadline, never dead-lettered."""
        env = delivery.envelope
        task = asyncio.current_task()
        outage = (
            isinstance(exc, EngineDead)
            or task in self._outage_cancelled
            or not await self.guard.engine_answers()
        )
        if outage:
            self.guard.outage(str(exc))
            metrics.RELEASED.labels("engine_outage").inc()
            await self.broker.release(delivery)
            return
        if isinstance(exc, EngineTimeout):  # up but too slow: load, not this input
            log.warning("%s: job %s handed back: %s", self.name, env.job_id, exc)
            metrics.RELEASED.labels("engine_timeout").inc()
            await self.broker.release(delivery)
            return
        log.warning(
            "%s: job %s failed on an engine that answers probes (try %d of %d): %s",
            self.name,
            env.job_id,
            env.tries,
            self.broker.max_tries,
            exc,
        )
        metrics.RELEASED.labels("job_fault").inc()
        await self.broker.release(delivery, count_try=True)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_s)
            running = dict(self._running)
            if not running:
                continue
            try:
                lost = await self.broker.extend(self.name, list(running.values()))
            except Exception:  # a heartbeat must not die: the next one tries again
                log.exception("%s: heartbeat failed", self.name)
                continue
            for task, delivery in running.items():
                if delivery.token in lost and not task.done():
                    log.warning(
                        "%s: job %s was taken over by another worker (this one was unresponsive "
                        "past the visibility timeout): aborting it here",
                        self.name,
                        delivery.envelope.job_id,
                    )
                    self.lost_leases += 1
                    metrics.LOST_LEASES.inc()
                    self._lost.add(task)
                    task.add_done_callback(self._lost.discard)
                    task.cancel()

    async def _watch_cancellations(self) -> None:
        while True:
            await asyncio.sleep(self.cancel_check_s)
            if not self._running:
                continue
            now = time.time()
            by_id = {d.envelope.job_id: t for t, d in self._running.items()}
            try:
                cancelled = await self.broker.cancelled(list(by_id))
            except Exception:  # the watcher must not die: deadlines still apply meanwhile
                log.exception("%s: could not read cancellations", self.name)
                cancelled = set()
            for job_id, task in by_id.items():
                env = self._running.get(task)
                if job_id in cancelled or (env is not None and env.envelope.expired(now)):
                    task.cancel()

"""Engine outages are infrastructure faults, not job faults.

When the engine stops answering (in-process engine dead or restarting; a remote server refusing
connections, failing with 5xx or timing out), every job would fail the same way. Spending their
tries on it would dead-letter healthy work within seconds. So the worker asks this guard: it tells
an outage from one bad input (a probe the engine answers means the input was at fault), stops the
worker's intake while the engine is down, probes or restarts it with backoff, and gives up (the
process exits non-zero, so Kubernetes or systemd replaces it) only after a configured number of
failed in-process restarts or a configured outage length.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Protocol

from reward_service import metrics

log = logging.getLogger(__name__)


class EngineLost(RuntimeError):
    """The engine did not come back: the worker process must be replaced."""


class Recoverable(Protocol):
    async def check(self) -> None: ...

    async def recover(self) -> None: ...


Listener = Callable[[bool], None]


class EngineGuard:
    """Tracks whether the engine can serve and brings it back after an outage.

    `max_failed_recoveries`: consecutive failed `recover()` calls before giving up (0: never; an
    in-process engine's restarts). `outage_exit_s`: give up after an outage this long (0: never;
    a remote server restarts under its own supervisor and replacing this worker would not help).
    """

    def __init__(
        self,
        engine: Recoverable,
        *,
        name: str = "worker",
        max_failed_recoveries: int = 3,
        outage_exit_s: float = 0.0,
        backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
        probe_timeout_s: float = 30.0,
    ) -> None:
        self.engine = engine
        self.name = name
        self.max_failed_recoveries = max_failed_recoveries
        self.outage_exit_s = outage_exit_s
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.probe_timeout_s = probe_timeout_s
        self.up = asyncio.Event()
        self.up.set()
        self.lost: EngineLost | None = None
        self.gone = asyncio.Event()  # set once the engine is given up on (see `lost`)
        self.reason = ""
        self.down_since: float | None = None
        self.outages = 0
        self.failed_recoveries = 0
        self._listeners: list[Listener] = []
        self._recovery: asyncio.Task[None] | None = None
        self._probe: asyncio.Task[bool] | None = None
        metrics.ENGINE_UP.set(1)

    @property
    def is_up(self) -> bool:
        return self.up.is_set()

    def on_change(self, listener: Listener) -> None:
        """`listener(up)` runs synchronously on every transition (e.g. readiness, health)."""
        self._listeners.append(listener)

    async def engine_answers(self) -> bool:
        """Does the engine answer a probe now? Concurrent askers (every job that just failed)
        share one probe."""
        if not self.is_up:
            return False
        if self._probe is None or self._probe.done():
            self._probe = asyncio.create_task(self._run_probe())
        return await asyncio.shield(self._probe)

    async def _run_probe(self) -> bool:
        try:
            await asyncio.wait_for(self.engine.check(), self.probe_timeout_s)
        except Exception as exc:
            log.warning("%s: engine probe failed: %s", self.name, exc)
            return False
        return True

    def outage(self, reason: str) -> None:
        """The engine is down: stop intake, report not ready, start bringing it back."""
        if not self.is_up or self.lost is not None:
            return
        self.up.clear()
        self.reason = reason
        self.down_since = time.time()
        self.outages += 1
        metrics.ENGINE_UP.set(0)
        metrics.ENGINE_OUTAGES.inc()
        log.error(
            "%s: engine outage (%s): taking no jobs until it answers again", self.name, reason
        )
        self._notify(False)
        self._recovery = asyncio.create_task(self._recover())

    async def _recover(self) -> None:
        delay = self.backoff_s
        self.failed_recoveries = 0
        while True:
            try:
                await self.engine.recover()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.failed_recoveries += 1
                down_s = time.time() - (self.down_since or time.time())
                log.warning(
                    "%s: engine not back after %.0f s (attempt %d: %s); next try in %.1f s",
                    self.name,
                    down_s,
                    self.failed_recoveries,
                    exc,
                    delay,
                )
                if self._should_give_up(down_s):
                    self._give_up(exc, down_s)
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_backoff_s)
                continue
            break
        down_s = time.time() - (self.down_since or time.time())
        log.warning("%s: engine back after %.1f s: taking jobs again", self.name, down_s)
        metrics.ENGINE_OUTAGE_SECONDS.inc(down_s)
        self.down_since = None
        self.reason = ""
        metrics.ENGINE_UP.set(1)
        self.up.set()
        self._notify(True)

    def _should_give_up(self, down_s: float) -> bool:
        if self.max_failed_recoveries and self.failed_recoveries >= self.max_failed_recoveries:
            return True
        return bool(self.outage_exit_s) and down_s >= self.outage_exit_s

    def _give_up(self, exc: BaseException, down_s: float) -> None:
        self.lost = EngineLost(
            f"engine did not come back after {self.failed_recoveries} attempts over "
            f"{down_s:.0f} s (last error: {exc}); exiting so the supervisor replaces this worker"
        )
        log.error("%s: %s", self.name, self.lost)
        self.gone.set()
        self._notify(False)

    def _notify(self, up: bool) -> None:
        for listener in self._listeners:
            try:
                listener(up)
            except Exception:  # a readiness hook must not stop recovery
                log.exception("%s: engine state listener failed", self.name)

    async def close(self) -> None:
        for task in (self._recovery, self._probe):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task


async def wait_any(*events: asyncio.Event) -> None:
    """Until the first of `events` is set."""
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()

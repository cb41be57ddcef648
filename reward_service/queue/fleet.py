"""What the workers say of their engines, where the gateways can read it.

A gateway whose call runs out of time cannot see why: the queue only shows jobs waiting. Workers
report their engine state here (on every change and periodically), so the gateway can name an
engine outage in its DEADLINE_EXCEEDED message instead of leaving the caller to guess.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Protocol

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

# A worker that has not reported for this long is gone (or cut off): its entry is ignored.
STALE_AFTER_S = 30.0
REPORT_EVERY_S = 5.0


@dataclass(frozen=True, slots=True)
class WorkerStatus:
    name: str
    engine_up: bool
    reason: str = ""  # why the engine is down
    down_since: float = 0.0  # unix time
    reported_at: float = field(default_factory=time.time)


class Fleet(Protocol):
    async def report(self, status: WorkerStatus) -> None: ...

    async def statuses(self) -> list[WorkerStatus]:
        """The workers that reported within `STALE_AFTER_S`."""
        ...


class MemoryFleet:
    """One process (`rrm serve`): the embedded worker and the gateway share this object."""

    def __init__(self, stale_after_s: float = STALE_AFTER_S) -> None:
        self.stale_after_s = stale_after_s
        self._statuses: dict[str, WorkerStatus] = {}

    async def report(self, status: WorkerStatus) -> None:
        self._statuses[status.name] = status

    async def statuses(self) -> list[WorkerStatus]:
        fresh = time.time() - self.stale_after_s
        return [s for s in self._statuses.values() if s.reported_at >= fresh]


class RedisFleet:
    """A hash {worker name: status JSON} on the queue's Redis. Best effort: a report or read
    that fails only costs the detail in an error message, never a judgment."""

    def __init__(self, redis: Redis, key: str, stale_after_s: float = STALE_AFTER_S) -> None:
        self.redis = redis
        self.key = key
        self.stale_after_s = stale_after_s

    async def report(self, status: WorkerStatus) -> None:
        try:
            await self.redis.hset(self.key, status.name, json.dumps(asdict(status)))
        except RedisError as exc:
            log.debug("worker status not written: %s", exc)

    async def statuses(self) -> list[WorkerStatus]:
        try:
            raw = await self.redis.hgetall(self.key)
        except RedisError as exc:
            log.debug("worker statuses not read: %s", exc)
            return []
        fresh = time.time() - self.stale_after_s
        out: list[WorkerStatus] = []
        stale: list[bytes | str] = []
        for name, body in raw.items():
            try:
                status = WorkerStatus(**json.loads(body))
            except (ValueError, TypeError):
                status = None
            if status is None or status.reported_at < fresh:
                stale.append(name)
            else:
                out.append(status)
        if stale:  # workers scaled away or crashed long ago
            with contextlib.suppress(RedisError):
                await self.redis.hdel(self.key, *stale)
        return out


def describe_outage(statuses: list[WorkerStatus], now: float | None = None) -> str | None:
    """A sentence for the caller when no worker has a working engine; None otherwise."""
    if not statuses or any(s.engine_up for s in statuses):
        return None
    now = time.time() if now is None else now
    first = min(statuses, key=lambda s: s.down_since or now)
    down_s = now - (first.down_since or now)
    return (
        f"engine outage: none of {len(statuses)} worker(s) has a working engine "
        f"(down for {down_s:.0f} s; {first.name}: {first.reason or 'unknown'})"
    )

"""The verdict cache: a judgment already made for exactly the same inputs (model, template,
sampling settings, vote index, texts; see `jobs.task_fingerprint`) is served without the engine.

Only real judgments are cached: a FAILED result is refused, since serving one again would turn
a transient engine error into a permanent answer.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import OrderedDict
from typing import Protocol, runtime_checkable

from redis.asyncio import Redis
from redis.exceptions import RedisError

from reward_service.domain import ParseStatus, VoteResult
from reward_service.queue import names as n
from reward_service.queue.jobs import decode_result, encode_result
from reward_service.queue.names import QueueNames
from reward_service.queue.redis_client import RedisTarget, connect

log = logging.getLogger(__name__)


@runtime_checkable
class VerdictCache(Protocol):
    hits: int
    misses: int

    async def get(self, fingerprint: str) -> VoteResult | None:
        """The cached result, marked `cache_hit`, or None."""
        ...

    async def put(self, fingerprint: str, result: VoteResult, ttl_s: float) -> None:
        """Remember a result for `ttl_s` seconds. Raises ValueError for a FAILED result."""
        ...


def _cacheable(result: VoteResult) -> VoteResult:
    if result.status is ParseStatus.FAILED:
        raise ValueError("a failed judgment is not a verdict: it must not be cached")
    return dataclasses.replace(result, cache_hit=False)


class MemoryVerdictCache:
    """Per-process LRU with expiry: for `rrm serve` and single-worker deployments."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[str, tuple[VoteResult, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, fingerprint: str) -> VoteResult | None:
        entry = self._entries.get(fingerprint)
        if entry is None or entry[1] <= time.monotonic():
            if entry is not None:
                del self._entries[fingerprint]
            self.misses += 1
            return None
        self._entries.move_to_end(fingerprint)
        self.hits += 1
        return dataclasses.replace(entry[0], cache_hit=True)

    async def put(self, fingerprint: str, result: VoteResult, ttl_s: float) -> None:
        self._entries[fingerprint] = (_cacheable(result), time.monotonic() + ttl_s)
        self._entries.move_to_end(fingerprint)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)


class RedisVerdictCache:
    """Shared by every worker replica. Any Redis error (down, failing over, out of memory)
    makes a read a miss and a write a no-op, logged and counted in `errors`: the cache only
    saves work, so it must never fail a judgment, nor keep a finished one from being stored
    and acknowledged (which would run it again)."""

    def __init__(self, redis: Redis, *, names: QueueNames = n.DEFAULT_NAMES) -> None:
        self.redis = redis
        self.names = names
        self.hits = 0
        self.misses = 0
        self.errors = 0

    @classmethod
    def connect(
        cls, target: RedisTarget | str, *, names: QueueNames = n.DEFAULT_NAMES
    ) -> RedisVerdictCache:
        return cls(connect(target, max_connections=16, retries=1), names=names)

    async def get(self, fingerprint: str) -> VoteResult | None:
        try:
            raw = await self.redis.get(self.names.cache_key(fingerprint))
        except RedisError as exc:
            self.errors += 1
            log.warning("verdict cache unavailable, judging without it: %s", exc)
            raw = None
        if raw is None:
            self.misses += 1
            return None
        try:
            result = decode_result(raw)
        except (ValueError, KeyError, TypeError) as exc:
            self.errors += 1
            log.warning("undecodable verdict cache entry %s: %s", fingerprint, exc)
            self.misses += 1
            return None
        self.hits += 1
        return dataclasses.replace(result, cache_hit=True)

    async def put(self, fingerprint: str, result: VoteResult, ttl_s: float) -> None:
        value = encode_result(_cacheable(result))
        try:
            await self.redis.set(self.names.cache_key(fingerprint), value, ex=max(1, int(ttl_s)))
        except RedisError as exc:
            self.errors += 1
            log.warning("verdict not cached: %s", exc)

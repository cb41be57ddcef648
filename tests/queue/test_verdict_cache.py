"""Verdict caches: LRU + expiry in memory, SET EX in a real Redis."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from reward_service.domain import ParseStatus, Verdict, VoteResult
from reward_service.queue.cache import MemoryVerdictCache, RedisVerdictCache, VerdictCache
from reward_service.queue.jobs import task_fingerprint
from reward_service.queue.names import QueueNames
from tests.queue.conftest import vote
from tests.support.redis_server import RedisServer

OK = VoteResult(verdict=Verdict.FIRST, p_first=0.8, status=ParseStatus.OK, prompt_tokens=12)


def key(i: int) -> str:
    return task_fingerprint(vote(i), model="m", template_version="t/1")


@pytest.fixture
async def redis_cache(
    redis_session: RedisServer, names: QueueNames
) -> AsyncIterator[RedisVerdictCache]:
    cache = RedisVerdictCache.connect(redis_session.url, names=names)
    yield cache
    await cache.redis.aclose()


@pytest.fixture(params=["memory", "redis"])
def cache(request: pytest.FixtureRequest, redis_cache: RedisVerdictCache) -> VerdictCache:
    return MemoryVerdictCache() if request.param == "memory" else redis_cache


async def test_a_put_verdict_comes_back_marked_as_a_hit(cache: VerdictCache) -> None:
    assert isinstance(cache, VerdictCache)
    assert await cache.get(key(1)) is None
    await cache.put(key(1), OK, ttl_s=60)
    got = await cache.get(key(1))
    assert got == dataclasses.replace(OK, cache_hit=True)
    assert (cache.hits, cache.misses) == (1, 1)


async def test_a_failed_judgment_is_never_cached(cache: VerdictCache) -> None:
    with pytest.raises(ValueError):
        await cache.put(key(2), VoteResult.failed("engine died"), ttl_s=60)
    assert await cache.get(key(2)) is None


async def test_entries_expire(cache: VerdictCache) -> None:
    await cache.put(key(3), OK, ttl_s=1)
    assert await cache.get(key(3)) is not None
    await asyncio.sleep(1.1)
    assert await cache.get(key(3)) is None


async def test_memory_cache_evicts_the_least_recently_used() -> None:
    cache = MemoryVerdictCache(max_entries=2)
    await cache.put("a", OK, 60)
    await cache.put("b", OK, 60)
    assert await cache.get("a") is not None  # "b" is now the oldest use
    await cache.put("c", OK, 60)
    assert len(cache) == 2
    assert await cache.get("b") is None
    assert await cache.get("a") is not None and await cache.get("c") is not None


async def test_redis_cache_uses_the_named_key_with_its_ttl(
    redis_cache: RedisVerdictCache, redis_session: RedisServer, names: QueueNames
) -> None:
    await redis_cache.put(key(4), OK, ttl_s=300)
    redis = Redis.from_url(redis_session.url)
    try:
        assert 290 <= await redis.ttl(names.cache_key(key(4))) <= 300
    finally:
        await redis.aclose()


async def test_redis_cache_outage_is_a_miss_not_an_error(redis_own: RedisServer) -> None:
    cache = RedisVerdictCache(Redis.from_url(redis_own.url, retry=None))
    redis_own.kill()
    await cache.put(key(5), OK, ttl_s=60)
    assert await cache.get(key(5)) is None
    assert cache.errors == 2 and cache.misses == 1
    await cache.redis.aclose()

"""Redis going away: callers get a clean error or their answer, never a hang."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest

from reward_service.domain import ParseStatus, Verdict, VoteResult
from reward_service.errors import Unavailable
from reward_service.queue.names import QueueNames
from reward_service.queue.redis_broker import RedisBroker
from tests.queue.conftest import job
from tests.support.redis_server import RedisServer

OK = VoteResult(verdict=Verdict.FIRST, p_first=0.9, status=ParseStatus.OK)


@contextlib.asynccontextmanager
async def brokers(url: str, **kw: object) -> AsyncIterator[tuple[RedisBroker, RedisBroker]]:
    names = QueueNames(prefix="outage")
    gateway = RedisBroker(url, names=names, **kw)  # type: ignore[arg-type]
    worker = RedisBroker(url, names=names, **kw)  # type: ignore[arg-type]
    await gateway.start()
    await worker.start()
    try:
        yield gateway, worker
    finally:
        await gateway.close()
        await worker.close()


async def serve(worker: RedisBroker, stop: asyncio.Event) -> int:
    """A bare worker loop: answer everything."""
    done = 0
    while not stop.is_set():
        for d in await worker.receive("w1", 16, 0.2):
            await worker.complete(d, OK)
            done += 1
    return done


async def test_while_redis_is_down_gateways_fail_fast_and_workers_keep_polling(
    redis_own: RedisServer,
) -> None:
    async with brokers(redis_own.url, retries=2) as (gateway, worker):
        redis_own.kill()
        started = time.monotonic()
        with pytest.raises(Unavailable):
            await gateway.submit([job("x")])
        assert time.monotonic() - started < 2
        assert len(gateway.replies) == 0, "a refused job leaves no waiter behind"
        await gateway.cancel(["x"])  # best effort: logs, does not raise
        assert await worker.cancelled(["x"]) == set()
        started = time.monotonic()
        assert await worker.receive("w1", 4, 0.5) == []
        assert time.monotonic() - started < 2
        assert worker.stats.redis_errors >= 1


async def test_a_restart_that_lost_everything_is_survived(redis_own: RedisServer) -> None:
    """No AOF: the stream, group and queued jobs are gone. Workers re-create the group and the
    gateway queues again what it still waits for, so every caller is answered."""
    async with brokers(redis_own.url) as (gateway, worker):
        futs = await gateway.submit([job(f"r{i}") for i in range(20)])
        redis_own.restart(crash=True)
        stop = asyncio.Event()
        loop = asyncio.create_task(serve(worker, stop))
        results = await asyncio.wait_for(asyncio.gather(*futs), 15)
        stop.set()
        assert await loop == 20
        assert results == [OK] * 20
        assert gateway.stats.requeued_after_restart == 20
        assert gateway.replies.restarts_seen == 1


async def test_a_result_written_during_an_outage_is_retried_until_redis_is_back(
    redis_own: RedisServer,
) -> None:
    async with brokers(redis_own.url) as (gateway, worker):
        [fut] = await gateway.submit([job("held")])
        [d] = await worker.receive("w1", 1, 1.0)
        redis_own.kill()
        completing = asyncio.create_task(worker.complete(d, OK))
        await asyncio.sleep(2.0)  # longer than the client's own retries
        assert not completing.done()
        redis_own.start()
        await asyncio.wait_for(completing, 10)
        assert await asyncio.wait_for(fut, 10) == OK

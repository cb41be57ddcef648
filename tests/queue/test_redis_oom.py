"""Redis out of memory (a real redis-server with a 3 MB `maxmemory` and `noeviction`): new work
is refused with RESOURCE_EXHAUSTED and a retry delay, never INTERNAL; work already queued is
still finished, stored and acknowledged exactly once, even though the verdict cache on the same
full Redis refuses every write; the worker loop lives on through any Redis error."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from redis.asyncio import Redis
from redis.exceptions import OutOfMemoryError
from rrm.v1 import reward_pb2 as pb

from reward_service.errors import Overloaded
from reward_service.queue.cache import RedisVerdictCache
from reward_service.queue.names import QueueNames
from reward_service.queue.redis_broker import RedisBroker
from reward_service.testing.scripted_runner import ScriptedRunner
from reward_service.worker.worker import Worker
from tests.queue.conftest import job
from tests.queue.stack import close_redis_stack, make_redis_stack
from tests.support.redis_server import RedisServer, redis_server

TINY = ("--maxmemory", "3mb", "--maxmemory-policy", "noeviction")


@pytest.fixture
def tiny(tmp_path: Path) -> Iterator[RedisServer]:
    with redis_server(directory=tmp_path / "redis", args=TINY) as server:
        yield server


@pytest.fixture
async def raw(tiny: RedisServer) -> AsyncIterator[Any]:
    client = Redis.from_url(tiny.url)
    yield client
    await client.aclose()


async def fill(redis: Any) -> int:
    """Write filler keys until Redis refuses one for memory; how many went in. Then lower
    `maxmemory` a little below what is used: a refused write frees its own request buffer,
    which would leave Redis just under the limit, and the test must be over it."""
    for i in range(10_000):
        try:
            await redis.set(f"filler:{i}", b"x" * 16384)
        except OutOfMemoryError:
            used = int((await redis.info("memory"))["used_memory"])
            await redis.config_set("maxmemory", used - 256 * 1024)
            return i
    raise AssertionError("maxmemory never reached")


async def empty(redis: Any, count: int) -> None:
    await redis.delete(*(f"filler:{i}" for i in range(count)))
    await redis.config_set("maxmemory", TINY[1])


async def test_a_full_redis_refuses_new_jobs_but_finishes_queued_ones_exactly_once(
    tiny: RedisServer, raw: Any
) -> None:
    names = QueueNames(prefix="oom")
    gateway = RedisBroker(tiny.url, names=names)
    worker_broker = RedisBroker(tiny.url, names=names, visibility_timeout_s=5.0)
    await gateway.start()
    await worker_broker.start()
    cache = RedisVerdictCache.connect(tiny.url, names=names)
    runner = ScriptedRunner()
    worker = Worker(worker_broker, runner, name="w1", cache=cache, cache_scope=("m", "t"))
    try:
        futures = await gateway.submit([job(f"q{i}", i=i) for i in range(8)])
        await fill(raw)

        with pytest.raises(Overloaded, match="Redis is out of memory") as refused:
            await gateway.submit([job("late", i=99)])
        assert refused.value.retry_after_s > 0
        assert not gateway.replies.waiting("late"), "a refused job leaves no waiter behind"

        run = asyncio.create_task(worker.run(grace_s=1))
        results = await asyncio.wait_for(asyncio.gather(*futures), 10)
        assert all(r.verdict is not None for r in results)
        assert cache.errors >= 8, "every cache write was refused for memory"
        assert sorted(runner.calls) == sorted(f"q{i}" for i in range(8)), "each ran once"
        assert await raw.xlen(names.jobs_stream) == 0, "every job acknowledged and deleted"
        assert all([await raw.exists(names.result_key(f"q{i}")) for i in range(8)])
        await asyncio.sleep(1.0)  # several more receive rounds on the full Redis
        assert not run.done(), "the worker loop lives on"
        worker.stop()
        await asyncio.wait_for(run, 5)
    finally:
        await gateway.close()
        await worker_broker.close()
        await cache.redis.aclose()


async def test_the_gateway_answers_resource_exhausted_with_a_retry_delay(
    tiny: RedisServer, raw: Any
) -> None:
    s = await make_redis_stack(tiny.url, QueueNames(prefix="oomrpc"))
    try:
        filled = await fill(raw)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await s.stub.Compare(
                pb.CompareRequest(request_id="r1", query="q?", response_a="a", response_b="bb"),
                timeout=10,
            )
        err = refused.value
        assert err.code() is grpc.StatusCode.RESOURCE_EXHAUSTED, err
        assert "Redis is out of memory" in (err.details() or "")
        status = rpc_status.from_call(err)  # type: ignore[arg-type]
        assert status is not None
        info = error_details_pb2.RetryInfo()
        assert any(d.Unpack(info) for d in status.details if d.Is(info.DESCRIPTOR))
        assert info.retry_delay.seconds >= 1

        await empty(raw, filled)  # memory back: the same request goes through
        reply = await s.stub.Compare(
            pb.CompareRequest(request_id="r1", query="q?", response_a="a", response_b="bb"),
            timeout=10,
        )
        assert reply.winner == pb.WINNER_B  # the scripted judge prefers the longer answer
    finally:
        await close_redis_stack(s)


async def test_receive_survives_an_unexpected_redis_error(redis_own: RedisServer) -> None:
    """WRONGTYPE stands for any ResponseError nobody planned for: logged, never raised."""
    names = QueueNames(prefix="odd")
    broker = RedisBroker(redis_own.url, names=names)
    await broker.start()
    raw = Redis.from_url(redis_own.url)
    try:
        await raw.delete(names.jobs_stream)
        await raw.set(names.jobs_stream, "not a stream")
        assert await broker.receive("w1", 4, 0.3) == []
        assert broker.stats.redis_errors >= 1
    finally:
        await raw.aclose()
        await broker.close()

"""Heartbeats: a judgment longer than the visibility timeout runs once, on both brokers (Redis:
a real redis-server); a worker that went quiet and lost its job aborts its copy."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from reward_service.domain import ParseStatus
from reward_service.queue.base import Broker
from reward_service.queue.memory import MemoryBroker
from reward_service.queue.names import QueueNames
from reward_service.testing.scripted_runner import ScriptedRunner
from reward_service.worker.worker import Worker
from tests.queue.conftest import BrokerFactory, job

# (gateway broker, worker broker factory): one MemoryBroker plays both roles.
Pair = tuple[Broker, Callable[..., Awaitable[Broker]]]


@pytest.fixture(params=["memory", "redis"])
async def brokers(request: pytest.FixtureRequest, make_broker: BrokerFactory) -> Pair:
    if request.param == "memory":
        memory = MemoryBroker(visibility_timeout_s=0.3)

        async def same(**_: object) -> Broker:
            return memory

        return memory, same
    gateway = await make_broker()

    async def worker_side(**kw: object) -> Broker:
        kw.setdefault("visibility_timeout_s", 0.3)
        return await make_broker(**kw)

    return gateway, worker_side


async def test_extend_keeps_a_delivery_from_being_reclaimed(brokers: Pair) -> None:
    gateway, worker_side = brokers
    w1, w2 = await worker_side(), await worker_side()
    await gateway.submit([job("long")])
    [d1] = await w1.receive("w1", 1, 1.0)
    for _ in range(6):  # 1.2 s: four visibility timeouts
        await asyncio.sleep(0.2)
        assert await w1.extend("w1", [d1]) == set()
        assert await w2.receive("w2", 1, 0.01) == [], "an extended delivery is not handed out"
    await w1.complete(d1, ScriptedRunner().script(d1.envelope.task))
    assert await w2.receive("w2", 1, 0.5) == []


async def test_extend_reports_a_delivery_taken_over_and_does_not_take_it_back(
    brokers: Pair,
) -> None:
    gateway, worker_side = brokers
    w1, w2 = await worker_side(), await worker_side()
    [fut] = await gateway.submit([job("paused")])
    [d1] = await w1.receive("w1", 1, 1.0)
    await asyncio.sleep(0.4)  # w1 "paused" past the visibility timeout
    [d2] = await w2.receive("w2", 1, 1.0)
    assert d2.envelope.job_id == "paused" and d2.envelope.tries == 2
    assert await w1.extend("w1", [d1]) == {d1.token}
    assert await w2.extend("w2", [d2]) == set(), "w1's heartbeat did not take the job back"
    await asyncio.sleep(0.2)
    assert await w2.extend("w2", [d2]) == set()
    result = ScriptedRunner().script(d2.envelope.task)
    await w2.complete(d2, result)
    assert await asyncio.wait_for(fut, 2) == result


async def test_extend_keeps_the_delivery_count(make_broker: BrokerFactory, redis: Any) -> None:
    gateway, worker = await make_broker(), await make_broker(visibility_timeout_s=0.3)
    await gateway.submit([job("counted")])
    [d] = await worker.receive("w1", 1, 1.0)
    for _ in range(3):
        await worker.extend("w1", [d])
    names: QueueNames = worker.names
    [info] = await redis.xpending_range(names.jobs_stream, names.workers_group, "-", "+", 10)
    assert info["times_delivered"] == 1 and info["consumer"] == b"w1"


async def run_workers(workers: list[Worker], until: asyncio.Future[Any]) -> None:
    tasks = [asyncio.create_task(w.run(grace_s=1.0)) for w in workers]
    try:
        await asyncio.wait_for(until, 10)
    finally:
        for w in workers:
            w.stop()
        await asyncio.gather(*tasks)


async def test_a_judgment_longer_than_the_visibility_timeout_runs_once(brokers: Pair) -> None:
    gateway, worker_side = brokers
    runners = [ScriptedRunner(latency_s=1.2), ScriptedRunner(latency_s=1.2)]  # 4 timeouts
    workers = [
        Worker(await worker_side(), r, name=f"w{i}", max_in_flight=2, poll_s=0.05)
        for i, r in enumerate(runners)
    ]
    futures = await gateway.submit([job("one", i=1), job("two", i=2)])
    await run_workers(workers, asyncio.gather(*futures))
    assert all(f.result().status is ParseStatus.OK for f in futures)
    assert sum(len(r.calls) for r in runners) == 2, "each job ran exactly once"
    assert all(w.lost_leases == 0 for w in workers)


async def test_a_worker_that_lost_its_job_aborts_its_copy(brokers: Pair) -> None:
    """w0's heartbeat is slower than the visibility timeout (as if it were paused): w1 takes the
    job over, and w0's next heartbeat finds that out and aborts its run, without acknowledging."""
    gateway, worker_side = brokers
    slow, fast = ScriptedRunner(latency_s=3.0), ScriptedRunner(latency_s=0.8)
    w0 = Worker(await worker_side(), slow, name="w0", max_in_flight=1, poll_s=0.05, heartbeat_s=0.6)
    [fut] = await gateway.submit([job("taken")])
    t0 = asyncio.create_task(w0.run(grace_s=1.0))
    await asyncio.sleep(0.1)  # w0 holds the job (poll 0.05 s)
    assert slow.calls, "w0 started the job"
    w1 = Worker(await worker_side(), fast, name="w1", max_in_flight=1, poll_s=0.05)
    t1 = asyncio.create_task(w1.run(grace_s=1.0))
    try:
        result = await asyncio.wait_for(fut, 10)
    finally:
        w0.stop()
        w1.stop()
        await asyncio.gather(t0, t1)
    assert result.status is ParseStatus.OK
    assert fast.calls and slow.cancelled == slow.calls, "w0's copy was aborted"
    assert w0.lost_leases == 1 and w1.lost_leases == 0

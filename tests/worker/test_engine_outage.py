"""Engine outages on both brokers (Redis: a real redis-server): the worker stops taking jobs,
hands its in-flight ones back without spending their tries, reports not ready, and resumes by
itself; a failure on an engine that answers probes is the job's own and spends its tries; an
engine that never comes back ends the worker with `EngineLost`.

The engine here is `ScriptedRunner`, a test double (the real engines' outages are tested in
tests/engine/test_engine_outage_real.py): its `outage` makes every call, probe and recovery fail.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from reward_service import metrics
from reward_service.domain import ParseStatus, VoteTask
from reward_service.errors import DeadlineExceeded, EngineDead, EngineTimeout, Unavailable
from reward_service.gateway.comparator import Comparator
from reward_service.gateway.server import WARMUP
from reward_service.queue.base import Broker
from reward_service.queue.fleet import MemoryFleet, WorkerStatus
from reward_service.queue.memory import MemoryBroker
from reward_service.testing.scripted_runner import ScriptedRunner, prefer_longer
from reward_service.worker.engine_guard import EngineGuard, EngineLost
from reward_service.worker.worker import Worker
from tests.queue.conftest import BrokerFactory, job

Pair = tuple[Broker, Callable[..., Awaitable[Broker]]]


@pytest.fixture(params=["memory", "redis"])
async def brokers(request: pytest.FixtureRequest, make_broker: BrokerFactory) -> Pair:
    """(gateway side, worker side factory); max_tries=1: a single spent try dead-letters."""
    if request.param == "memory":
        memory = MemoryBroker(max_tries=1)

        async def same(**_: object) -> Broker:
            return memory

        return memory, same
    gateway = await make_broker(max_tries=1)

    async def worker_side(**kw: object) -> Broker:
        kw.setdefault("max_tries", 1)
        return await make_broker(**kw)

    return gateway, worker_side


def fast_guard(runner: ScriptedRunner, **kw: object) -> EngineGuard:
    kw.setdefault("backoff_s", 0.05)
    kw.setdefault("max_backoff_s", 0.2)
    kw.setdefault("probe_timeout_s", 1.0)
    return EngineGuard(runner, **kw)  # type: ignore[arg-type]


async def wait_for(predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def released(reason: str) -> float:
    return metrics.RELEASED.labels(reason)._value.get()


@pytest.mark.parametrize("fault", [Unavailable("connection refused"), EngineDead("engine died")])
async def test_an_outage_spends_no_tries_and_the_worker_resumes_by_itself(
    brokers: Pair, fault: Unavailable
) -> None:
    gateway, worker_side = brokers
    runner = ScriptedRunner(latency_s=0.2)
    guard = fast_guard(runner, max_failed_recoveries=0)
    worker = Worker(await worker_side(), runner, name="w1", max_in_flight=4, guard=guard)
    before = released("engine_outage")
    run = asyncio.create_task(worker.run(grace_s=1))
    futures = await gateway.submit([job(f"j{i}", i=i) for i in range(12)])
    await wait_for(lambda: len(runner.calls) >= 4)

    runner.outage = fault  # the four in flight fail, and so would every later call
    await wait_for(lambda: not guard.is_up)
    assert metrics.ENGINE_UP._value.get() == 0
    calls_when_down = len(runner.calls)
    await asyncio.sleep(0.5)  # several failed recoveries
    assert len(runner.calls) == calls_when_down, "no jobs are taken while the engine is down"
    assert runner.recoveries >= 2
    assert not any(f.done() for f in futures), "nobody is answered FAILED for an outage"

    runner.outage = None
    results = await asyncio.wait_for(asyncio.gather(*futures), 10)
    assert [r.status for r in results] == [ParseStatus.OK] * 12
    assert guard.is_up and metrics.ENGINE_UP._value.get() == 1
    assert released("engine_outage") - before >= 4
    worker.stop()
    await run


async def test_a_failure_on_an_engine_that_answers_probes_is_the_jobs_own(brokers: Pair) -> None:
    gateway, worker_side = brokers

    def poison_or_judge(task: VoteTask):  # type: ignore[no-untyped-def]
        if task.pair.query == "q13":
            raise Unavailable("HTTP 500: this prompt crashes the server's tokenizer")
        return prefer_longer(task)

    runner = ScriptedRunner(poison_or_judge)
    guard = fast_guard(runner)
    worker = Worker(await worker_side(), runner, name="w1", guard=guard)
    before = released("job_fault")
    run = asyncio.create_task(worker.run(grace_s=1))
    bad, *good = await gateway.submit([job("bad", i=13)] + [job(f"g{i}", i=i) for i in range(5)])
    result = await asyncio.wait_for(bad, 5)
    assert result.status is ParseStatus.FAILED and "gave up after 1 tries" in (result.error or "")
    assert [r.status for r in await asyncio.gather(*good)] == [ParseStatus.OK] * 5
    assert guard.is_up and guard.outages == 0
    assert released("job_fault") - before == 1
    worker.stop()
    await run


async def test_an_engine_that_does_not_come_back_ends_the_worker(brokers: Pair) -> None:
    gateway, worker_side = brokers
    runner = ScriptedRunner(latency_s=0.1)
    guard = fast_guard(runner, max_failed_recoveries=3)
    ready: list[bool] = []
    guard.on_change(ready.append)
    worker = Worker(await worker_side(), runner, name="w1", guard=guard)
    run = asyncio.create_task(worker.run(grace_s=1))
    [fut] = await gateway.submit([job("stuck")])
    await wait_for(lambda: len(runner.calls) == 1)
    runner.outage = EngineDead("engine died and its restart fails")
    with pytest.raises(EngineLost, match="did not come back after 3 attempts"):
        await asyncio.wait_for(run, 5)
    assert ready and ready[-1] is False, "never ready without an engine"
    assert not fut.done(), "the job waits in the queue for another worker, not dead-lettered"

    # Another worker with a working engine answers it: nothing was lost.
    other = Worker(await worker_side(), ScriptedRunner(), name="w2")
    run2 = asyncio.create_task(other.run(grace_s=1))
    assert (await asyncio.wait_for(fut, 5)).status is ParseStatus.OK
    other.stop()
    await run2


async def test_a_hung_engine_hands_back_its_running_jobs_at_once(brokers: Pair) -> None:
    """One call fails fast (connection refused) while others hang on the dead server: the
    probe fails, and the hung ones are handed back now, not after the request timeout."""
    gateway, worker_side = brokers
    runner = ScriptedRunner(latency_s=lambda t: 0.05 if t.pair.query == "q0" else 60.0)
    guard = fast_guard(runner, max_failed_recoveries=0)
    broker = await worker_side()
    worker = Worker(broker, runner, name="w1", guard=guard)
    before = released("engine_outage")
    run = asyncio.create_task(worker.run(grace_s=1))
    futures = await gateway.submit([job(f"h{i}", i=i) for i in range(4)])
    await wait_for(lambda: len(runner.calls) == 4)
    runner.outage = Unavailable("connection refused")
    await wait_for(lambda: not guard.is_up, 3)
    await wait_for(lambda: worker.in_flight == 0, 3)
    assert len(runner.cancelled) == 3, "the hung requests were aborted, not waited for"
    assert released("engine_outage") - before >= 4
    assert len(runner.calls) == 4 and not any(f.done() for f in futures)
    runner.outage = None
    runner.latency_s = 0.0
    results = await asyncio.wait_for(asyncio.gather(*futures), 10)
    assert [r.status for r in results] == [ParseStatus.OK] * 4
    worker.stop()
    await run


async def test_other_workers_keep_serving_during_one_workers_outage(
    make_broker: BrokerFactory,
) -> None:
    gateway = await make_broker(max_tries=1)
    down = ScriptedRunner(latency_s=0.05)
    down.outage = Unavailable("connection refused")
    up = ScriptedRunner(latency_s=0.05)
    w_down = Worker(await make_broker(max_tries=1), down, name="down", guard=fast_guard(down))
    w_up = Worker(await make_broker(max_tries=1), up, name="up")
    runs = [asyncio.create_task(w_down.run(grace_s=1))]
    futures = await gateway.submit([job(f"o{i}", i=i) for i in range(20)])
    await wait_for(lambda: not w_down.guard.is_up)  # it took jobs, failed, handed them back
    runs.append(asyncio.create_task(w_up.run(grace_s=1)))
    results = await asyncio.wait_for(asyncio.gather(*futures), 10)
    assert [r.status for r in results] == [ParseStatus.OK] * 20, "none dead-lettered"
    assert len(up.calls) == 20 and not w_down.guard.is_up
    for w in (w_down, w_up):
        w.stop()
    await asyncio.gather(*runs)


async def test_a_server_that_hangs_is_noticed_by_the_stall_watchdog(brokers: Pair) -> None:
    """No request fails (they all hang on the server until the request timeout): with nothing
    finished for `stall_check_s`, the worker probes, sees the outage and hands the jobs back."""
    gateway, worker_side = brokers
    runner = ScriptedRunner(latency_s=60.0)
    guard = fast_guard(runner, max_failed_recoveries=0)
    worker = Worker(await worker_side(), runner, name="w1", guard=guard, stall_check_s=0.3)
    run = asyncio.create_task(worker.run(grace_s=1))
    futures = await gateway.submit([job(f"s{i}", i=i) for i in range(3)])
    await wait_for(lambda: len(runner.calls) == 3)
    await asyncio.sleep(0.5)
    assert guard.is_up, "slow, not stuck: the engine answers probes"
    runner.outage = Unavailable("the server stopped answering")
    await wait_for(lambda: not guard.is_up, 3)
    assert "no judgment finished" in guard.reason
    await wait_for(lambda: worker.in_flight == 0, 3)
    runner.outage, runner.latency_s = None, 0.0
    results = await asyncio.wait_for(asyncio.gather(*futures), 10)
    assert [r.status for r in results] == [ParseStatus.OK] * 3
    worker.stop()
    await run


async def test_a_deadline_during_an_outage_names_it() -> None:
    """The caller's DEADLINE_EXCEEDED says why: the workers report their engine state."""
    broker, fleet = MemoryBroker(), MemoryFleet()
    await fleet.report(
        WorkerStatus("w1", engine_up=False, reason="connection refused", down_since=time.time())
    )
    comparator = Comparator(broker, fleet=fleet)
    with pytest.raises(
        DeadlineExceeded,
        match=r"1 of 1 judgments unfinished: engine outage: "
        r"none of 1 worker\(s\) has a working engine .*w1: connection refused",
    ):
        await comparator.compare(WARMUP, "late", time.time() + 0.3)
    await fleet.report(WorkerStatus("w2", engine_up=True))
    with pytest.raises(DeadlineExceeded) as late:
        await comparator.compare(WARMUP, "late-2", time.time() + 0.3)
    assert "engine outage" not in str(late.value), "one working engine: not an outage"


async def test_a_timeout_of_an_engine_that_is_up_spends_no_try(brokers: Pair) -> None:
    """An overloaded server times requests out while its /health answers: load, not the job.
    (With max_tries=1, a counted try would dead-letter the job at once.)"""
    gateway, worker_side = brokers
    timeouts = {"left": 3}

    def slow_then_fine(task: VoteTask):  # type: ignore[no-untyped-def]
        if timeouts["left"] > 0:
            timeouts["left"] -= 1
            raise EngineTimeout("no answer within 60 s")
        return prefer_longer(task)

    runner = ScriptedRunner(slow_then_fine)
    guard = fast_guard(runner)
    worker = Worker(await worker_side(), runner, name="w1", guard=guard)
    before = released("engine_timeout")
    run = asyncio.create_task(worker.run(grace_s=1))
    [fut] = await gateway.submit([job("slow")])
    assert (await asyncio.wait_for(fut, 5)).status is ParseStatus.OK
    assert released("engine_timeout") - before == 3 and guard.is_up
    worker.stop()
    await run

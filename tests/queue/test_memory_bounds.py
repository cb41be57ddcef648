"""The embedded broker's memory stays bounded over a long run: stored results expire and are
capped, dead letters are capped, and cancelled or expired jobs leave nothing behind."""

from __future__ import annotations

import asyncio
import time

from reward_service.domain import ParseStatus, Verdict, VoteResult
from reward_service.queue.memory import MemoryBroker
from tests.queue.conftest import job

OK = VoteResult(verdict=Verdict.FIRST, p_first=0.9, status=ParseStatus.OK)


async def run_all(broker: MemoryBroker, ids: list[str]) -> None:
    """Submit, receive and complete jobs the way a worker would."""
    await broker.submit([job(j) for j in ids])
    while deliveries := await broker.receive("w", 100, 0.0):
        for d in deliveries:
            await broker.complete(d, OK)


def empty(broker: MemoryBroker) -> bool:
    return not (broker._jobs or broker._waiters or broker._cancelled or broker._inflight)


async def test_stored_results_are_capped_oldest_first() -> None:
    broker = MemoryBroker(max_results=10)
    await run_all(broker, [f"j{i}" for i in range(25)])
    assert len(broker._results) == 10
    assert list(broker._results) == [f"j{i}" for i in range(15, 25)]
    newest, oldest = await broker.submit([job("j24"), job("j0")])
    assert newest.done() and newest.result() == OK  # still answered from the stored result
    assert not oldest.done()  # evicted: judged again
    assert await broker.depth() == 1


async def test_expired_results_are_swept_without_being_asked_for() -> None:
    broker = MemoryBroker(result_ttl_s=0.05)
    await run_all(broker, [f"old{i}" for i in range(50)])
    assert len(broker._results) == 50
    await asyncio.sleep(0.1)
    await run_all(broker, ["new"])  # unrelated traffic sweeps the expired ones
    assert list(broker._results) == ["new"]


async def test_dead_letters_are_capped_to_the_latest() -> None:
    broker = MemoryBroker(max_tries=1, visibility_timeout_s=0.0, max_dead_letters=5)
    futures = await broker.submit([job(f"d{i}") for i in range(20)])
    assert len(await broker.receive("w", 100, 0.0)) == 20  # first try, never completed
    assert await broker.receive("w", 100, 0.0) == []  # reclaimed: past max_tries
    assert [j for j, _ in broker.dead_letters] == [f"d{i}" for i in range(15, 20)]
    assert all(f.result().status is ParseStatus.FAILED for f in futures)
    assert empty(broker)


async def test_jobs_cancelled_while_queued_leave_nothing_behind() -> None:
    broker = MemoryBroker()
    futures = await broker.submit([job(f"c{i}") for i in range(10)])
    for f in futures:
        f.cancel()  # the caller went away...
    await broker.cancel([f"c{i}" for i in range(10)])  # ...and said so
    assert await broker.receive("w", 100, 0.0) == []
    assert empty(broker) and await broker.depth() == 0


async def test_jobs_cancelled_or_expired_while_running_leave_nothing_behind() -> None:
    broker = MemoryBroker()
    futures = await broker.submit([job("cancel-me"), job("expire-me", ttl_s=-1.0)])
    cancel, expire = await broker.receive("w", 100, 0.0)
    futures[0].cancel()
    await broker.cancel(["cancel-me"])
    assert await broker.cancelled(["cancel-me", "expire-me"]) == {"cancel-me"}
    await broker.discard(cancel, "cancelled")
    await broker.discard(expire, "deadline passed before the job started")
    # nobody is left hanging: the caller still waiting hears why
    assert futures[1].result().status is ParseStatus.FAILED
    assert empty(broker)


async def test_waiters_whose_callers_gave_up_are_dropped_with_the_job() -> None:
    broker = MemoryBroker()
    (fut,) = await broker.submit([job("gone")])
    fut.cancel()  # a caller that never called broker.cancel (e.g. its task was killed)
    (delivery,) = await broker.receive("w", 1, 0.0)
    await broker.discard(delivery, "deadline passed before the job started")
    assert empty(broker)


async def test_a_retry_after_cancellation_is_not_dropped_by_the_discard() -> None:
    broker = MemoryBroker()
    (first,) = await broker.submit([job("again")])
    (running,) = await broker.receive("w", 1, 0.0)
    first.cancel()
    await broker.cancel(["again"])
    (retry,) = await broker.submit([job("again")])  # the client retried the same request
    await broker.discard(running, "cancelled")  # the worker saw the cancellation too late
    (rerun,) = await broker.receive("w", 1, 0.0)
    await broker.complete(rerun, OK)
    assert retry.result() == OK
    assert empty(broker)


async def test_a_retry_extends_the_queued_jobs_deadline() -> None:
    broker = MemoryBroker()
    await broker.submit([job("short", ttl_s=-1.0)])  # already past its caller's deadline
    (retry,) = await broker.submit([job("short", ttl_s=60.0)])
    (delivery,) = await broker.receive("w", 1, 0.0)
    assert delivery.envelope.deadline > time.time()  # the worker will not skip it
    await broker.complete(delivery, OK)
    assert retry.result() == OK

"""A client that retries on another gateway while its job runs (its first gateway died or timed
out) must not make the job run twice: the second copy parks on the running one and gets its
answer. Against a real redis-server."""

from __future__ import annotations

import asyncio
from typing import Any

from reward_service.domain import ParseStatus, Verdict, VoteResult
from reward_service.queue.names import QueueNames
from tests.queue.conftest import BrokerFactory, job

FIRST = VoteResult(verdict=Verdict.FIRST, p_first=0.9, status=ParseStatus.OK)


async def leftovers(redis: Any, names: QueueNames, job_id: str) -> dict[str, int]:
    return {
        "stream": int(await redis.xlen(names.jobs_stream)),
        "lease": int(await redis.exists(names.lease_key(job_id))),
        "parked": int(await redis.exists(names.parked_key(job_id))),
    }


async def test_a_copy_from_another_gateway_waits_for_the_running_job(
    make_broker: BrokerFactory, redis: Any, names: QueueNames
) -> None:
    g1, g2, worker = await make_broker(), await make_broker(), await make_broker()
    [f1] = await g1.submit([job("j")])
    [d1] = await worker.receive("w1", 4, 1.0)
    [f2] = await g2.submit([job("j")])  # the same request, retried on g2
    assert await worker.receive("w1", 4, 0.3) == [], "the copy is not run"
    assert worker.stats.parked == 1
    await worker.complete(d1, FIRST)
    assert await asyncio.wait_for(f1, 2) == FIRST
    assert await asyncio.wait_for(f2, 2) == FIRST, "the parked caller got the run's answer"
    assert await leftovers(redis, names, "j") == {"stream": 0, "lease": 0, "parked": 0}


async def test_parked_copies_run_when_the_job_ends_unanswered(
    make_broker: BrokerFactory, redis: Any, names: QueueNames
) -> None:
    g1, g2, worker = await make_broker(), await make_broker(), await make_broker()
    await g1.submit([job("j")])
    [d1] = await worker.receive("w1", 4, 1.0)
    [f2] = await g2.submit([job("j", ttl_s=120)])
    assert await worker.receive("w1", 4, 0.3) == []
    await worker.discard(d1, "cancelled by its caller")  # g1's caller gave up
    [d2] = await worker.receive("w1", 4, 1.0)
    assert d2.envelope.reply_to == g2.gateway_id, "g2's copy, with its own deadline"
    await worker.complete(d2, FIRST)
    assert await asyncio.wait_for(f2, 2) == FIRST
    assert await leftovers(redis, names, "j") == {"stream": 0, "lease": 0, "parked": 0}


async def test_a_handed_back_job_runs_again_and_answers_the_parked_copy(
    make_broker: BrokerFactory, redis: Any, names: QueueNames
) -> None:
    g1, g2, worker = await make_broker(), await make_broker(), await make_broker()
    [f1] = await g1.submit([job("j")])
    [d1] = await worker.receive("w1", 4, 1.0)
    [f2] = await g2.submit([job("j")])
    assert await worker.receive("w1", 4, 0.3) == []
    await worker.release(d1)  # e.g. the engine died: the copy must not park on the old lease
    [d2] = await worker.receive("w1", 4, 1.0)
    assert d2.envelope.reply_to == g1.gateway_id and d2.envelope.tries == 1, "no try spent"
    await worker.complete(d2, FIRST)
    assert await asyncio.wait_for(f1, 2) == FIRST
    assert await asyncio.wait_for(f2, 2) == FIRST
    assert await leftovers(redis, names, "j") == {"stream": 0, "lease": 0, "parked": 0}


async def test_a_dead_workers_job_is_reclaimed_and_answers_the_parked_copy(
    make_broker: BrokerFactory, redis: Any, names: QueueNames
) -> None:
    g1, g2 = await make_broker(), await make_broker()
    w1 = await make_broker(visibility_timeout_s=0.3)
    w2 = await make_broker(visibility_timeout_s=0.3)
    [f1] = await g1.submit([job("j")])
    await w1.receive("w1", 4, 1.0)  # ... and w1 dies
    [f2] = await g2.submit([job("j")])
    assert await w2.receive("w2", 4, 0.1) == [] and w2.stats.parked == 1
    await asyncio.sleep(0.35)
    [d] = await w2.receive("w2", 4, 1.0)
    assert d.envelope.reply_to == g1.gateway_id and d.envelope.tries == 2
    await w2.complete(d, FIRST)
    assert await asyncio.wait_for(f1, 2) == FIRST
    assert await asyncio.wait_for(f2, 2) == FIRST


async def test_a_dead_lettered_job_fails_its_parked_callers_too(
    make_broker: BrokerFactory, redis: Any, names: QueueNames
) -> None:
    g1, g2 = await make_broker(), await make_broker()
    worker = await make_broker(visibility_timeout_s=0.2, max_tries=1)
    [f1] = await g1.submit([job("j")])
    await worker.receive("w1", 4, 1.0)  # never finished
    [f2] = await g2.submit([job("j")])
    assert await worker.receive("w1", 4, 0.05) == []
    await asyncio.sleep(0.25)
    assert await worker.receive("w1", 4, 0.3) == []  # reclaimed: past max_tries
    for fut in (f1, f2):
        result = await asyncio.wait_for(fut, 2)
        assert result.status is ParseStatus.FAILED and result.error == "gave up after 1 tries"
    assert await leftovers(redis, names, "j") == {"stream": 0, "lease": 0, "parked": 0}


async def test_a_stale_lease_does_not_park_anything(
    make_broker: BrokerFactory, redis: Any, names: QueueNames
) -> None:
    """A lease naming an entry that is no longer pending (its ack lost with Redis' last
    second of writes, say) is taken over, never waited for."""
    gateway, worker = await make_broker(), await make_broker()
    await redis.set(names.lease_key("j"), "1-1", px=60_000)
    [fut] = await gateway.submit([job("j")])
    [d] = await worker.receive("w1", 4, 1.0)
    assert await redis.get(names.lease_key("j")) == d.token.encode()
    await worker.complete(d, FIRST)
    assert await asyncio.wait_for(fut, 2) == FIRST


async def test_the_heartbeat_renews_the_lease(
    make_broker: BrokerFactory, redis: Any, names: QueueNames
) -> None:
    g1, g2 = await make_broker(), await make_broker()
    worker = await make_broker(visibility_timeout_s=0.3)
    [f1] = await g1.submit([job("j")])
    [d1] = await worker.receive("w1", 4, 1.0)
    for _ in range(4):  # 0.8 s, past the lease's 0.3 s
        await asyncio.sleep(0.2)
        assert await worker.extend("w1", [d1]) == set()
    [f2] = await g2.submit([job("j")])
    assert await worker.receive("w1", 4, 0.2) == [], "the lease was renewed: the copy parks"
    await worker.complete(d1, FIRST)
    assert await asyncio.wait_for(f2, 2) == FIRST and await asyncio.wait_for(f1, 2) == FIRST

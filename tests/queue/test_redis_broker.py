"""The Broker contract on the Redis Streams broker, against a real redis-server."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from reward_service.domain import ParseStatus, Verdict, VoteResult
from reward_service.errors import Overloaded
from reward_service.queue import names as n
from reward_service.queue.base import Broker
from reward_service.queue.jobs import decode_result, encode_envelope
from reward_service.queue.names import QueueNames
from tests.queue.conftest import BrokerFactory, job

FIRST = VoteResult(verdict=Verdict.FIRST, p_first=0.9, status=ParseStatus.OK)
SECOND = VoteResult(verdict=Verdict.SECOND, p_first=0.2, status=ParseStatus.OK)


async def stream_len(redis: Any, names: QueueNames) -> int:
    return int(await redis.xlen(names.jobs_stream))


async def test_it_is_a_broker(make_broker: BrokerFactory) -> None:
    assert isinstance(await make_broker(), Broker)


async def test_roundtrip_stores_the_result_then_acks(
    make_broker: BrokerFactory, redis: Any, names: QueueNames
) -> None:
    gateway, worker = await make_broker(), await make_broker(result_ttl_s=120)
    [fut] = await gateway.submit([job("j1")])
    [delivery] = await worker.receive("w1", 8, 1.0)
    assert delivery.envelope.job_id == "j1" and delivery.envelope.tries == 1
    assert delivery.envelope.reply_to == gateway.gateway_id
    await worker.complete(delivery, FIRST)
    assert await asyncio.wait_for(fut, 2) == FIRST
    assert decode_result(await redis.get(names.result_key("j1"))) == FIRST
    assert 110 <= await redis.ttl(names.result_key("j1")) <= 120
    assert 0 < await redis.ttl(names.reply_stream(gateway.gateway_id)) <= n.REPLY_TTL_S
    assert await stream_len(redis, names) == 0, "acknowledged entries are deleted"
    assert (await redis.xpending(names.jobs_stream, names.workers_group))["pending"] == 0


async def test_identical_job_ids_are_queued_once(
    make_broker: BrokerFactory, redis: Any, names: QueueNames
) -> None:
    gateway, worker = await make_broker(), await make_broker()
    futs = await gateway.submit([job("same"), job("same")])
    futs += await gateway.submit([job("same")])
    assert await stream_len(redis, names) == 1
    deliveries = await worker.receive("w1", 8, 0.5)
    assert len(deliveries) == 1
    await worker.complete(deliveries[0], FIRST)
    assert await asyncio.wait_for(asyncio.gather(*futs), 2) == [FIRST] * 3


async def test_a_stored_result_answers_a_repeat_without_queueing(
    make_broker: BrokerFactory, redis: Any, names: QueueNames
) -> None:
    gateway, worker = await make_broker(), await make_broker()
    [fut] = await gateway.submit([job("done")])
    [delivery] = await worker.receive("w1", 1, 1.0)
    await worker.complete(delivery, FIRST)
    await fut
    other_gateway = await make_broker(max_depth=0)  # full: a stored answer needs no room
    [again] = await other_gateway.submit([job("done")])
    assert again.done() and again.result() == FIRST
    assert await stream_len(redis, names) == 0
    assert other_gateway.stats.answered_from_store == 1


async def test_a_queued_repeat_is_answered_from_the_stored_result(
    make_broker: BrokerFactory, redis: Any, names: QueueNames
) -> None:
    g1, g2, worker = await make_broker(), await make_broker(), await make_broker()
    [f1] = await g1.submit([job("twice")])
    [f2] = await g2.submit([job("twice")])  # another gateway: queued again
    [first] = await worker.receive("w1", 1, 1.0)
    await worker.complete(first, FIRST)
    assert await worker.receive("w1", 8, 0.2) == [], "the copy is answered, not handed out"
    assert await asyncio.wait_for(asyncio.gather(f1, f2), 2) == [FIRST, FIRST]
    assert worker.stats.answered_from_store == 1
    assert await stream_len(redis, names) == 0


async def test_the_first_stored_result_wins(
    make_broker: BrokerFactory, redis: Any, names: QueueNames
) -> None:
    g1, g2, worker = await make_broker(), await make_broker(), await make_broker()
    [f1] = await g1.submit([job("race")])
    [a] = await worker.receive("w1", 2, 1.0)
    await redis.delete(names.lease_key("race"))  # as if its worker had gone quiet
    [f2] = await g2.submit([job("race")])
    [b] = await worker.receive("w1", 2, 1.0)  # so both copies run at once
    await worker.complete(a, FIRST)
    await worker.complete(b, SECOND)
    assert await asyncio.wait_for(asyncio.gather(f1, f2), 2) == [FIRST, FIRST]


async def test_release_hands_the_job_back_at_once(
    make_broker: BrokerFactory, redis: Any, names: QueueNames
) -> None:
    gateway = await make_broker()
    w1, w2 = await make_broker(visibility_timeout_s=60), await make_broker()
    [fut] = await gateway.submit([job("back")])
    [d1] = await w1.receive("w1", 1, 1.0)
    waiting = asyncio.create_task(w2.receive("w2", 1, 5.0))
    await asyncio.sleep(0.1)
    started = time.monotonic()
    await w1.release(d1)
    [d2] = await waiting
    assert time.monotonic() - started < 2, "a blocked worker wakes up for the copy (vt: 60 s)"
    assert d2.envelope.job_id == "back" and d2.envelope.tries == 1, "a hand-back is no try"
    await w2.complete(d2, SECOND)
    assert await asyncio.wait_for(fut, 2) == SECOND
    assert await stream_len(redis, names) == 0


async def test_a_silent_worker_loses_its_job_to_another_after_the_visibility_timeout(
    make_broker: BrokerFactory, redis: Any, names: QueueNames
) -> None:
    gateway = await make_broker()
    w1 = await make_broker(visibility_timeout_s=0.4)
    w2 = await make_broker(visibility_timeout_s=0.4)
    [fut] = await gateway.submit([job("slow")])
    [d1] = await w1.receive("w1", 1, 1.0)
    assert await w2.receive("w2", 1, 0.2) == []
    await asyncio.sleep(0.4)
    [d2] = await w2.receive("w2", 1, 1.0)
    assert d2.envelope.job_id == "slow" and d2.envelope.tries == 2
    assert w2.stats.reclaimed == 1
    await w2.complete(d2, SECOND)
    await w1.complete(d1, FIRST)  # the late original changes nothing
    assert await asyncio.wait_for(fut, 2) == SECOND
    assert decode_result(await redis.get(names.result_key("slow"))) == SECOND
    assert await stream_len(redis, names) == 0


async def test_past_max_tries_the_job_is_dead_lettered_and_the_caller_told(
    make_broker: BrokerFactory, redis: Any, names: QueueNames
) -> None:
    gateway = await make_broker()
    worker = await make_broker(visibility_timeout_s=0.2, max_tries=2)
    [fut] = await gateway.submit([job("doomed")])
    for attempt in (1, 2):
        [d] = await worker.receive("w1", 1, 1.0)
        assert d.envelope.tries == attempt
        await asyncio.sleep(0.25)  # never completed: the worker "died"
    assert await worker.receive("w1", 1, 0.3) == []
    result = await asyncio.wait_for(fut, 2)
    assert result.status is ParseStatus.FAILED and result.error == "gave up after 2 tries"
    assert worker.stats.dead_letters == 1 and worker.dead_letters == [("doomed", result.error)]
    [(_, fields)] = await redis.xrange(names.dead_letter_stream)
    assert fields[n.DEAD_REASON_FIELD.encode()] == b"gave up after 2 tries"
    assert fields[n.DEAD_JOB_ID_FIELD.encode()] == b"doomed"
    assert await stream_len(redis, names) == 0


async def test_released_tries_count_towards_max_tries_only_when_asked(
    make_broker: BrokerFactory,
) -> None:
    gateway, worker = await make_broker(), await make_broker(max_tries=2)
    [fut] = await gateway.submit([job("flaky")])
    for _ in range(5):  # outages and shutdowns: handed back as often as needed, never given up
        [d] = await worker.receive("w1", 1, 1.0)
        assert d.envelope.tries == 1
        await worker.release(d)
    for expected in (1, 2):  # the job's own failures count
        [d] = await worker.receive("w1", 1, 1.0)
        assert d.envelope.tries == expected
        await worker.release(d, count_try=True)
    assert await worker.receive("w1", 1, 0.2) == []
    assert (await asyncio.wait_for(fut, 2)).status is ParseStatus.FAILED


async def test_poison_goes_to_the_dead_letters_and_the_worker_carries_on(
    make_broker: BrokerFactory, redis: Any, names: QueueNames
) -> None:
    gateway, worker = await make_broker(), await make_broker()
    field = n.JOB_FIELD
    await redis.xadd(names.jobs_stream, {field: b"\xff not json"})
    await redis.xadd(names.jobs_stream, {"something": b"else"})
    wrong_version = encode_envelope(job("old")).replace(b'"v":1', b'"v":99')
    [fut] = await gateway.submit([job("good")])
    await redis.xadd(names.jobs_stream, {field: wrong_version})
    # A job whose bytes got mangled on the stream, but with a readable id and route: its
    # caller is told at once instead of waiting for the deadline.
    [bad] = await gateway.submit([job("broken")])
    [(entry_id, _)] = await redis.xrevrange(names.jobs_stream, count=1)
    await redis.xdel(names.jobs_stream, entry_id)
    broken = b'{"v":1,"id":"broken","reply_to":"%s"}' % gateway.gateway_id.encode()
    await redis.xadd(names.jobs_stream, {field: broken})
    got = []
    for _ in range(3):
        got += await worker.receive("w1", 8, 0.3)
    assert [d.envelope.job_id for d in got] == ["good"]
    assert worker.stats.poison == 4
    dead = await redis.xrange(names.dead_letter_stream)
    raws = [f[field.encode()] for _, f in dead]
    assert b"\xff not json" in raws and wrong_version in raws and broken in raws
    reasons = [f[n.DEAD_REASON_FIELD.encode()].decode() for _, f in dead]
    assert any("unsupported envelope version 99" in r for r in reasons)
    failed = await asyncio.wait_for(bad, 2)
    assert failed.status is ParseStatus.FAILED and "undecodable" in (failed.error or "")
    assert not fut.done()


async def test_cancelled_jobs_are_skipped_by_workers(
    make_broker: BrokerFactory, redis: Any, names: QueueNames
) -> None:
    gateway, worker = await make_broker(), await make_broker()
    futs = await gateway.submit([job("keep"), job("drop")])
    futs[1].cancel()
    await gateway.cancel(["drop"])
    assert await worker.cancelled(["keep", "drop"]) == {"drop"}
    assert 0 < await redis.ttl(names.cancel_key("drop")) <= n.CANCEL_TTL_S
    deliveries = await worker.receive("w1", 8, 0.5)
    assert [d.envelope.job_id for d in deliveries] == ["keep"]
    assert worker.stats.cancelled_skipped == 1
    assert await stream_len(redis, names) == 1  # only "keep", in flight


async def test_cancel_waits_for_the_last_caller_and_a_new_caller_clears_it(
    make_broker: BrokerFactory,
) -> None:
    gateway, worker = await make_broker(), await make_broker()
    [a] = await gateway.submit([job("shared")])
    [b] = await gateway.submit([job("shared")])
    a.cancel()
    await gateway.cancel(["shared"])
    assert await worker.cancelled(["shared"]) == set(), "b still waits"
    b.cancel()
    await gateway.cancel(["shared"])
    assert await worker.cancelled(["shared"]) == {"shared"}
    [c] = await gateway.submit([job("shared")])  # asked for again
    assert await worker.cancelled(["shared"]) == set()
    deliveries = await worker.receive("w1", 8, 0.5)
    assert {d.envelope.job_id for d in deliveries} == {"shared"}
    await worker.complete(deliveries[0], FIRST)
    assert await asyncio.wait_for(c, 2) == FIRST


async def test_discard_acknowledges_without_a_result(
    make_broker: BrokerFactory, redis: Any, names: QueueNames
) -> None:
    gateway, worker = await make_broker(), await make_broker()
    await gateway.submit([job("late")])
    [d] = await worker.receive("w1", 1, 1.0)
    await worker.discard(d, "deadline passed")
    assert await stream_len(redis, names) == 0
    assert await redis.get(names.result_key("late")) is None


async def test_past_max_depth_submit_is_overloaded(
    make_broker: BrokerFactory, redis: Any, names: QueueNames
) -> None:
    gateway = await make_broker(max_depth=3)
    await gateway.submit([job("a"), job("b")])
    with pytest.raises(Overloaded) as err:
        await gateway.submit([job("c"), job("d")])
    assert err.value.retry_after_s > 0
    assert await stream_len(redis, names) == 2, "nothing of a refused submit is queued"
    assert len(gateway.replies) == 2
    await gateway.submit([job("c")])  # exactly at the limit is fine
    other = await make_broker(max_depth=3)  # a fresh gateway sees the shared depth
    with pytest.raises(Overloaded):
        await other.submit([job("e")])


async def test_depth_counts_queued_and_in_flight(make_broker: BrokerFactory) -> None:
    gateway, worker = await make_broker(depth_cache_s=0), await make_broker()
    await gateway.submit([job(f"d{i}") for i in range(5)])
    assert await gateway.depth() == 5
    deliveries = await worker.receive("w1", 2, 1.0)
    assert await gateway.depth() == 5  # 3 queued + 2 in flight
    for d in deliveries:
        await worker.complete(d, FIRST)
    assert await gateway.depth() == 3


async def test_receive_waits_at_most_its_timeout(make_broker: BrokerFactory) -> None:
    worker = await make_broker()
    started = time.monotonic()
    assert await worker.receive("w1", 4, 0.3) == []
    assert 0.25 <= time.monotonic() - started < 2


async def test_a_cancel_only_skips_the_copy_of_the_gateway_that_gave_up(
    make_broker: BrokerFactory,
) -> None:
    """A client retrying on another gateway (same request id, same job id) is still answered
    when the first gateway gives up."""
    g1, g2, worker = await make_broker(), await make_broker(), await make_broker()
    [f1] = await g1.submit([job("hedged")])
    [f2] = await g2.submit([job("hedged")])
    f1.cancel()
    await g1.cancel(["hedged"])
    [d] = await worker.receive("w1", 8, 0.5)
    assert d.envelope.reply_to == g2.gateway_id and worker.stats.cancelled_skipped == 1
    assert await worker.cancelled(["hedged"]) == set(), "g2 still waits for the running job"
    await worker.complete(d, FIRST)
    assert await asyncio.wait_for(f2, 2) == FIRST


async def test_a_failure_is_routed_but_not_stored(
    make_broker: BrokerFactory, redis: Any, names: QueueNames
) -> None:
    gateway, worker = await make_broker(), await make_broker()
    [fut] = await gateway.submit([job("flop")])
    [d] = await worker.receive("w1", 1, 1.0)
    await worker.complete(d, VoteResult.failed("engine exploded"))
    assert (await asyncio.wait_for(fut, 2)).error == "engine exploded"
    assert await redis.get(names.result_key("flop")) is None
    [again] = await gateway.submit([job("flop")])  # a retry gets a fresh try
    [d] = await worker.receive("w1", 1, 1.0)
    await worker.complete(d, FIRST)
    assert await asyncio.wait_for(again, 2) == FIRST


async def test_a_late_failure_does_not_replace_a_stored_verdict(
    make_broker: BrokerFactory, redis: Any, names: QueueNames
) -> None:
    g1, g2, worker = await make_broker(), await make_broker(), await make_broker()
    [f1] = await g1.submit([job("mixed")])
    [a] = await worker.receive("w1", 2, 1.0)
    await redis.delete(names.lease_key("mixed"))  # as if its worker had gone quiet
    [f2] = await g2.submit([job("mixed")])
    [b] = await worker.receive("w1", 2, 1.0)
    await worker.complete(a, FIRST)
    await worker.complete(b, VoteResult.failed("engine exploded"))
    assert await asyncio.wait_for(asyncio.gather(f1, f2), 2) == [FIRST, FIRST]

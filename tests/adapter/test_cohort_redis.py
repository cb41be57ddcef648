"""Shared cohorts (`RedisCohorts`) on a real redis-server: several replicas in one process, each
with its own Redis connections, and a recording judge (the service is not under test here)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import pytest
from redis.asyncio import Redis

from policy_adapter.cohort_redis import (
    CLIENT_NAME_PREFIX,
    Codec,
    RedisCohortConfig,
    RedisCohorts,
    connect,
)
from tests.support import redis_server
from tests.support.redis_server import RedisServer

redis_session = redis_server.redis_session

CODEC: Codec[str, float] = Codec(
    encode_key=json.dumps, decode_key=json.loads, encode=json.dumps, decode=json.loads
)


JudgeFunction = Callable[[str, Sequence[str], int], Awaitable[list[float]]]


class Judge:
    """Scores each text by its length; records (replica, key, texts, members) per group."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.groups: list[tuple[str, str, list[str], int]] = []
        self.delay_s = delay_s

    def for_replica(self, replica: str) -> JudgeFunction:
        async def judge(key: str, texts: Sequence[str], members: int) -> list[float]:
            self.groups.append((replica, key, sorted(texts), members))
            await asyncio.sleep(self.delay_s)
            return [float(len(t)) for t in texts]

        return judge


Make = Callable[..., Awaitable[RedisCohorts[str, float]]]


@pytest.fixture
async def make(redis_session: RedisServer) -> AsyncIterator[Make]:
    namespace = uuid.uuid4().hex[:8]
    made: list[RedisCohorts[str, float]] = []

    async def build(
        judge: Judge, *, size: int, timeout_s: float = 10.0, **config: float
    ) -> RedisCohorts[str, float]:
        replica = f"r{len(made)}-{namespace}"
        cohorts = RedisCohorts(
            connect(redis_session.url, replica),
            judge.for_replica(replica),
            CODEC,
            size=size,
            timeout_s=timeout_s,
            replica_id=replica,
            config=RedisCohortConfig(namespace=namespace, poll_s=0.02, **config),
        )
        await cohorts.start()
        made.append(cohorts)
        return cohorts

    yield build
    for cohorts in made:
        with contextlib.suppress(Exception):
            await cohorts.close()
        await cohorts.redis.aclose()


async def crash(cohorts: RedisCohorts[str, float]) -> None:
    """What SIGKILL leaves behind: its tasks stop, its Redis connections drop, its heartbeat
    key stays until it expires, its callers see their connections reset."""
    assert cohorts._loop_task is not None
    cohorts._stopping = True  # a cancellation redis-py turns into ConnectionError must stop it too
    tasks = [cohorts._loop_task, *cohorts._closing.values()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await cohorts.redis.connection_pool.disconnect()
    for waiters in cohorts._waiting.values():
        for waiter in waiters.values():
            waiter.future.cancel()
    # the server drops a dead process's connections (here: at once, as it would have noticed
    # the resets by the time OpenRLHF retries, 1 s later)
    kwargs = cohorts.redis.get_connection_kwargs()
    observer = Redis(host=kwargs["host"], port=kwargs["port"])
    try:
        for client in await observer.client_list():
            if client.get("name") == CLIENT_NAME_PREFIX + cohorts.replica_id:
                await observer.client_kill_filter(_id=client["id"])
    finally:
        await observer.aclose()


async def test_a_prompts_samples_spread_over_replicas_are_judged_once_as_a_whole(
    make: Make,
) -> None:
    judge = Judge()
    replicas = [await make(judge, size=4) for _ in range(3)]
    rotation = itertools.cycle(replicas)
    texts = ["a", "bb", "ccc", "dddd"]
    calls = [next(rotation).submit(key, text) for key in ("p1", "p2", "p3", "p4") for text in texts]
    results = await asyncio.gather(*calls)
    assert results == [1.0, 2.0, 3.0, 4.0] * 4
    assert sorted((key, g, m) for _, key, g, m in judge.groups) == [
        (key, texts, 4) for key in ("p1", "p2", "p3", "p4")
    ]
    assert sum(r.timed_out_cohorts for r in replicas) == 0
    assert sum(r.judged_cohorts for r in replicas) == 4


async def test_a_new_occurrence_after_its_group_closed_joins_a_new_group(make: Make) -> None:
    judge = Judge()
    a, b = await make(judge, size=2), await make(judge, size=2)
    assert await asyncio.gather(a.submit("p", "x"), b.submit("p", "yyy")) == [1.0, 3.0]
    # the next step: "yyy" again, beside a new text; judged in the step's own group
    assert await asyncio.gather(b.submit("p", "yyy"), a.submit("p", "zzzzz")) == [3.0, 5.0]
    assert [g for _, _, g, _ in judge.groups] == [["x", "yyy"], ["yyy", "zzzzz"]]
    # identical samples of one group on two live replicas are two members, not a retry
    assert await asyncio.gather(a.submit("q", "same"), b.submit("q", "same")) == [4.0, 4.0]
    assert judge.groups[-1][2:] == (["same"], 2)


async def test_a_retry_of_a_crashed_replicas_call_takes_its_place(make: Make) -> None:
    judge = Judge()
    a, b, c = [await make(judge, size=3) for _ in range(3)]
    lost = asyncio.create_task(a.submit("p", "from-a"))
    first = asyncio.create_task(b.submit("p", "x"))
    await asyncio.sleep(0.2)
    await crash(a)  # its heartbeat key is still fresh: CLIENT LIST tells it is gone
    retry = asyncio.create_task(c.submit("p", "from-a"))  # OpenRLHF resends, another pod takes it
    await asyncio.sleep(0.2)
    assert not retry.done()  # the group still waits for its third sample: the retry did not count
    last = await b.submit("p", "zz")
    assert [await first, await retry, last] == [1.0, 6.0, 2.0]
    assert judge.groups == [(b.replica_id, "p", ["from-a", "x", "zz"], 3)]
    assert c.adopted_calls == 1 and lost.cancelled()


async def test_a_closer_that_dies_loses_the_group_to_another_replica(
    make: Make, caplog: pytest.LogCaptureFixture
) -> None:
    slow, fast = Judge(delay_s=30), Judge()
    a = await make(slow, size=2, lease_s=0.5)
    b = await make(fast, size=2, lease_s=0.5)
    waiting = asyncio.create_task(b.submit("p", "x"))
    await asyncio.sleep(0.1)
    closer_call = asyncio.create_task(a.submit("p", "yy"))  # completes the group: a judges it
    await asyncio.sleep(0.2)
    assert [r for r, *_ in slow.groups] == [a.replica_id]
    await crash(a)
    with caplog.at_level(logging.WARNING):
        assert await asyncio.wait_for(waiting, 5) == 1.0
    assert [r for r, *_ in fast.groups] == [b.replica_id] and b.taken_over_cohorts == 1
    assert "stopped renewing" in caplog.text and closer_call.cancelled()


async def test_a_partial_group_is_closed_by_any_replica_at_its_timeout(make: Make) -> None:
    judge = Judge()
    a = await make(judge, size=4, timeout_s=2.0, lease_s=0.5)
    b = await make(judge, size=4, timeout_s=2.0, lease_s=0.5)
    first = asyncio.create_task(a.submit("p", "aa"))
    await asyncio.sleep(0.05)
    await crash(a)  # the replica that opened the group is gone: b still closes it
    assert await asyncio.wait_for(b.submit("p", "b"), 5) == 1.0
    assert judge.groups == [(b.replica_id, "p", ["aa", "b"], 2)]
    assert b.timed_out_cohorts == 1 and first.cancelled()


async def test_a_failed_group_fails_its_callers_everywhere_and_retries_form_a_new_group(
    make: Make,
) -> None:
    class FailsFirst(Judge):
        calls = 0

        def for_replica(self, replica: str) -> JudgeFunction:
            async def judge(key: str, texts: Sequence[str], members: int) -> list[float]:
                self.calls += 1
                if self.calls == 1:
                    raise RuntimeError("engine exploded")
                return [float(len(t)) for t in texts]

            return judge

    judge = FailsFirst()
    a, b = await make(judge, size=2), await make(judge, size=2)
    failed = await asyncio.gather(a.submit("p", "x"), b.submit("p", "yy"), return_exceptions=True)
    assert all("engine exploded" in str(e) for e in failed)
    assert await asyncio.gather(b.submit("p", "x"), a.submit("p", "yy")) == [1.0, 2.0]
    assert judge.calls == 2

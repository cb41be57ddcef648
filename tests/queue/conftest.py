"""Real redis-server processes (started by the tests on free ports) and brokers on them."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from reward_service.domain import Pair, VoteTask
from reward_service.queue.base import JobEnvelope
from reward_service.queue.names import QueueNames
from reward_service.queue.redis_broker import RedisBroker
from tests.support import redis_server
from tests.support.redis_server import RedisServer

# Real servers: one shared per session, and per-test ones a test may kill or restart.
redis_session = redis_server.redis_session
redis_own = redis_server.redis_own
redis_aof = redis_server.redis_aof

BrokerFactory = Callable[..., Awaitable[RedisBroker]]


def vote(i: int = 0, *, first: str = "a long answer", second: str = "short") -> VoteTask:
    return VoteTask(
        pair=Pair(query=f"q{i}", first=first, second=second),
        max_reasoning_tokens=16,
        temperature=0.6,
        vote_index=i,
    )


def job(job_id: str, *, ttl_s: float = 60.0, i: int = 0) -> JobEnvelope:
    return JobEnvelope(job_id=job_id, task=vote(i), deadline=time.time() + ttl_s)


@pytest.fixture
async def redis(redis_session: RedisServer) -> AsyncIterator[Any]:
    """A plain client to look at the raw keys and streams (typed loosely: replies vary)."""
    client = Redis.from_url(redis_session.url)
    yield client
    await client.aclose()


@pytest.fixture
def names() -> QueueNames:
    """A key prefix of its own, so tests can share one server."""
    return QueueNames(prefix=f"t{uuid.uuid4().hex[:10]}")


@pytest.fixture
async def make_broker(
    redis_session: RedisServer, names: QueueNames
) -> AsyncIterator[BrokerFactory]:
    """Builds started brokers (on the session server unless `url=` says otherwise)."""
    made: list[RedisBroker] = []

    async def make(**kw: object) -> RedisBroker:
        url = str(kw.pop("url", redis_session.url))
        kw.setdefault("names", names)
        broker = RedisBroker(url, **kw)  # type: ignore[arg-type]
        await broker.start()
        made.append(broker)
        return broker

    yield make
    for broker in made:
        await broker.close()

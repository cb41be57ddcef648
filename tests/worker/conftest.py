"""The queue tests' real-Redis fixtures, for worker tests that run on both brokers."""

from __future__ import annotations

from tests.queue.conftest import make_broker, names, redis, redis_own, redis_session

__all__ = ["make_broker", "names", "redis", "redis_own", "redis_session"]

"""Coalesces the Redis commands of concurrent callers into one pipeline round trip.

A gateway with thousands of calls in flight (or a worker finishing 64 judgments at once) would
otherwise hold one connection per caller and pay one round trip each. Here callers queue their
commands; one flusher sends whatever has gathered as a single pipeline, and while it waits the
next batch gathers. Under light load a batch is one caller (no added delay); under heavy load
batches grow, so throughput scales without more connections.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

# Queues commands on the pipeline; every command's reply goes back to the caller, in order.
Build = Callable[[Pipeline], object]


class PipelineBatcher:
    def __init__(self, redis: Redis, *, max_batch: int = 1000) -> None:
        self.redis = redis
        self.max_batch = max_batch
        self.round_trips = 0
        self._queue: list[tuple[Build, asyncio.Future[list[Any]]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def run(self, build: Build) -> list[Any]:
        """The replies to the commands `build` queued; a failed command's reply is its exception
        (the caller decides), a lost connection raises for the whole batch."""
        fut: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._queue.append((build, fut))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        return await fut

    async def _flush(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
            pipe = self.redis.pipeline(transaction=False)
            spans: list[tuple[int, int]] = []
            for build, _ in batch:
                start = len(pipe)
                build(pipe)
                spans.append((start, len(pipe)))
            self.round_trips += 1
            try:
                replies = await pipe.execute(raise_on_error=False)
            except asyncio.CancelledError:
                for _, fut in batch:
                    fut.cancel()
                raise
            except Exception as exc:  # every waiter of the batch must learn of it
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            for (start, end), (_, fut) in zip(spans, batch, strict=True):
                if not fut.done():
                    fut.set_result(replies[start:end])

    async def close(self) -> None:
        await cancel_and_wait(self._flusher)
        self._flusher = None


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    """Cancel a task and wait until it is gone. Python 3.11's wait_for (used inside redis-py)
    drops a cancel that lands just as its inner future finishes, so cancel until it ends."""
    while task is not None and not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=0.2)

"""The gateway half of the Redis queue: local futures keyed by job id, resolved by one background
reader of this gateway's reply stream.

The reader outlives Redis blips (it backs off and reads on from the last entry it saw) and
notices a Redis restart by its run id, so the broker can queue again what a restart lost.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from reward_service.domain import VoteResult
from reward_service.queue import names as n
from reward_service.queue.base import JobEnvelope
from reward_service.queue.batching import cancel_and_wait
from reward_service.queue.jobs import decode_result
from reward_service.queue.redis_ops import entries_of

log = logging.getLogger(__name__)

_ID = n.REPLY_ID_FIELD.encode()
_RESULT = n.REPLY_RESULT_FIELD.encode()


class ReplyRouter:
    def __init__(
        self,
        redis: Redis,
        stream: str,
        *,
        on_restart: Callable[[], Awaitable[None]],
        block_s: float = 1.0,
        restart_check_s: float = 1.0,
        batch: int = 1000,
    ) -> None:
        self.redis = redis
        self.stream = stream
        self.on_restart = on_restart
        self.block_s = block_s
        self.restart_check_s = restart_check_s
        self.batch = batch
        self.run_id: str | None = None
        self.errors = 0
        self.restarts_seen = 0
        self._waiters: dict[str, list[asyncio.Future[VoteResult]]] = {}
        self._envelopes: dict[str, JobEnvelope] = {}
        self._entry_ids: dict[str, str] = {}  # where on the jobs stream we queued each job
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    # ---- the waiter table ----
    def waiting(self, job_id: str) -> bool:
        return any(not f.done() for f in self._waiters.get(job_id, ()))

    def add(self, job: JobEnvelope, fut: asyncio.Future[VoteResult]) -> None:
        self._waiters.setdefault(job.job_id, []).append(fut)
        self._envelopes[job.job_id] = job

    def queued(self, job_id: str, entry_id: str) -> None:
        if job_id in self._envelopes:
            self._entry_ids[job_id] = entry_id

    def resolve(self, job_id: str, result: VoteResult) -> None:
        self._forget(job_id)
        for fut in self._waiters.pop(job_id, ()):
            if not fut.done():
                fut.set_result(result)

    def release_if_idle(self, job_id: str) -> bool:
        """Forget a job nobody here waits for any more; False while another caller still waits."""
        if self.waiting(job_id):
            self._waiters[job_id] = [f for f in self._waiters[job_id] if not f.done()]
            return False
        self._waiters.pop(job_id, None)
        self._forget(job_id)
        return True

    def abandon(self, job_ids: Iterable[str]) -> None:
        """The jobs could not be queued: their callers get the error from `submit` instead."""
        for job_id in job_ids:
            self._forget(job_id)
            for fut in self._waiters.pop(job_id, ()):
                fut.cancel()

    def pending(self) -> list[tuple[JobEnvelope, str | None]]:
        """Jobs still awaited here, with their stream entry ids (what a restart may have lost)."""
        return [
            (e, self._entry_ids.get(job_id))
            for job_id, e in self._envelopes.items()
            if self.waiting(job_id)
        ]

    def _forget(self, job_id: str) -> None:
        self._envelopes.pop(job_id, None)
        self._entry_ids.pop(job_id, None)

    def __len__(self) -> int:
        return len(self._waiters)

    # ---- the reader ----
    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"replies:{self.stream}")

    async def close(self) -> None:
        self._closing = True
        task, self._task = self._task, None
        await cancel_and_wait(task)
        for futures in self._waiters.values():
            for fut in futures:
                fut.cancel()
        self._waiters.clear()
        self._envelopes.clear()
        self._entry_ids.clear()

    async def _run(self) -> None:
        # A fresh gateway id has an empty stream; a reused one may hold stale replies, which
        # match no waiter and are trimmed away.
        last_id: bytes | str = "0-0"
        unread_trim = 0
        checked = time.monotonic()
        backoff = 0.05
        while not self._closing:
            try:
                if time.monotonic() - checked >= self.restart_check_s:
                    await self._check_restart()
                    checked = time.monotonic()
                reply = await self.redis.xread(
                    {self.stream: last_id}, count=self.batch, block=int(self.block_s * 1000)
                )
                for entry_id, fields in entries_of(reply):
                    last_id = entry_id
                    self._deliver(fields)
                    unread_trim += 1
                if unread_trim >= self.batch or (unread_trim and not reply):
                    await self.redis.xtrim(self.stream, minid=last_id, approximate=True)
                    unread_trim = 0
                backoff = 0.05
            except asyncio.CancelledError:
                raise
            except (RedisConnectionError, RedisTimeoutError) as exc:
                self.errors += 1
                log.warning("reply reader %s: Redis unreachable (%s); retrying", self.stream, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
            except Exception:  # the reader must outlive anything, or every caller would hang
                self.errors += 1
                log.exception("reply reader %s failed; retrying", self.stream)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)

    def _deliver(self, fields: dict[bytes, bytes]) -> None:
        job_id = fields.get(_ID, b"").decode()
        try:
            result = decode_result(fields[_RESULT])
        except (KeyError, ValueError, TypeError) as exc:
            result = VoteResult.failed(f"undecodable result from the queue: {exc}")
        self.resolve(job_id, result)

    async def check_run_id(self) -> str:
        info = await self.redis.info("server")
        return str(info["run_id"])

    async def _check_restart(self) -> None:
        run_id = await self.check_run_id()
        if self.run_id is None:
            self.run_id = run_id
        elif run_id != self.run_id:
            log.warning("Redis restarted (run id %s -> %s): queueing again", self.run_id, run_id)
            self.restarts_seen += 1
            await self.on_restart()
            self.run_id = run_id

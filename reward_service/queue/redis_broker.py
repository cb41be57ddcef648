"""The Redis Streams broker: gateways and worker replicas on different machines share one queue.

Jobs go on one stream read by one consumer group; results come back on a reply stream per
gateway. Same semantics as `MemoryBroker` (at-least-once, visibility timeout, try counts, dead
letters, stored results answering repeats), plus what several processes need: first stored
result wins, Redis outages surface as `Unavailable` or a retry instead of a hang, and a gateway
queues its unanswered jobs again when Redis comes back without them.

`release` adds a copy of the job (carrying its try count), then acknowledges and deletes the
original: blocked workers wake at once, where an XCLAIM-based hand-back would wait for the next
reclaim scan. Concurrent callers' commands share round trips (`batching.PipelineBatcher`).

A job being run holds a lease (renewed by the worker's heartbeat with its visibility timeout).
A second copy of it (a client retrying on another gateway after the first died or timed out)
is parked on that run instead of running again, and answered with it; if the run ends without
an answer (cancelled, past its deadline) the parked copies are queued again.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError, ResponseError

from reward_service import metrics
from reward_service.domain import ParseStatus, VoteResult
from reward_service.errors import Overloaded, Unavailable
from reward_service.queue import names as n
from reward_service.queue import redis_client
from reward_service.queue import redis_ops as ops
from reward_service.queue.base import Delivery, JobEnvelope
from reward_service.queue.batching import Build, PipelineBatcher
from reward_service.queue.jobs import (
    PoisonMessage,
    decode_envelope,
    decode_result,
    encode_envelope,
    encode_result,
)
from reward_service.queue.names import QueueNames
from reward_service.queue.redis_client import REDIS_DOWN, REDIS_FULL, RedisTarget
from reward_service.queue.replies import ReplyRouter

log = logging.getLogger(__name__)

RETRYABLE = REDIS_DOWN + REDIS_FULL
FULL_RETRY_S = 2.0  # what a caller refused for lack of Redis memory is told to wait
ADMIT_PARKED, ADMIT_CANCELLED = 2, 3  # ADMIT_LUA's answers besides a stored result and 1 (run)
_JOB = n.JOB_FIELD.encode()


@dataclasses.dataclass
class RedisBrokerStats:
    """Counters for the metrics layer; each process counts what it did itself."""

    enqueued: int = 0
    answered_from_store: int = 0  # repeats answered from a stored result, without running
    reclaimed: int = 0  # deliveries taken over after the visibility timeout
    released: int = 0
    cancelled_skipped: int = 0
    dead_letters: int = 0
    poison: int = 0
    requeued_after_restart: int = 0
    redis_errors: int = 0
    gave_up_ops: int = 0  # acks/results not written before the visibility timeout
    extended: int = 0  # heartbeats that kept a delivery
    lost_leases: int = 0  # heartbeats that found a delivery taken over by another worker
    parked: int = 0  # copies of a running job (a client retrying elsewhere) that wait for it


class RedisBroker:
    def __init__(
        self,
        target: RedisTarget | str,
        *,
        names: QueueNames = n.DEFAULT_NAMES,
        gateway_id: str | None = None,
        max_depth: int = 100_000,
        visibility_timeout_s: float = n.VISIBILITY_TIMEOUT_S,
        max_tries: int = n.MAX_TRIES,
        result_ttl_s: int = n.RESULT_TTL_S,
        cancel_ttl_s: int = n.CANCEL_TTL_S,
        reply_ttl_s: int = n.REPLY_TTL_S,
        depth_cache_s: float = n.DEPTH_CACHE_S,
        retries: int = 6,
        socket_timeout_s: float = 10.0,
        max_connections: int = 32,
    ) -> None:
        self.names = names
        self.gateway_id = gateway_id or uuid.uuid4().hex[:16]
        self.max_depth = max_depth
        self.visibility_timeout_s = visibility_timeout_s
        self.max_tries = max_tries
        self.result_ttl_s = int(result_ttl_s)
        self.cancel_ttl_s = int(cancel_ttl_s)
        self.reply_ttl_s = int(reply_ttl_s)
        self.depth_cache_s = depth_cache_s
        # Blocking reads must return before the socket timeout fires.
        self.max_block_s = max(0.05, min(2.0, socket_timeout_s / 2))
        self.reclaim_every_s = min(1.0, visibility_timeout_s / 4)
        self.lease_ms = max(1, int(visibility_timeout_s * 1000))
        self.stats = RedisBrokerStats()
        self.redis: Redis = redis_client.connect(
            target,
            max_connections=max_connections,
            socket_timeout_s=socket_timeout_s,
            retries=retries,
        )
        self.batch = PipelineBatcher(self.redis)
        self.replies = ReplyRouter(
            self.redis, names.reply_stream(self.gateway_id), on_restart=self._requeue_pending
        )
        self._depth_refresh: asyncio.Task[None] | None = None
        self._recent_dead: deque[tuple[str, str]] = deque(maxlen=100)
        # Worker side: reply routes of the deliveries handed out and not yet finished.
        self._held: dict[str, set[str]] = {}
        self._depth = 0
        self._depth_at = -1e9
        self._next_reclaim = 0.0
        self._reclaim_cursor = "0-0"

    # ---- lifecycle ----
    async def start(self) -> None:
        """Check the server (UnsupportedRedis: Redis Cluster, or older than 7.0), create the group
        (idempotent); raises Unavailable if Redis cannot be reached."""
        try:
            await redis_client.check_server(self.redis)
            await self._ensure_group()
            self.replies.run_id = await self.replies.check_run_id()
        except REDIS_DOWN as exc:
            raise Unavailable(f"Redis queue unreachable: {exc}") from exc

    async def close(self) -> None:
        await self.replies.close()
        await self.batch.close()
        await redis_client.close(self.redis)

    async def depth(self) -> int:
        """Jobs queued or in flight: the group's lag plus its pending entries."""
        try:
            await self._fresh_depth()
        except REDIS_DOWN as exc:
            raise Unavailable(f"Redis queue unreachable: {exc}") from exc
        return self._depth

    @property
    def dead_letters(self) -> list[tuple[str, str]]:
        """(job id, reason) of the last jobs this process gave up on; all are on the stream."""
        return list(self._recent_dead)

    # ---- gateway side ----
    async def submit(self, jobs: Sequence[JobEnvelope]) -> list[asyncio.Future[VoteResult]]:
        """Answers from stored results at once; queues the rest (this gateway is the reply route).

        A job this gateway already waits for is not queued twice. Raises Overloaded past
        `max_depth` or when Redis is out of memory, and Unavailable when Redis cannot be
        reached (down, or failing over to a replica).
        """
        self.replies.start()
        jobs = [j if j.reply_to == self.gateway_id else _reroute(j, self.gateway_id) for j in jobs]
        fresh = list({j.job_id: j for j in jobs if not self.replies.waiting(j.job_id)}.values())
        stored: dict[str, VoteResult] = {}
        try:
            await self._fresh_depth()
            if fresh and self._depth + len(fresh) > self.max_depth:
                # (Nearly) full: stored answers need no room, so look for them first.
                stored = await self._stored([j.job_id for j in fresh])
                new = [j for j in fresh if j.job_id not in stored]
                if new and self._depth + len(new) > self.max_depth:
                    raise Overloaded(
                        f"queue holds {self._depth} judgments (limit {self.max_depth})",
                        retry_after_s=1.0,
                    )
        except RETRYABLE as exc:
            self.stats.redis_errors += 1
            raise _refusal(exc) from exc
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[VoteResult]] = []
        enqueue: dict[str, JobEnvelope] = {}
        for job in jobs:
            fut: asyncio.Future[VoteResult] = loop.create_future()
            if job.job_id in stored:
                fut.set_result(stored[job.job_id])
                self.stats.answered_from_store += 1
            else:
                # Another submit may have queued it while we looked: then just wait with it.
                if not self.replies.waiting(job.job_id):
                    enqueue[job.job_id] = job
                self.replies.add(job, fut)  # before queueing: the answer may come at once
            futures.append(fut)
        if enqueue:
            self._depth += len(enqueue)  # reserve room until the next reading
            try:
                await self._submit(list(enqueue.values()))
            except RETRYABLE as exc:
                self._depth -= len(enqueue)
                self.stats.redis_errors += 1
                self.replies.abandon(enqueue)
                raise _refusal(exc) from exc
        return futures

    async def cancel(self, job_ids: Sequence[str]) -> None:
        idle = [j for j in job_ids if self.replies.release_if_idle(j)]
        if not idle:
            return

        def mark(pipe: Pipeline) -> None:
            for job_id in idle:
                # The mark names this gateway: another gateway waiting for the same job (a
                # client retrying elsewhere) keeps its copy.
                pipe.set(self.names.cancel_key(job_id), self.gateway_id, ex=self.cancel_ttl_s)

        try:
            replies = await self.batch.run(mark)
        except REDIS_DOWN as exc:  # the jobs still end at their deadline; nothing hangs
            replies = [exc]
        failed = [r for r in replies if isinstance(r, Exception)]
        if failed:  # e.g. out of memory: likewise
            self.stats.redis_errors += 1
            log.warning("could not mark %d jobs cancelled: %s", len(failed), failed[0])

    # ---- worker side ----
    async def receive(self, consumer: str, max_jobs: int, timeout_s: float) -> list[Delivery]:
        """Reclaims jobs idle past the visibility timeout, then reads new ones.

        Never raises for a Redis error (an outage, a failover, memory full, anything else): it
        logs, waits out `timeout_s` and returns nothing, so the worker loop carries on and
        reconnects. (Entries read just before a connection broke stay pending under this
        consumer and are reclaimed after the visibility timeout.)
        """
        deadline = time.monotonic() + timeout_s
        backoff = 0.05
        while True:
            remaining = deadline - time.monotonic()
            try:
                out = await self._receive_once(consumer, max_jobs, remaining)
            except RedisError as exc:
                if isinstance(exc, ResponseError) and "NOGROUP" in str(exc):
                    log.warning("consumer group missing (Redis lost its data?): creating it again")
                    await self._guard(self._ensure_group)
                    if time.monotonic() >= deadline:
                        return []
                    continue
                self.stats.redis_errors += 1
                if isinstance(exc, RETRYABLE):
                    log.warning("%s: Redis unavailable (%s); retrying", consumer, exc)
                else:  # not expected: loud, but the loop must live on
                    log.error("%s: receiving failed (%r); retrying", consumer, exc)
                await asyncio.sleep(max(0.0, min(backoff, deadline - time.monotonic())))
                backoff = min(backoff * 2, 1.0)
                if time.monotonic() >= deadline:
                    return []
                continue
            if out or time.monotonic() >= deadline:
                return out

    async def complete(self, delivery: Delivery, result: VoteResult) -> None:
        env = delivery.envelope

        def store_and_route(pipe: Pipeline) -> None:
            ops.complete(
                pipe,
                self.names,
                entry_id=delivery.token,
                job_id=env.job_id,
                reply_to=env.reply_to,
                result=encode_result(result),
                # Like MemoryBroker: a failure is routed, not stored, so a retry tries afresh.
                store=result.status is not ParseStatus.FAILED,
                result_ttl_s=self.result_ttl_s,
                reply_ttl_s=self.reply_ttl_s,
            )

        self._let_go(delivery)
        await self._persist(f"complete {env.job_id}", store_and_route)

    async def extend(self, consumer: str, deliveries: Sequence[Delivery]) -> set[str]:
        """Never raises for a Redis outage: the next heartbeat tries again, and if Redis stays
        away past the visibility timeout the jobs are reclaimed, as for a dead worker."""
        if not deliveries:
            return set()
        held = [(d.token, d.envelope.job_id) for d in deliveries]
        try:
            [lost] = await self.batch.run(
                lambda pipe: ops.extend(pipe, self.names, consumer, held, self.lease_ms)
            )
        except REDIS_DOWN as exc:
            self.stats.redis_errors += 1
            log.warning("%s: heartbeat not written: %s", consumer, exc)
            return set()
        if isinstance(lost, Exception):  # e.g. NOGROUP: Redis lost its data; reads recreate it
            log.warning("%s: heartbeat failed: %s", consumer, lost)
            return set()
        self.stats.extended += len(held) - len(lost)
        self.stats.lost_leases += len(lost)
        return {_s(t) for t in lost}

    async def release(self, delivery: Delivery, *, count_try: bool = False) -> None:
        env = delivery.envelope
        if not count_try:  # the copy's first delivery counts again; this one did not happen
            env = dataclasses.replace(env, tries=max(0, env.tries - 1))

        def hand_back(pipe: Pipeline) -> None:
            ops.unqueue(pipe, self.names, delivery.token, env.job_id, encode_envelope(env))

        self.stats.released += 1
        self._let_go(delivery)
        await self._persist(f"release {env.job_id}", hand_back)

    async def discard(self, delivery: Delivery, reason: str) -> None:
        log.debug("discarding job %s: %s", delivery.envelope.job_id, reason)
        self._let_go(delivery)
        await self._persist(
            f"discard {delivery.envelope.job_id}",
            lambda pipe: ops.unqueue(pipe, self.names, delivery.token, delivery.envelope.job_id),
        )

    async def cancelled(self, job_ids: Sequence[str]) -> set[str]:
        """Jobs whose every caller, among the deliveries this worker holds, has given up."""
        if not job_ids:
            return set()
        try:
            [marks] = await self.batch.run(
                lambda pipe: pipe.mget([self.names.cancel_key(j) for j in job_ids])
            )
        except REDIS_DOWN as exc:  # asked again in a moment; deadlines still apply meanwhile
            marks = exc
        if isinstance(marks, Exception):
            self.stats.redis_errors += 1
            log.warning("could not read cancellations: %s", marks)
            return set()
        return {
            j
            for j, mark in zip(job_ids, marks, strict=True)
            if mark is not None and self._held.get(j, {_s(mark)}) == {_s(mark)}
        }

    # ---- internals: gateway ----
    async def _stored(self, job_ids: list[str]) -> dict[str, VoteResult]:
        if not job_ids:
            return {}
        [raw] = await self.batch.run(
            lambda pipe: pipe.mget([self.names.result_key(j) for j in job_ids])
        )
        if isinstance(raw, Exception):
            raise raw
        return {j: _decode_stored(r) for j, r in zip(job_ids, raw, strict=True) if r is not None}

    async def _fresh_depth(self) -> None:
        """Read the depth again if the last reading is stale; concurrent callers share one read."""
        if time.monotonic() - self._depth_at < self.depth_cache_s:
            return
        if self._depth_refresh is None or self._depth_refresh.done():
            self._depth_refresh = asyncio.create_task(self._read_depth())
        await asyncio.shield(self._depth_refresh)

    async def _read_depth(self) -> None:
        def read(pipe: Pipeline) -> None:
            pipe.xinfo_groups(self.names.jobs_stream)
            pipe.xlen(self.names.jobs_stream)

        groups, length = await self.batch.run(read)
        depth = length if isinstance(length, int) else 0
        if not isinstance(groups, Exception):
            for g in groups:
                if _s(g["name"]) == self.names.workers_group and g.get("lag") is not None:
                    # lag is unknown (None) after deletions ahead of the group; every ack
                    # deletes its entry, so the stream length is then the same count.
                    depth = int(g["lag"]) + int(g["pending"])
        self._depth = depth
        self._depth_at = time.monotonic()

    async def _submit(self, jobs: list[JobEnvelope]) -> None:
        """Queue the jobs whose result is not stored; answer the others from the store."""
        encoded = [(job.job_id, encode_envelope(job)) for job in jobs]
        [replies] = await self.batch.run(lambda pipe: ops.submit(pipe, self.names, encoded))
        if isinstance(replies, Exception):
            raise replies
        for job, reply in zip(jobs, replies, strict=True):
            if isinstance(reply, list):  # [entry id]: queued
                self.replies.queued(job.job_id, _s(reply[0]))
                self.stats.enqueued += 1
            else:  # answered meanwhile
                self._depth -= 1
                self.stats.answered_from_store += 1
                self.replies.resolve(job.job_id, _decode_stored(reply))

    async def _requeue_pending(self) -> None:
        """After a Redis restart: queue again the jobs still awaited here whose entry is gone
        and whose result is not stored (AOF `everysec` can lose the last second of writes;
        without AOF everything is gone). An entry handed back meanwhile has a new id, so its
        job may be queued twice: harmless, the first stored result answers both."""
        await self._ensure_group()
        pending = self.replies.pending()
        if not pending:
            return

        def exists(pipe: Pipeline) -> None:
            for _, entry_id in pending:
                if entry_id is not None:
                    pipe.xrange(self.names.jobs_stream, entry_id, entry_id, count=1)

        found = iter(await self.batch.run(exists))
        lost = [env for env, entry_id in pending if entry_id is None or not next(found)]
        if lost:
            await self._submit(lost)  # those answered meanwhile are resolved, not queued
            self.stats.requeued_after_restart += len(lost)
        log.warning(
            "Redis restarted: %d of %d awaited jobs were lost and are queued again",
            len(lost),
            len(pending),
        )

    # ---- internals: worker ----
    async def _receive_once(self, consumer: str, max_jobs: int, wait_s: float) -> list[Delivery]:
        entries: list[tuple[str, dict[bytes, bytes], int]] = []
        if time.monotonic() >= self._next_reclaim:
            entries = await self._reclaim(consumer, max_jobs)
            self._next_reclaim = time.monotonic() + self.reclaim_every_s
        if len(entries) < max_jobs:
            block_ms = int(min(wait_s, self.max_block_s) * 1000)
            reply = await self.redis.xreadgroup(
                self.names.workers_group,
                consumer,
                {self.names.jobs_stream: ">"},
                count=max_jobs - len(entries),
                block=block_ms if (block_ms > 0 and not entries) else None,
            )
            entries.extend((eid, fields, 1) for eid, fields in ops.entries_of(reply))
        return await self._admit(entries) if entries else []

    async def _reclaim(
        self, consumer: str, max_jobs: int
    ) -> list[tuple[str, dict[bytes, bytes], int]]:
        """Take over jobs whose worker went quiet for longer than the visibility timeout."""
        cursor, claimed, *_ = await self.redis.xautoclaim(
            self.names.jobs_stream,
            self.names.workers_group,
            consumer,
            min_idle_time=int(self.visibility_timeout_s * 1000),
            start_id=self._reclaim_cursor,
            count=max_jobs,
        )
        self._reclaim_cursor = _s(cursor)
        claimed = [(_s(eid), fields) for eid, fields in claimed if fields]
        if not claimed:
            return []

        def delivery_counts(pipe: Pipeline) -> None:
            for eid, _ in claimed:
                pipe.xpending_range(self.names.jobs_stream, self.names.workers_group, eid, eid, 1)

        counts = await self.batch.run(delivery_counts)
        self.stats.reclaimed += len(claimed)
        log.info("%s: reclaimed %d jobs past the visibility timeout", consumer, len(claimed))
        return [
            (eid, fields, _times_delivered(info))
            for (eid, fields), info in zip(claimed, counts, strict=True)
        ]

    async def _admit(self, entries: list[tuple[str, dict[bytes, bytes], int]]) -> list[Delivery]:
        """Turn stream entries into deliveries; dead-letter, skip or answer the rest in one go."""
        effects: list[Build] = []
        candidates: list[tuple[str, JobEnvelope, bytes]] = []
        for eid, fields, delivered in entries:
            raw = fields.get(_JOB)
            try:
                if raw is None:
                    raise PoisonMessage(f"no {n.JOB_FIELD!r} field in {sorted(fields)!r}")
                env = decode_envelope(raw)
            except PoisonMessage as exc:
                self.stats.poison += 1
                job_id, reply_to = _route_of(raw)
                raw = raw if raw is not None else repr(fields).encode()
                effects.append(self._give_up(eid, raw, str(exc), job_id, reply_to))
                continue
            tries = env.tries + delivered
            if tries > self.max_tries:
                reason = f"gave up after {tries - 1} tries"
                effects.append(self._give_up(eid, raw, reason, env.job_id, env.reply_to))
                continue
            candidates.append((eid, dataclasses.replace(env, tries=tries), raw))
        out: list[Delivery] = []
        if candidates:
            admitting = [(eid, env.job_id, env.reply_to, raw) for eid, env, raw in candidates]
            [decisions] = await self.batch.run(
                lambda pipe: ops.admit(
                    pipe, self.names, admitting, self.lease_ms, self.cancel_ttl_s
                )
            )
            if isinstance(decisions, Exception):
                raise decisions
            for (eid, env, _), decision in zip(candidates, decisions, strict=True):
                if isinstance(decision, bytes):  # answered already (a repeat, or a lost ack)
                    effects.append(self._answer_from_store(eid, env, decision))
                elif decision == ADMIT_PARKED:  # the same job runs already: wait for that run
                    self.stats.parked += 1
                elif decision == ADMIT_CANCELLED:  # its caller gave up
                    effects.append(self._skip_cancelled(eid, env.job_id))
                else:
                    out.append(Delivery(envelope=env, token=eid))
                    self._held.setdefault(env.job_id, set()).add(env.reply_to)
        if effects:
            await self._persist("skip", lambda pipe: [effect(pipe) for effect in effects])
        return out

    def _let_go(self, delivery: Delivery) -> None:
        env = delivery.envelope
        routes = self._held.get(env.job_id)
        if routes is not None:
            routes.discard(env.reply_to)
            if not routes:
                del self._held[env.job_id]

    def _skip_cancelled(self, eid: str, job_id: str) -> Build:
        self.stats.cancelled_skipped += 1
        return lambda pipe: ops.unqueue(pipe, self.names, eid, job_id)

    def _answer_from_store(self, eid: str, env: JobEnvelope, stored: bytes) -> Build:
        self.stats.answered_from_store += 1
        return self._finish(eid, env.job_id, env.reply_to, stored)

    def _finish(self, eid: str, job_id: str, reply_to: str, result: bytes) -> Build:
        """Answer every caller of a job with its stored result, else `result`, and ack."""
        return lambda pipe: ops.complete(
            pipe,
            self.names,
            entry_id=eid,
            job_id=job_id,
            reply_to=reply_to,
            result=result,
            store=False,
            result_ttl_s=self.result_ttl_s,
            reply_ttl_s=self.reply_ttl_s,
        )

    def _give_up(self, eid: str, raw: bytes, reason: str, job_id: str, reply_to: str) -> Build:
        """Dead-letter a job and tell its caller, so nobody waits for it until the deadline."""
        log.warning("job %s (entry %s) dead-lettered: %s", job_id or "?", eid, reason)
        self.stats.dead_letters += 1
        metrics.DEAD_LETTERS.inc()
        self._recent_dead.append((job_id, reason))
        failed = encode_result(VoteResult.failed(reason))

        def give_up(pipe: Pipeline) -> None:
            ops.dead_letter(pipe, self.names, entry_id=eid, raw=raw, reason=reason, job_id=job_id)
            if job_id:  # its callers, parked ones included, are told
                self._finish(eid, job_id, reply_to, failed)(pipe)
            else:
                ops.ack(pipe, self.names, eid)

        return give_up

    async def _persist(self, what: str, build: Build) -> None:
        """Write a worker-side effect, retrying through an outage or a failover (a demoted
        primary refuses each write with READONLY; the effects are safe to repeat). After the
        visibility timeout the job is someone else's anyway (it will be redelivered), so give up
        then, loudly. Memory full does not stop it: the scripts that finish, skip or hand back
        a job run with `allow-oom` (see redis_ops); a plain write refused for memory (a dead
        letter's record) is logged, not retried."""
        give_up = time.monotonic() + self.visibility_timeout_s
        delay = 0.05
        while True:
            try:
                replies = await self.batch.run(build)
                down = next((r for r in replies if isinstance(r, REDIS_DOWN)), None)
                if down is not None:
                    raise down
            except REDIS_DOWN as exc:
                self.stats.redis_errors += 1
                if time.monotonic() >= give_up:
                    self.stats.gave_up_ops += 1
                    log.error("%s not written (%s); the job will be redelivered", what, exc)
                    return
                log.warning("%s: Redis unavailable (%s); retrying", what, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            for reply in replies:
                if isinstance(reply, Exception):  # e.g. NOGROUP after Redis lost its data
                    log.warning("%s: %s", what, reply)
            return

    async def _ensure_group(self) -> None:
        try:
            # From id 0, not $: jobs queued before the first worker started must be read too.
            await self.redis.xgroup_create(
                self.names.jobs_stream, self.names.workers_group, id="0", mkstream=True
            )
        except REDIS_FULL as exc:
            # Refused before Redis looked for the group. Starting anyway keeps a full Redis
            # from crash-looping every replica; a missing group is created on the first read.
            log.warning("Redis is out of memory; consumer group not checked: %s", exc)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _guard(self, op: Callable[[], Awaitable[None]]) -> None:
        try:
            await op()
        except RedisError as exc:  # tried again on the next round
            self.stats.redis_errors += 1
            log.warning("Redis: %s", exc)


def _refusal(exc: Exception) -> Overloaded | Unavailable:
    """Why a submit was refused, as the domain error the gateway maps to a gRPC status."""
    if isinstance(exc, REDIS_FULL):
        return Overloaded(
            f"Redis is out of memory (maxmemory reached with noeviction), so no new judgments "
            f"can be queued until workers drain it: {exc}",
            retry_after_s=FULL_RETRY_S,
        )
    return Unavailable(f"Redis queue unreachable: {exc}")


def _reroute(job: JobEnvelope, gateway_id: str) -> JobEnvelope:
    return dataclasses.replace(job, reply_to=gateway_id)


def _times_delivered(info: Any) -> int:
    if isinstance(info, list) and info:
        return int(info[0]["times_delivered"])
    return 2  # reclaimed, so at least the second delivery


def _s(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _decode_stored(raw: bytes) -> VoteResult:
    try:
        return decode_result(raw)
    except (ValueError, KeyError, TypeError) as exc:
        return VoteResult.failed(f"undecodable stored result: {exc}")


def _route_of(raw: bytes | None) -> tuple[str, str]:
    """Best effort (job id, reply route) of an undecodable job, so its caller is told."""
    try:
        body = json.loads(raw or b"")
        return str(body.get("id") or ""), str(body.get("reply_to") or "")
    except (ValueError, AttributeError):
        return "", ""

"""Cohorts whose state lives in Redis, so any `rrm remote-rm` replica can take any sample.

OpenRLHF rotates reward calls over its URLs and a Kubernetes Service spreads them over pods:
the n samples of a prompt reach different replicas. Each call registers as a member (a
"holder") of its key's open group in Redis; the call that completes the group (or the first
replica to see its timeout pass) takes the close atomically in a Lua script and judges it under
a lease it renews; every replica polls the groups its own callers wait on and answers them from
the stored result. A closer that dies stops renewing: another replica takes the group over
when the lease runs out and judges it again.

Retry or new occurrence: OpenRLHF resends the identical payload after a failed attempt. A call
is a retry when an earlier identical call (same key, same text) is still a member of a group
and cannot get its answer any more: its replica died (its heartbeat key expired, or its Redis
connections are gone). The retry takes that member's place: it does not count again and gets
that group's result. Any other call is a new occurrence: it joins the key's open group (or
opens one) and is judged there, even if the same text was judged in an earlier group (a later
step or epoch). A member answered is removed, so it can never be "retried" into an old result.
A failed group stores no result: its callers get the error, their retries form a new group.

Keys (prefix `rrm:remote-rm:<namespace>`): `cur:<key>` the open group; `g:<gid>` its state;
`h:<gid>` holders (call id -> replica, text digest); `t:<gid>` texts; `r:<gid>` results;
`rec:<key>` recent groups of a key; `open` / `closing` deadlines; `replica:<id>` heartbeats.
Every key carries a TTL. Standalone Redis or Sentinel (the scripts touch several keys).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

from policy_adapter.cohort import CohortJudge

if TYPE_CHECKING:  # redis is imported only when cohorts are shared
    from redis.asyncio import Redis

log = logging.getLogger(__name__)

K = TypeVar("K")
T = TypeVar("T")

CLIENT_NAME_PREFIX = "rrm-remote-rm-"

_NOW = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
"""

# ARGV: prefix, key digest, call id, replica, text digest, text, key, n, timeout ms, ttl ms,
# lease ms, report suspects (1/0). Returns {outcome, gid, state} or {'suspects', replica...}.
_SUBMIT = (
    _NOW
    + """
local P, ck, hid, rid, td = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local ttl, lease = tonumber(ARGV[10]), tonumber(ARGV[11])
local rec = P .. ':rec:' .. ck
local suspects = {}
for _, gid in ipairs(redis.call('ZREVRANGE', rec, 0, 31)) do
  local state = redis.call('HGET', P .. ':g:' .. gid, 'state')
  if not state then
    redis.call('ZREM', rec, gid)
  elseif state ~= 'failed' then
    local h = P .. ':h:' .. gid
    local holders = redis.call('HGETALL', h)
    for i = 1, #holders, 2 do
      local owner, digest = string.match(holders[i + 1], '^(%S+) (%S+)$')
      if digest == td and owner ~= rid then
        if redis.call('EXISTS', P .. ':replica:' .. owner) == 0 then
          redis.call('HDEL', h, holders[i])
          redis.call('HSET', h, hid, rid .. ' ' .. td)
          return {'adopted', gid, state}
        elseif ARGV[12] == '1' then
          suspects[#suspects + 1] = owner
        end
      end
    end
  end
end
if #suspects > 0 then
  return {'suspects', unpack(suspects)}
end
local cur = P .. ':cur:' .. ck
local gid = redis.call('GET', cur)
if gid and redis.call('HGET', P .. ':g:' .. gid, 'state') ~= 'open' then
  gid = false
end
local g
if not gid then
  gid = tostring(redis.call('INCR', P .. ':seq'))
  g = P .. ':g:' .. gid
  redis.call('SET', cur, gid, 'PX', ttl)
  redis.call('HSET', g, 'key', ARGV[7], 'ck', ck, 'state', 'open', 'opened', now, 'count', 0)
  redis.call('ZADD', rec, now, gid)
  redis.call('PEXPIRE', rec, ttl)
  redis.call('ZADD', P .. ':open', now + tonumber(ARGV[9]), gid)
end
g = P .. ':g:' .. gid
local h, t = P .. ':h:' .. gid, P .. ':t:' .. gid
redis.call('HSET', h, hid, rid .. ' ' .. td)
redis.call('HSETNX', t, td, ARGV[6])
for _, k in ipairs({g, h, t}) do redis.call('PEXPIRE', k, ttl) end
local count = redis.call('HINCRBY', g, 'count', 1)
if count >= tonumber(ARGV[8]) then
  redis.call('HSET', g, 'state', 'closing', 'closer', rid, 'lease', now + lease)
  redis.call('DEL', cur)
  redis.call('ZREM', P .. ':open', gid)
  redis.call('ZADD', P .. ':closing', now + lease, gid)
  return {'close', gid, 'closing'}
end
return {'joined', gid, 'open'}
"""
)

# ARGV: prefix, gid, replica, lease ms. Takes an open group past its deadline (1) or a closing
# group whose closer's lease ran out (2); 0: nothing to take.
_TAKE = (
    _NOW
    + """
local P, gid, rid, lease = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local g = P .. ':g:' .. gid
local state = redis.call('HGET', g, 'state')
if state == 'open' then
  local deadline = redis.call('ZSCORE', P .. ':open', gid)
  if deadline and tonumber(deadline) > now then return 0 end
  local cur = P .. ':cur:' .. redis.call('HGET', g, 'ck')
  if redis.call('GET', cur) == gid then redis.call('DEL', cur) end
  redis.call('HSET', g, 'state', 'closing', 'closer', rid, 'lease', now + lease, 'timed_out', 1)
  redis.call('ZREM', P .. ':open', gid)
  redis.call('ZADD', P .. ':closing', now + lease, gid)
  return 1
elseif state == 'closing' then
  if tonumber(redis.call('HGET', g, 'lease')) > now then return 0 end
  redis.call('HSET', g, 'closer', rid, 'lease', now + lease)
  redis.call('HINCRBY', g, 'takeovers', 1)
  redis.call('ZADD', P .. ':closing', now + lease, gid)
  return 2
end
redis.call('ZREM', P .. ':open', gid)
redis.call('ZREM', P .. ':closing', gid)
return 0
"""
)

# ARGV: prefix, gid, replica, lease ms (0: release the group to the others at once).
_RENEW = (
    _NOW
    + """
local P, gid, rid = ARGV[1], ARGV[2], ARGV[3]
local g = P .. ':g:' .. gid
if redis.call('HGET', g, 'closer') ~= rid or redis.call('HGET', g, 'state') ~= 'closing' then
  return 0
end
local until_ms = now + tonumber(ARGV[4])
redis.call('HSET', g, 'lease', until_ms)
redis.call('ZADD', P .. ':closing', until_ms, gid)
return 1
"""
)

# ARGV: prefix, gid, replica, ttl ms, 'done' | 'failed', error, then text digest, result pairs.
_FINISH = """
local P, gid, rid, ttl = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local g = P .. ':g:' .. gid
if redis.call('HGET', g, 'closer') ~= rid or redis.call('HGET', g, 'state') ~= 'closing' then
  return 0
end
local r = P .. ':r:' .. gid
for i = 7, #ARGV, 2 do redis.call('HSET', r, ARGV[i], ARGV[i + 1]) end
redis.call('HSET', g, 'state', ARGV[5], 'error', ARGV[6])
redis.call('ZREM', P .. ':closing', gid)
for _, k in ipairs({g, r, P .. ':h:' .. gid, P .. ':t:' .. gid}) do
  redis.call('PEXPIRE', k, ttl)
end
return 1
"""


class GroupFailed(RuntimeError):
    """The group this call belonged to could not be judged: the closer's error, as its message
    and `kind` (the closer's exception class name), so every replica can answer alike."""

    def __init__(self, message: str, kind: str = "") -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True, slots=True)
class RedisCohortConfig:
    # Separates remote-RM deployments that share one Redis.
    namespace: str = "default"
    # A closer that has not renewed its lease for this long loses the group to another replica.
    lease_s: float = 15.0
    # A replica whose heartbeat is older than this is dead: its callers' retries adopt their places.
    replica_ttl_s: float = 5.0
    # How often a replica looks at the groups its callers wait on (and at timeouts, leases).
    poll_s: float = 0.05
    # How long a finished group's results and members stay (for retries of a dead replica's calls).
    result_ttl_s: float = 600.0

    def __post_init__(self) -> None:
        if min(self.lease_s, self.replica_ttl_s, self.poll_s, self.result_ttl_s) <= 0:
            raise ValueError("lease, replica TTL, poll interval and result TTL must be positive")


@dataclass(frozen=True, slots=True)
class Codec(Generic[K, T]):
    """How keys and results cross Redis (text both ways; never pickle)."""

    encode_key: Callable[[K], str]
    decode_key: Callable[[str], K]
    encode: Callable[[T], str]
    decode: Callable[[str], T]


def connect(url: str, replica_id: str) -> Redis:
    """A client whose connections carry the replica's name, so other replicas can tell at once
    (CLIENT LIST) that a crashed replica is gone, before its heartbeat key expires."""
    from redis.asyncio import Redis as Client

    return Client.from_url(
        url,
        client_name=CLIENT_NAME_PREFIX + replica_id,
        socket_timeout=10.0,  # a stuck read fails the call (OpenRLHF retries) rather than hang
        socket_connect_timeout=2.0,
        health_check_interval=30,
    )


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(eq=False)
class _Waiter(Generic[T]):
    digest: str
    future: asyncio.Future[T]


class RedisCohorts(Generic[K, T]):
    """The `Cohorts` contract over Redis. `start()` on the serving loop before `submit`."""

    def __init__(
        self,
        redis: Redis,
        judge: CohortJudge[K, T],
        codec: Codec[K, T],
        *,
        size: int,
        timeout_s: float,
        replica_id: str,
        config: RedisCohortConfig | None = None,
    ) -> None:
        if size < 1:
            raise ValueError("cohort size must be at least 1")
        self.redis = redis
        self.judge = judge
        self.codec = codec
        self.size = size
        self.timeout_s = timeout_s
        self.replica_id = replica_id
        self.config = config or RedisCohortConfig()
        self.prefix = f"rrm:remote-rm:{self.config.namespace}"
        self._submit = redis.register_script(_SUBMIT)
        self._take = redis.register_script(_TAKE)
        self._renew = redis.register_script(_RENEW)
        self._finish = redis.register_script(_FINISH)
        self._waiting: dict[str, dict[str, _Waiter[T]]] = {}  # gid -> call id -> waiter
        self._closing: dict[str, asyncio.Task[None]] = {}
        self._loop_task: asyncio.Task[None] | None = None
        # redis-py can turn a cancellation mid-command into a ConnectionError, which the loop
        # survives by design: the loop also stops on this flag (seen hanging close() 1 in 5).
        self._stopping = False
        self.judged_cohorts = 0
        self.timed_out_cohorts = 0
        self.taken_over_cohorts = 0
        self.adopted_calls = 0

    @property
    def _ms(self) -> tuple[int, int, int]:
        c = self.config
        ttl = self.timeout_s + c.lease_s + c.result_ttl_s
        return int(self.timeout_s * 1000), int(ttl * 1000), int(c.lease_s * 1000)

    async def start(self) -> None:
        await self._heartbeat()
        self._loop_task = asyncio.get_running_loop().create_task(self._run())

    async def submit(self, key: K, text: str) -> T:
        if self._loop_task is None:
            raise RuntimeError("RedisCohorts.start() was not called")
        encoded = self.codec.encode_key(key)
        call_id, digest = uuid.uuid4().hex, _digest(text)
        timeout_ms, ttl_ms, lease_ms = self._ms
        check = "1"
        while True:
            args: list[str | int] = [
                self.prefix, _digest(encoded), call_id, self.replica_id, digest, text, encoded,
                self.size, timeout_ms, ttl_ms, lease_ms, check,
            ]  # fmt: skip
            reply = [_text(x) for x in await self._submit(args=args)]
            if reply[0] != "suspects":
                break
            await self._forget_crashed(set(reply[1:]))
            check = "0"
        outcome, gid = reply[0], reply[1]
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(gid, {})[call_id] = _Waiter(digest, future)
        if outcome == "adopted":
            self.adopted_calls += 1
            log.info("group %s: a retry took the place of a call its dead replica held", gid)
        elif outcome == "close":
            self._start_closing(gid)
        return await asyncio.shield(future)

    async def _forget_crashed(self, replicas: set[str]) -> None:
        """Replicas whose heartbeat is fresh but whose Redis connections are all gone crashed:
        drop their heartbeat so their callers' retries can take their places now."""
        from redis.exceptions import ResponseError

        try:
            clients = await self.redis.client_list(_type="normal")
        except ResponseError as exc:  # CLIENT refused (ACL): the heartbeat alone decides
            log.warning("CLIENT LIST refused (%s): only heartbeats tell dead replicas", exc)
            return
        connected = {str(c.get("name", "")).removeprefix(CLIENT_NAME_PREFIX) for c in clients}
        for replica in replicas - connected:
            log.warning("replica %s has no Redis connection left: treating it as dead", replica)
            await self.redis.delete(f"{self.prefix}:replica:{replica}")

    def _start_closing(self, gid: str) -> None:
        if gid not in self._closing:
            task = asyncio.get_running_loop().create_task(self._close_group(gid))
            self._closing[gid] = task
            task.add_done_callback(lambda _: self._closing.pop(gid, None))

    async def _close_group(self, gid: str) -> None:
        g = f"{self.prefix}:g:{gid}"
        meta = {_text(k): _text(v) for k, v in (await self.redis.hgetall(g)).items()}
        stored = await self.redis.hgetall(f"{self.prefix}:t:{gid}")
        texts = {_text(k): _text(v) for k, v in stored.items()}
        key = self.codec.decode_key(meta["key"])
        members = int(meta.get("count", "0"))
        if meta.get("timed_out") == "1":
            log.warning(
                "group %s (%r): %d of %d samples after %.0f s; judging what arrived",
                gid, key, members, self.size, self.timeout_s,
            )  # fmt: skip
        digests = list(texts)
        _, ttl_ms, _ = self._ms
        try:
            results = await self.judge(key, [texts[d] for d in digests], members)
            if len(results) != len(digests):
                raise RuntimeError(f"judge returned {len(results)} results for {len(digests)}")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error("group %s (%r) failed: %s", gid, key, exc)
            failed: list[str | int] = [self.prefix, gid, self.replica_id, ttl_ms, "failed"]
            await self._finish(args=[*failed, f"{type(exc).__name__}\t{exc or repr(exc)}"])
            return
        pairs: list[str] = []
        for digest, result in zip(digests, results, strict=True):
            pairs += [digest, self.codec.encode(result)]
        done: list[str | int] = [self.prefix, gid, self.replica_id, ttl_ms, "done", "", *pairs]
        if await self._finish(args=done):
            self.judged_cohorts += 1

    async def _heartbeat(self) -> None:
        await self.redis.set(
            f"{self.prefix}:replica:{self.replica_id}",
            "1",
            px=int(self.config.replica_ttl_s * 1000),
        )

    async def _run(self) -> None:
        c = self.config
        last_beat = time.monotonic()
        last_renew = last_beat
        while not self._stopping:
            try:
                now = time.monotonic()
                if now - last_beat >= c.replica_ttl_s / 4:
                    await self._heartbeat()
                    last_beat = now
                if now - last_renew >= c.lease_s / 4:
                    for gid in list(self._closing):
                        await self._renew(args=[self.prefix, gid, self.replica_id, self._ms[2]])
                    last_renew = now
                await self._take_due()
                await self._answer_waiting()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis down: callers wait, OpenRLHF's timeout bounds it
                log.error("shared cohorts: %s", exc)
                await asyncio.sleep(min(1.0, 10 * c.poll_s))
            await asyncio.sleep(c.poll_s)

    async def _take_due(self) -> None:
        now_ms = time.time() * 1000
        for zset in ("open", "closing"):
            due = await self.redis.zrangebyscore(f"{self.prefix}:{zset}", 0, now_ms, 0, 16)
            for gid in map(_text, due):
                if gid in self._closing:
                    continue
                taken = await self._take(args=[self.prefix, gid, self.replica_id, self._ms[2]])
                if taken == 1:
                    self.timed_out_cohorts += 1
                elif taken == 2:
                    self.taken_over_cohorts += 1
                    log.warning("group %s: its closer stopped renewing; judging it here", gid)
                if taken:
                    self._start_closing(gid)

    async def _answer_waiting(self) -> None:
        gids = list(self._waiting)
        if not gids:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for gid in gids:
                pipe.hmget(f"{self.prefix}:g:{gid}", "state", "error")
            states = await pipe.execute()
        for gid, (state, error) in zip(gids, states, strict=True):
            state = _text(state) if state is not None else None
            if state in ("open", "closing"):
                continue
            waiters = self._waiting.pop(gid, {})
            if state == "done":
                results = {
                    _text(k): _text(v)
                    for k, v in (await self.redis.hgetall(f"{self.prefix}:r:{gid}")).items()
                }
                for waiter in waiters.values():
                    if waiter.future.done():
                        continue
                    if waiter.digest in results:
                        waiter.future.set_result(self.codec.decode(results[waiter.digest]))
                    else:
                        waiter.future.set_exception(GroupFailed(f"group {gid} has no result"))
                if waiters:  # answered: these calls can no longer be retried into this group
                    await self.redis.hdel(f"{self.prefix}:h:{gid}", *waiters)
            else:
                kind, _, reason = _text(error).partition("\t") if error else ("", "", "")
                reason = reason or f"group {gid} expired before it was judged"
                for waiter in waiters.values():
                    if not waiter.future.done():
                        waiter.future.set_exception(GroupFailed(reason, kind))
                        waiter.future.exception()

    async def close(self) -> None:
        """Stop; groups this replica was judging are released to the others at once."""
        self._stopping = True
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.wait([self._loop_task], timeout=5.0)
        for gid, task in list(self._closing.items()):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            with contextlib.suppress(Exception):
                release = self._renew(args=[self.prefix, gid, self.replica_id, 0])
                await asyncio.wait_for(release, 5.0)
        for waiters in self._waiting.values():
            for waiter in waiters.values():
                if not waiter.future.done():
                    waiter.future.set_exception(GroupFailed("the remote RM is shutting down"))
                    waiter.future.exception()
        self._waiting.clear()
        with contextlib.suppress(Exception):  # a Redis that does not answer must not hang exit
            heartbeat = f"{self.prefix}:replica:{self.replica_id}"
            await asyncio.wait_for(self.redis.delete(heartbeat), 5.0)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)

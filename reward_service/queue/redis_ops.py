"""The queue's message-level Redis operations, each queued on a pipeline so that many of them
cost one round trip; the two that must read before they write (queue unless answered, store
unless stored) are Lua scripts, so there is no window between the read and the write.

Every path that takes a job off the stream (answer, skip, give up, hand back) acknowledges and
deletes the entry after its effect, in the same pipeline: the stream only ever holds jobs that
are queued or in flight. Pipelines keep order but are not atomic; each operation is written so
that a partial run followed by a retry is harmless (the ack comes last, so at worst the job is
redelivered or a reply or dead letter is written twice).

Redis full (maxmemory with `noeviction`): only new work is refused. SUBMIT is a flagged script
without `allow-oom`, so Redis refuses it whole (OOM) before it runs; the scripts that drain the
queue (admit, complete, hand back, heartbeat) carry `allow-oom`: a worker can always finish
what was admitted, and finishing frees the job's entry. Flags need Redis 7.0, which the broker
checks at start-up.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio.client import Pipeline

from reward_service.queue import names as n
from reward_service.queue.names import QueueNames

# KEYS: jobs stream, result key, reply stream, lease key, parked key.
# ARGV: group, entry id, job id, result, result ttl, route (0|1), reply ttl, reply maxlen,
#       reply id field, reply result field, store (0|1), reply stream prefix, reply route.
# The first result stored for a job wins (SET NX GET): a duplicate run (a redelivery racing the
# original, or the same job queued by two gateways) answers every caller with the same verdict.
# A failure is routed but not stored (a retry must get a fresh try), unless a verdict is.
# Copies parked on this run (other gateways' callers) get the same answer.
COMPLETE_LUA = """#!lua flags=allow-oom
local value = ARGV[4]
local stored
if ARGV[11] == '1' then
  stored = redis.call('SET', KEYS[2], value, 'NX', 'GET', 'EX', ARGV[5])
else
  stored = redis.call('GET', KEYS[2])
end
if stored then value = stored end
local function send(stream)
  redis.call('XADD', stream, 'MAXLEN', '~', ARGV[8], '*', ARGV[9], ARGV[3], ARGV[10], value)
  redis.call('EXPIRE', stream, ARGV[7])
end
if ARGV[6] == '1' then send(KEYS[3]) end
for _, gateway in ipairs(redis.call('HKEYS', KEYS[5])) do
  if gateway ~= ARGV[13] then send(ARGV[12] .. gateway) end
end
redis.call('DEL', KEYS[5])
if redis.call('GET', KEYS[4]) == ARGV[2] then redis.call('DEL', KEYS[4]) end
redis.pcall('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.pcall('XDEL', KEYS[1], ARGV[2])
return value
"""

# KEYS: jobs stream, lease key, parked key.  ARGV: group, entry id, job field, copy (or '').
# Takes an entry off the stream without answering (skipped, discarded, or handed back as
# `copy`): the lease goes with it, and parked copies are queued again: they still want a run.
UNQUEUE_LUA = """#!lua flags=allow-oom
if ARGV[4] ~= '' then redis.call('XADD', KEYS[1], '*', ARGV[3], ARGV[4]) end
redis.pcall('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.pcall('XDEL', KEYS[1], ARGV[2])
if redis.call('GET', KEYS[2]) == ARGV[2] then redis.call('DEL', KEYS[2]) end
local parked = {}
if ARGV[4] == '' then parked = redis.call('HVALS', KEYS[3]) end
for _, env in ipairs(parked) do redis.call('XADD', KEYS[1], '*', ARGV[3], env) end
if #parked > 0 then redis.call('DEL', KEYS[3]) end
return #parked
"""

# KEYS: jobs stream, then per entry: result, cancel, lease, parked key.
# ARGV: group, lease ms, parked ttl, then per entry: entry id, reply route, envelope.
# Per entry: the stored result (a string: answer from it), or 1 = run it (this entry now holds
# the job's lease), 2 = parked (another entry of the same job is running: this copy is
# acknowledged and waits in the parked hash for that run's answer), 3 = its caller cancelled.
# A lease whose entry is no longer pending is stale (its worker's ack was lost with Redis' last
# second of writes, say) and is taken over.
ADMIT_LUA = """#!lua flags=allow-oom
local out = {}
for i = 1, (#ARGV - 3) / 3 do
  local k, a = 1 + (i - 1) * 4, 3 + (i - 1) * 3
  local eid, route, env = ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  local stored = redis.call('GET', KEYS[k + 1])
  if stored then
    out[i] = stored
  else
    local lease = redis.call('GET', KEYS[k + 3])
    local running = lease and lease ~= eid and route ~= '' and
      #redis.call('XPENDING', KEYS[1], ARGV[1], lease, lease, 1) > 0
    if running then
      redis.call('HSET', KEYS[k + 4], route, env)
      redis.call('EXPIRE', KEYS[k + 4], ARGV[3])
      redis.pcall('XACK', KEYS[1], ARGV[1], eid)
      redis.pcall('XDEL', KEYS[1], eid)
      out[i] = 2
    elseif redis.call('GET', KEYS[k + 2]) == route then
      out[i] = 3
    else
      redis.call('SET', KEYS[k + 3], eid, 'PX', ARGV[2])
      out[i] = 1
    end
  end
end
return out
"""

# KEYS: jobs stream, then per job: result key, cancel key.  ARGV: job field, then the envelopes.
# Per job: the stored result (bulk string) or, once queued, {entry id} (an array). One round
# trip, and no window between finding no result and queueing.
SUBMIT_LUA = """#!lua
local out = {}
for i = 2, #ARGV do
  local stored = redis.call('GET', KEYS[2 * i - 2])
  if stored then
    out[i - 1] = stored
  else
    redis.call('DEL', KEYS[2 * i - 1])
    out[i - 1] = {redis.call('XADD', KEYS[1], '*', ARGV[1], ARGV[i])}
  end
end
return out
"""


# KEYS: jobs stream, then the lease key of each entry.  ARGV: group, consumer, lease ms, then
# entry ids.  Restarts the idle time of each entry still pending under this consumer (XCLAIM
# JUSTID keeps the delivery count) and renews its job's lease; returns the ids it no longer
# holds. Checking the owner first matters: a plain XCLAIM would take back an entry another
# worker reclaimed and is running.
EXTEND_LUA = """#!lua flags=allow-oom
local lost = {}
for i = 4, #ARGV do
  local mine = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1, ARGV[2])
  if #mine > 0 then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
    redis.call('SET', KEYS[i - 2], ARGV[i], 'PX', ARGV[3])
  else
    lost[#lost + 1] = ARGV[i]
  end
end
return lost
"""


def extend(
    pipe: Pipeline, names: QueueNames, consumer: str, held: list[tuple[str, str]], lease_ms: int
) -> None:
    """Heartbeat for (entry id, job id) pairs: keep them from being reclaimed (EXTEND_LUA)."""
    keys = [names.jobs_stream, *(names.lease_key(job_id) for _, job_id in held)]
    args: list[Any] = [names.workers_group, consumer, lease_ms, *(eid for eid, _ in held)]
    pipe.eval(EXTEND_LUA, len(keys), *keys, *args)


def admit(
    pipe: Pipeline,
    names: QueueNames,
    entries: list[tuple[str, str, str, bytes]],
    lease_ms: int,
    parked_ttl_s: int,
) -> None:
    """Decide for each (entry id, job id, reply route, envelope) fresh off the stream: answer it
    from the store, run it, park it on a run of the same job, or skip it (ADMIT_LUA)."""
    keys = [names.jobs_stream]
    args: list[Any] = [names.workers_group, lease_ms, parked_ttl_s]
    for eid, job_id, route, env in entries:
        keys += [
            names.result_key(job_id),
            names.cancel_key(job_id),
            names.lease_key(job_id),
            names.parked_key(job_id),
        ]
        args += [eid, route, env]
    pipe.eval(ADMIT_LUA, len(keys), *keys, *args)


def unqueue(
    pipe: Pipeline, names: QueueNames, entry_id: str, job_id: str, copy: bytes | None = None
) -> None:
    """Take an entry off the stream without an answer, optionally queueing `copy` instead
    (UNQUEUE_LUA)."""
    keys = [names.jobs_stream, names.lease_key(job_id), names.parked_key(job_id)]
    args: list[Any] = [names.workers_group, entry_id, n.JOB_FIELD, copy or b""]
    pipe.eval(UNQUEUE_LUA, len(keys), *keys, *args)


def submit(pipe: Pipeline, names: QueueNames, jobs: list[tuple[str, bytes]]) -> None:
    """Queue each (job id, envelope) unless its result is stored; a stale cancel mark left by an
    earlier caller is cleared so workers do not skip the new one."""
    keys = [names.jobs_stream]
    for job_id, _ in jobs:
        keys += [names.result_key(job_id), names.cancel_key(job_id)]
    pipe.eval(SUBMIT_LUA, len(keys), *keys, n.JOB_FIELD, *(env for _, env in jobs))


Entry = tuple[str, dict[bytes, bytes]]


def entries_of(reply: Any) -> list[Entry]:
    """The (entry id, fields) of an XREAD/XREADGROUP reply, skipping entries deleted meanwhile."""
    out: list[Entry] = []
    for _stream, items in reply or ():
        for entry_id, fields in items:
            if fields:
                out.append((entry_id.decode() if isinstance(entry_id, bytes) else entry_id, fields))
    return out


def complete(
    pipe: Pipeline,
    names: QueueNames,
    *,
    entry_id: str,
    job_id: str,
    reply_to: str,
    result: bytes,
    store: bool,
    result_ttl_s: int,
    reply_ttl_s: int,
) -> None:
    """Store the result unless one is stored already (or it is a failure), route the stored
    one, then ack.

    EVAL rather than EVALSHA: Redis caches the script by its hash either way, and a restarted
    Redis (empty script cache) can never answer NOSCRIPT."""
    keys = [
        names.jobs_stream,
        names.result_key(job_id),
        names.reply_stream(reply_to),
        names.lease_key(job_id),
        names.parked_key(job_id),
    ]
    args: list[Any] = [
        names.workers_group,
        entry_id,
        job_id,
        result,
        result_ttl_s,
        1 if reply_to else 0,
        reply_ttl_s,
        n.REPLY_MAXLEN,
        n.REPLY_ID_FIELD,
        n.REPLY_RESULT_FIELD,
        1 if store else 0,
        names.reply_prefix,
        reply_to,
    ]
    pipe.eval(COMPLETE_LUA, len(keys), *keys, *args)


def ack(pipe: Pipeline, names: QueueNames, entry_id: str) -> None:
    pipe.xack(names.jobs_stream, names.workers_group, entry_id)
    pipe.xdel(names.jobs_stream, entry_id)


def dead_letter(
    pipe: Pipeline, names: QueueNames, *, entry_id: str, raw: bytes, reason: str, job_id: str
) -> None:
    pipe.xadd(
        names.dead_letter_stream,
        {
            n.JOB_FIELD: raw,
            n.DEAD_REASON_FIELD: reason,
            n.DEAD_JOB_ID_FIELD: job_id,
            n.DEAD_ENTRY_FIELD: entry_id,
        },
        maxlen=n.DEAD_LETTER_MAXLEN,
        approximate=True,
    )

"""The queue's message-level Redis operations, each queued on a pipeline so that many of them
cost one round trip; the two that must read before they write (queue unless answered, store
unless stored) are Lua scripts, so there is no window between the read and the write.

Every path that takes a job off the stream (answer, skip, give up, hand back) acknowledges and
deletes the entry after its effect, in the same pipeline: the stream only ever holds jobs that
are queued or in flight. Pipelines keep order but are not atomic; each operation is written so
that a partial run followed by a retry is harmless (the ack comes last, so at worst the job is
redelivered or a reply or dead letter is written twice).
"""

from __future__ import annotations

from typing import Any

from redis.asyncio.client import Pipeline

from reward_service.queue import names as n
from reward_service.queue.names import QueueNames

# KEYS: jobs stream, result key, reply stream.
# ARGV: group, entry id, job id, result, result ttl, route (0|1), reply ttl, reply maxlen,
#       reply id field, reply result field, store (0|1).
# The first result stored for a job wins (SET NX GET): a duplicate run (a redelivery racing the
# original, or the same job queued by two gateways) answers every caller with the same verdict.
# A failure is routed but not stored (a retry must get a fresh try), unless a verdict is.
COMPLETE_LUA = """
local value = ARGV[4]
local stored
if ARGV[11] == '1' then
  stored = redis.call('SET', KEYS[2], value, 'NX', 'GET', 'EX', ARGV[5])
else
  stored = redis.call('GET', KEYS[2])
end
if stored then value = stored end
if ARGV[6] == '1' then
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[8], '*', ARGV[9], ARGV[3], ARGV[10], value)
  redis.call('EXPIRE', KEYS[3], ARGV[7])
end
redis.pcall('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.pcall('XDEL', KEYS[1], ARGV[2])
return value
"""

# KEYS: jobs stream, then per job: result key, cancel key.  ARGV: job field, then the envelopes.
# Per job: the stored result (bulk string) or, once queued, {entry id} (an array). One round
# trip, and no window between finding no result and queueing.
SUBMIT_LUA = """
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


# KEYS: jobs stream.  ARGV: group, consumer, then entry ids.  Restarts the idle time of each
# entry still pending under this consumer (XCLAIM JUSTID keeps the delivery count); returns the
# ids it no longer holds. Checking the owner first matters: a plain XCLAIM would take back an
# entry another worker reclaimed and is running.
EXTEND_LUA = """
local lost = {}
for i = 3, #ARGV do
  local mine = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1, ARGV[2])
  if #mine > 0 then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
  else
    lost[#lost + 1] = ARGV[i]
  end
end
return lost
"""


def extend(pipe: Pipeline, names: QueueNames, consumer: str, entry_ids: list[str]) -> None:
    """Heartbeat: keep this consumer's entries from being reclaimed (see EXTEND_LUA)."""
    keys = [names.jobs_stream]
    pipe.eval(EXTEND_LUA, len(keys), *keys, names.workers_group, consumer, *entry_ids)


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
    keys = [names.jobs_stream, names.result_key(job_id), names.reply_stream(reply_to)]
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
    ]
    pipe.eval(COMPLETE_LUA, len(keys), *keys, *args)


def requeue(pipe: Pipeline, names: QueueNames, envelope: bytes) -> None:
    """Queue a job handed back (it keeps any cancel mark: its caller may have given up)."""
    pipe.xadd(names.jobs_stream, {n.JOB_FIELD: envelope})


def route(
    pipe: Pipeline, names: QueueNames, reply_to: str, job_id: str, result: bytes, ttl_s: int
) -> None:
    """Send a result to the gateway that waits for it (refreshing its reply stream's expiry)."""
    if not reply_to:
        return
    stream = names.reply_stream(reply_to)
    pipe.xadd(
        stream,
        {n.REPLY_ID_FIELD: job_id, n.REPLY_RESULT_FIELD: result},
        maxlen=n.REPLY_MAXLEN,
        approximate=True,
    )
    pipe.expire(stream, ttl_s)


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

"""Every Redis key, stream and group name, and the queue's timing defaults, in one place.

The Helm chart's KEDA ScaledObject must watch the same stream and consumer group the workers
read; `tests/helm` checks the chart against `as_dict()` so the two cannot drift apart.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

DEFAULT_PREFIX = "rrm"


@dataclass(frozen=True, slots=True)
class QueueNames:
    prefix: str = DEFAULT_PREFIX

    @property
    def jobs_stream(self) -> str:
        """Jobs for the workers (XADD by gateways, XREADGROUP by workers)."""
        return f"{self.prefix}:jobs"

    @property
    def workers_group(self) -> str:
        """The consumer group all workers share; KEDA scales on its lag."""
        return f"{self.prefix}:workers"

    @property
    def dead_letter_stream(self) -> str:
        """Jobs given up on (retries exhausted, undecodable), with the reason, for inspection."""
        return f"{self.prefix}:dead"

    def reply_stream(self, gateway_id: str) -> str:
        """Results routed back to one gateway; expires `REPLY_TTL_S` after its last reply."""
        return f"{self.prefix}:replies:{gateway_id}"

    def result_key(self, job_id: str) -> str:
        """A finished job's result (exactly-once answers on top of at-least-once delivery)."""
        return f"{self.prefix}:result:{job_id}"

    def cancel_key(self, job_id: str) -> str:
        """Set when nobody waits for a job any more: workers skip or abort it."""
        return f"{self.prefix}:cancel:{job_id}"

    def lease_key(self, job_id: str) -> str:
        """The stream entry of a job that a worker is running now (expires with the visibility
        timeout unless heartbeats renew it): another copy of the job waits for that run."""
        return f"{self.prefix}:lease:{job_id}"

    def parked_key(self, job_id: str) -> str:
        """Copies of a running job queued by other gateways (a client retrying elsewhere), as
        {gateway id: envelope}: answered by the run they wait for, or queued again if it ends
        without an answer."""
        return f"{self.prefix}:parked:{job_id}"

    @property
    def worker_status(self) -> str:
        """{worker name: engine state} reported by the workers (see `fleet.py`)."""
        return f"{self.prefix}:worker-status"

    @property
    def reply_prefix(self) -> str:
        return self.reply_stream("")

    def cache_key(self, fingerprint: str) -> str:
        """Verdict cache entry, keyed by `queue.jobs.task_fingerprint`."""
        return f"{self.prefix}:verdict:{fingerprint}"

    def as_dict(self) -> dict[str, str]:
        return {
            **asdict(self),
            "jobs_stream": self.jobs_stream,
            "workers_group": self.workers_group,
            "dead_letter_stream": self.dead_letter_stream,
        }


DEFAULT_NAMES = QueueNames()

# Fields of stream entries: the jobs stream and the dead-letter stream carry the encoded
# envelope under JOB_FIELD; reply streams carry (REPLY_ID_FIELD, REPLY_RESULT_FIELD).
JOB_FIELD = "job"
REPLY_ID_FIELD = "id"
REPLY_RESULT_FIELD = "result"
DEAD_REASON_FIELD = "reason"
DEAD_JOB_ID_FIELD = "job_id"
DEAD_ENTRY_FIELD = "entry_id"  # the jobs-stream entry it came from

# Timing defaults shared by the broker and the chart (seconds).
VISIBILITY_TIMEOUT_S = 120.0
MAX_TRIES = 3
RESULT_TTL_S = 3600
CANCEL_TTL_S = 3600
VERDICT_CACHE_TTL_S = 7 * 24 * 3600
# A dead gateway's reply stream disappears this long after the last reply routed to it.
REPLY_TTL_S = 600
# Approximate caps (XADD MAXLEN ~): a live gateway trims its reply stream as it reads.
REPLY_MAXLEN = 100_000
DEAD_LETTER_MAXLEN = 100_000
# How long a gateway trusts its last queue-depth reading for backpressure.
DEPTH_CACHE_S = 0.1

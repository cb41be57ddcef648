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
        return f"{self.prefix}:dead"

    def reply_stream(self, gateway_id: str) -> str:
        """Results routed back to one gateway."""
        return f"{self.prefix}:replies:{gateway_id}"

    def result_key(self, job_id: str) -> str:
        """A finished job's result (exactly-once answers on top of at-least-once delivery)."""
        return f"{self.prefix}:result:{job_id}"

    def cancel_key(self, job_id: str) -> str:
        return f"{self.prefix}:cancel:{job_id}"

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


# Timing defaults shared by the broker and the chart (seconds).
VISIBILITY_TIMEOUT_S = 120.0
MAX_TRIES = 3
RESULT_TTL_S = 3600
CANCEL_TTL_S = 3600
VERDICT_CACHE_TTL_S = 7 * 24 * 3600

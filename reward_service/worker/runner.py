"""The contract between the worker loop and what judges one job.

The `VoteRunner` contract keeps the worker loop ignorant of judges and engines, so the same loop
drives vLLM in process, a remote OpenAI-compatible server, or a scripted test double.
"""

from __future__ import annotations

from typing import Protocol

from reward_service.domain import VoteResult, VoteTask


class VoteRunner(Protocol):
    async def run(
        self, task: VoteTask, request_id: str, verdict_by: float | None = None
    ) -> VoteResult:
        """Judge one vote. `verdict_by` (wall clock): end the reasoning by then and force the
        verdict (DEADLINE_FORCED) when the task allows it; None: no limit."""
        ...

    async def check(self) -> None:
        """Return if the engine answers now; raise (e.g. `Unavailable`) during an outage."""
        ...

    async def recover(self) -> None:
        """After an outage: bring the engine back, or raise (the worker retries with backoff)."""
        ...

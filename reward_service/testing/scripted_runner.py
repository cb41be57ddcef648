"""`ScriptedRunner`: a TEST DOUBLE for the worker's `VoteRunner` (no judge, no engine).

It answers each vote from a function of the shown pair after a configurable latency, so queue,
worker and gateway behaviour (waves, cancellation, redelivery, load) can be tested and benchmarked
fast. The real path (judge + vLLM) is tested separately with a real engine.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from reward_service.domain import ParseStatus, Verdict, VoteResult, VoteTask


def prefer_longer(task: VoteTask) -> VoteResult:
    """A deterministic judge: the longer response wins, p = 0.9."""
    first_wins = len(task.pair.first) >= len(task.pair.second)
    return VoteResult(
        verdict=Verdict.FIRST if first_wins else Verdict.SECOND,
        p_first=0.9 if first_wins else 0.1,
        status=ParseStatus.OK,
        reasoning_tokens=1,
        prompt_tokens=len(task.pair.first) + len(task.pair.second),
        completion_tokens=1,
    )


class ScriptedRunner:
    def __init__(
        self,
        script: Callable[[VoteTask], VoteResult] = prefer_longer,
        *,
        latency_s: float | Callable[[VoteTask], float] = 0.0,
    ) -> None:
        self.script = script
        self.latency_s = latency_s
        self.calls: list[str] = []  # request ids, in call order
        self.cancelled: list[str] = []
        self.recoveries = 0
        # While set, run, check and recover raise it: an engine outage.
        self.outage: BaseException | None = None

    async def run(
        self, task: VoteTask, request_id: str, verdict_by: float | None = None
    ) -> VoteResult:
        """`verdict_by` is not honoured: deadline forcing is the engine runner's (tested there)."""
        if self.outage is not None:
            raise self.outage
        self.calls.append(request_id)
        try:
            latency = self.latency_s(task) if callable(self.latency_s) else self.latency_s
            if latency:
                await asyncio.sleep(latency)
        except asyncio.CancelledError:
            self.cancelled.append(request_id)
            raise
        if self.outage is not None:  # the engine went down while this request ran
            raise self.outage
        return self.script(task)

    async def check(self) -> None:
        if self.outage is not None:
            raise self.outage

    async def recover(self) -> None:
        self.recoveries += 1
        await self.check()

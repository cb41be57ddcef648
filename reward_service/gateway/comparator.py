"""Runs comparisons through the broker: submit votes in waves, wait, cancel what nobody needs.

This is the only gateway code that talks to the queue; Compare, CompareBatch, Rank and Score
all go through `Comparator.compare`, so deadlines and cancellation behave the same everywhere.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from reward_service.domain import VoteResult
from reward_service.errors import DeadlineExceeded, JudgmentFailed
from reward_service.gateway.planner import (
    Comparison,
    ComparisonOutcome,
    MappedVote,
    OrderMode,
    aggregate,
    map_vote,
    next_wave_size,
    plan_votes,
)
from reward_service.gateway.prompt_guard import PromptGuard
from reward_service.queue.base import Broker, JobEnvelope
from reward_service.queue.fleet import Fleet, describe_outage
from reward_service.queue.jobs import job_id


@dataclass(frozen=True, slots=True)
class JudgeInfo:
    """What the deployment judges with; reported by GetInfo and in every answer."""

    model: str
    profile: str
    template_version: str


class Comparator:
    def __init__(
        self,
        broker: Broker,
        *,
        reply_to: str = "",
        guard: PromptGuard | None = None,
        fleet: Fleet | None = None,
    ) -> None:
        self.broker = broker
        self.reply_to = reply_to
        self.guard = guard
        # What the workers report of their engines: names an outage in a deadline error.
        self.fleet = fleet

    async def compare(self, c: Comparison, request_id: str, deadline: float) -> ComparisonOutcome:
        """Judge one comparison. Raises JudgmentFailed when every vote failed."""
        if self.guard is not None:
            # Rendering and tokenising the prompt takes milliseconds: in a worker thread, so a
            # large batch does not stall the event loop (and with it every other call).
            await asyncio.to_thread(self.guard.check, c)
        planned = plan_votes(c)
        unit = 2 if c.order is OrderMode.BOTH else 1
        votes: list[MappedVote] = []
        issued: list[str] = []
        try:
            while (size := next_wave_size(votes, len(planned), unit)) > 0:
                wave = planned[len(votes) : len(votes) + size]
                envelopes = [
                    JobEnvelope(
                        job_id=job_id(request_id, p.task),
                        task=p.task,
                        deadline=deadline,
                        reply_to=self.reply_to,
                        use_cache=c.use_cache,
                    )
                    for p in wave
                ]
                futures = await self.broker.submit(envelopes)
                issued.extend(e.job_id for e in envelopes)
                if deadline <= time.time():
                    raise DeadlineExceeded("deadline passed before the judgments were made")
                results = await self._wait(futures, deadline)
                votes.extend(map_vote(p, r) for p, r in zip(wave, results, strict=True))
                issued.clear()
        finally:
            if issued:  # cancelled or timed out mid-wave: nobody needs these any more
                await asyncio.shield(self.broker.cancel(issued))
        outcome = aggregate(votes, c.order)
        if outcome.failed == len(votes):
            reasons = sorted({v.result.error or "unknown" for v in votes})
            raise JudgmentFailed("; ".join(reasons))
        return outcome

    async def _wait(
        self, futures: list[asyncio.Future[VoteResult]], deadline: float
    ) -> list[VoteResult]:
        """Every result, or DeadlineExceeded at `deadline` (wall clock). Unfinished futures are
        cancelled (at the deadline, or when gRPC cancels the call) and nothing is left to report
        an unretrieved exception: `wait_for(gather(...))` left one such gather per late call."""
        try:
            done, pending = await asyncio.wait(
                futures, timeout=deadline - time.time(), return_when=asyncio.FIRST_EXCEPTION
            )
        except asyncio.CancelledError:
            for f in futures:
                f.cancel()
            raise
        for f in pending:
            f.cancel()
        for f in done:
            if not f.cancelled() and (error := f.exception()) is not None:
                raise error
        if pending:
            raise DeadlineExceeded(
                await self._why_late(
                    f"deadline passed with {len(pending)} of {len(futures)} judgments unfinished"
                )
            )
        return [f.result() for f in futures]

    async def _why_late(self, message: str) -> str:
        if self.fleet is None:
            return message
        outage = describe_outage(await self.fleet.statuses())
        return f"{message}: {outage}" if outage else message

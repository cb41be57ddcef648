"""Runs comparisons through the broker: submit votes in waves, wait, cancel what nobody needs.

This is the only gateway code that talks to the queue; Compare, CompareBatch, Rank and Score
all go through `Comparator.compare`, so deadlines and cancellation behave the same everywhere.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace

from reward_service import metrics
from reward_service.domain import VoteResult
from reward_service.errors import DeadlineExceeded, JudgmentFailed
from reward_service.gateway.planner import (
    Comparison,
    ComparisonOutcome,
    MappedVote,
    OrderMode,
    Stage,
    aggregate,
    escalation,
    full_stage,
    map_vote,
    next_wave_size,
    plan_votes,
    short_stage,
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
        """Judge one comparison. Raises JudgmentFailed when every vote (of the deciding stage,
        with a cascade) failed."""
        if self.guard is not None:
            # Rendering and tokenising the prompt takes milliseconds: in a worker thread, so a
            # large batch does not stall the event loop (and with it every other call).
            await asyncio.to_thread(self.guard.check, c)
        if c.cascade is not None:
            outcome = await self._cascade(c, c.cascade.threshold, request_id, deadline)
        else:
            outcome = aggregate(await self._votes(c, request_id, deadline), c.order)
        deciding = [v for v in outcome.votes if v.stage is outcome.decided_by]
        if outcome.failed == len(deciding):
            raise JudgmentFailed("; ".join(sorted({v.result.error or "unknown" for v in deciding})))
        return outcome

    async def _cascade(
        self, c: Comparison, threshold: float, request_id: str, deadline: float
    ) -> ComparisonOutcome:
        """The budget cascade, planned here in the gateway as two stages of ordinary jobs.

        Not a loop in the worker: a worker-level loop would hold an engine slot (and the job's
        lease) across both stages and need a new job kind, while two stages of plain jobs reuse
        everything the queue already guarantees: content-derived job ids (each stage's tasks
        differ by their budget, so the stages never share an id and a retried request maps to
        the same jobs), redelivery, the verdict cache (the full stage's jobs are the very jobs
        a plain request at the full budget makes, so either answers the other from cache),
        cancellation, and the call's deadline, which bounds both stages (the worker's deadline
        forcing applies to each). Escalation happens here: see `planner.escalation`.
        """
        first = short_stage(c)
        short_votes = await self._votes(first, request_id, deadline, Stage.SHORT)
        short = aggregate(short_votes, first.order)
        reason = escalation(short, threshold)
        if reason is None:
            metrics.CASCADE_COMPARISONS.labels("short").inc()
            return replace(short, decided_by=Stage.SHORT)
        metrics.CASCADE_ESCALATIONS.labels(reason).inc()
        metrics.CASCADE_COMPARISONS.labels("full").inc()
        second = full_stage(c)
        full_votes = await self._votes(second, request_id, deadline, Stage.FULL)
        full = aggregate(full_votes, second.order)
        return replace(full, votes=(*short.votes, *full.votes), decided_by=Stage.FULL)

    async def _votes(
        self, c: Comparison, request_id: str, deadline: float, stage: Stage = Stage.NONE
    ) -> list[MappedVote]:
        """Submit the comparison's votes in waves (early stop on a settled majority), mapped
        back to A/B and tagged with `stage`."""
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
                votes.extend(map_vote(p, r, stage) for p, r in zip(wave, results, strict=True))
                issued.clear()
        finally:
            if issued:  # cancelled or timed out mid-wave: nobody needs these any more
                await asyncio.shield(self.broker.cancel(issued))
        return votes

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

"""The `rrm.v1.RewardService` servicer: validate, plan, run through the comparator, convert."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import grpc
from rrm.v1 import reward_pb2 as pb
from rrm.v1 import reward_pb2_grpc as pb_grpc

from reward_service import __version__
from reward_service.domain import Limits
from reward_service.errors import InvalidInput, RRMError
from reward_service.gateway import budget, convert, validation
from reward_service.gateway.comparator import Comparator, JudgeInfo
from reward_service.gateway.scoring import score_group, score_reference
from reward_service.gateway.status import item_code, streaming, unary
from reward_service.gateway.tournament import PlayedMatch, Tournament
from reward_service.gateway.validation import Defaults


class RewardService(pb_grpc.RewardServiceServicer):
    def __init__(
        self,
        comparator: Comparator,
        info: JudgeInfo,
        *,
        limits: Limits,
        defaults: Defaults,
        default_deadline_s: float,
    ) -> None:
        self.comparator = comparator
        self.tournament = Tournament(comparator)
        self.info = info
        self.limits = limits
        self.defaults = defaults
        self.default_deadline_s = default_deadline_s

    def _deadline(self, context: grpc.aio.ServicerContext) -> float:
        remaining = context.time_remaining()
        if remaining is None:
            remaining = self.default_deadline_s
        return time.time() + min(remaining, self.default_deadline_s)

    @unary
    async def Compare(
        self, request: pb.CompareRequest, context: grpc.aio.ServicerContext
    ) -> pb.CompareResponse:
        rid, c = validation.compare_request(request, "", self.limits, self.defaults)
        budget.check([budget.compare(request)], "options.votes", self.limits)
        outcome = await self.comparator.compare(c, rid, self._deadline(context))
        return convert.compare_response(outcome, self.info, rid)

    @unary
    async def CompareBatch(
        self, request: pb.CompareBatchRequest, context: grpc.aio.ServicerContext
    ) -> pb.CompareBatchResponse:
        if not request.pairs:
            raise InvalidInput("pairs", "must hold at least one pair")
        if len(request.pairs) > self.limits.max_pairs:
            raise InvalidInput(
                "pairs",
                f"has {len(request.pairs)} pairs, over the limit of {self.limits.max_pairs}",
            )
        budget.check(map(budget.compare, request.pairs), "pairs", self.limits)
        deadline = self._deadline(context)

        async def one(i: int, item: pb.CompareRequest) -> pb.CompareResult:
            try:
                rid, c = validation.compare_request(item, f"pairs[{i}]", self.limits, self.defaults)
                outcome = await self.comparator.compare(c, rid, deadline)
                return pb.CompareResult(response=convert.compare_response(outcome, self.info, rid))
            except RRMError as exc:
                field = _item_field(exc, f"pairs[{i}]")
                return pb.CompareResult(
                    error=pb.ItemError(code=item_code(exc), message=str(exc), field=field)
                )

        results = await asyncio.gather(*(one(i, p) for i, p in enumerate(request.pairs)))
        return pb.CompareBatchResponse(results=results)

    @unary
    async def Rank(
        self, request: pb.RankRequest, context: grpc.aio.ServicerContext
    ) -> pb.RankResponse:
        rid, spec = validation.rank_request(request, "", self.limits, self.defaults)
        budget.check([budget.rank(request)], "candidates", self.limits)
        result = await self.tournament.run(spec, rid, self._deadline(context))
        # Thousands of votes make milliseconds of protobuf building: not on the event loop.
        return await asyncio.to_thread(convert.rank_response, result, self.info, rid)

    @streaming
    async def RankStream(
        self, request: pb.RankRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.RankEvent]:
        rid, spec = validation.rank_request(request, "", self.limits, self.defaults)
        budget.check([budget.rank(request)], "candidates", self.limits)
        events: asyncio.Queue[pb.RankEvent] = asyncio.Queue()

        def on_event(event: PlayedMatch | int) -> None:
            if isinstance(event, PlayedMatch):
                events.put_nowait(pb.RankEvent(match=convert.match_pb(event)))
            else:
                events.put_nowait(pb.RankEvent(round_finished=event))

        run = asyncio.create_task(self.tournament.run(spec, rid, self._deadline(context), on_event))
        try:
            while not (run.done() and events.empty()):
                getter = asyncio.ensure_future(events.get())
                await asyncio.wait({getter, run}, return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    yield getter.result()
                else:
                    getter.cancel()
            final = await asyncio.to_thread(convert.rank_response, run.result(), self.info, rid)
            yield pb.RankEvent(result=final)
        finally:
            run.cancel()

    @unary
    async def RankBatch(
        self, request: pb.RankBatchRequest, context: grpc.aio.ServicerContext
    ) -> pb.RankBatchResponse:
        if not request.requests:
            raise InvalidInput("requests", "must hold at least one request")
        if len(request.requests) > self.limits.max_pairs:
            raise InvalidInput(
                "requests",
                f"has {len(request.requests)} requests, over the limit of {self.limits.max_pairs}",
            )
        budget.check(map(budget.rank, request.requests), "requests", self.limits)
        deadline = self._deadline(context)

        async def one(i: int, item: pb.RankRequest) -> pb.RankResult:
            try:
                rid, spec = validation.rank_request(
                    item, f"requests[{i}]", self.limits, self.defaults
                )
                result = await self.tournament.run(spec, rid, deadline)
                reply = await asyncio.to_thread(convert.rank_response, result, self.info, rid)
                return pb.RankResult(response=reply)
            except RRMError as exc:
                field = _item_field(exc, f"requests[{i}]")
                return pb.RankResult(
                    error=pb.ItemError(code=item_code(exc), message=str(exc), field=field)
                )

        results = await asyncio.gather(*(one(i, r) for i, r in enumerate(request.requests)))
        return pb.RankBatchResponse(results=results)

    @unary
    async def Score(
        self, request: pb.ScoreRequest, context: grpc.aio.ServicerContext
    ) -> pb.ScoreResponse:
        rid = validation.request_id_of(request.request_id, "request_id")
        mode = request.mode or pb.SCORE_MODE_GROUP
        deadline = self._deadline(context)
        strategy = request.strategy
        if mode == pb.SCORE_MODE_IN_GROUP_REFERENCE:  # group mode with that strategy
            if strategy not in (pb.STRATEGY_UNSPECIFIED, pb.STRATEGY_IN_GROUP_REFERENCE):
                raise InvalidInput("strategy", "is set by SCORE_MODE_IN_GROUP_REFERENCE")
            strategy = pb.STRATEGY_IN_GROUP_REFERENCE
        spec = validation.rank_spec(
            rid,
            request.query,
            request.history,
            request.candidates,
            strategy,
            request.options,
            "",
            self.limits,
            self.defaults,
            default_strategy=pb.STRATEGY_ELO,
            adaptive=request.adaptive if request.HasField("adaptive") else None,
            reference_index=(
                request.reference_index if request.HasField("reference_index") else None
            ),
        )
        budget.check([budget.score(request)], "candidates", self.limits)
        if mode == pb.SCORE_MODE_REFERENCE:
            reference = validation.check_text(request.reference, "reference", self.limits)
            scores = await score_reference(self.comparator, spec, reference, rid, deadline)
        elif mode in (pb.SCORE_MODE_GROUP, pb.SCORE_MODE_IN_GROUP_REFERENCE):
            if request.reference:
                raise InvalidInput("reference", "is only used with SCORE_MODE_REFERENCE")
            scores = await score_group(self.tournament, spec, rid, deadline)
        else:
            raise InvalidInput("mode", f"unknown score mode {mode}")
        reply = pb.ScoreResponse(
            rewards=scores.rewards,
            raw_scores=scores.raw,
            usage=convert.usage_pb(list(scores.comparisons)),
            model=self.info.model,
            template_version=self.info.template_version,
            request_id=rid,
        )
        if scores.tournament is not None:
            ranked = await asyncio.to_thread(
                convert.rank_response, scores.tournament, self.info, rid
            )
            reply.rank.CopyFrom(ranked)
        return reply

    @unary
    async def GetInfo(
        self, request: pb.GetInfoRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetInfoResponse:
        return pb.GetInfoResponse(
            model=self.info.model,
            judge_profile=self.info.profile,
            template_version=self.info.template_version,
            limits=convert.limits_pb(self.limits),
            server_version=__version__,
            default_max_reasoning_tokens=self.defaults.max_reasoning_tokens,
            default_temperature=self.defaults.temperature,
            default_cascade_threshold=self.defaults.cascade_threshold,
        )


def _item_field(exc: RRMError, prefix: str) -> str:
    """The batch item's field: validation errors already carry the prefix, others get it."""
    if isinstance(exc, InvalidInput):
        return exc.field if exc.field.startswith(prefix) else f"{prefix}.{exc.field}"
    return prefix

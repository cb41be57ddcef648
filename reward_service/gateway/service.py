"""The `rrm.v1.RewardService` servicer: validate, plan, run through the comparator, convert."""

from __future__ import annotations

import asyncio
import time

import grpc
from rrm.v1 import reward_pb2 as pb
from rrm.v1 import reward_pb2_grpc as pb_grpc

from reward_service import __version__
from reward_service.domain import Limits
from reward_service.errors import InvalidInput, RRMError
from reward_service.gateway import convert, validation
from reward_service.gateway.comparator import Comparator, JudgeInfo
from reward_service.gateway.status import item_code, unary
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
        deadline = self._deadline(context)

        async def one(i: int, item: pb.CompareRequest) -> pb.CompareResult:
            try:
                rid, c = validation.compare_request(item, f"pairs[{i}]", self.limits, self.defaults)
                outcome = await self.comparator.compare(c, rid, deadline)
                return pb.CompareResult(response=convert.compare_response(outcome, self.info, rid))
            except RRMError as exc:
                field = exc.field if isinstance(exc, InvalidInput) else f"pairs[{i}]"
                return pb.CompareResult(
                    error=pb.ItemError(code=item_code(exc), message=str(exc), field=field)
                )

        results = await asyncio.gather(*(one(i, p) for i, p in enumerate(request.pairs)))
        return pb.CompareBatchResponse(results=results)

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
        )

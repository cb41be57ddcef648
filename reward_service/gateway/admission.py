"""Admission control: past the calls it may serve at once, a gateway answers RESOURCE_EXHAUSTED
with a retry delay (google.rpc.RetryInfo) at once, instead of letting calls pile up inside an
overloaded process.

gRPC's own `maximum_concurrent_rpcs` refuses without a retry delay and counts health checks too,
so an overloaded gateway would fail its probes; this interceptor limits `rrm.v1.RewardService`
only. It sees only the calls gRPC's core hands to the process: calls arriving faster than one
process can take them up (a few hundred to ~2,000/s, by machine) wait in the core (see
`MAX_PENDING_CALLS` in server.py and docs/benchmarks.md, "Overload of one gateway").
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from reward_service.errors import Overloaded
from reward_service.gateway.status import rich_status

LIMITED_PREFIX = "/rrm.v1.RewardService/"


class Admission(grpc.aio.ServerInterceptor):
    """Must be the last interceptor: it caches one wrapped handler per method, so the handler it
    wraps must be the service's own, not a per-call one (such as an auth rejection)."""

    def __init__(self, *, max_concurrent: int, retry_after_s: float = 1.0) -> None:
        self.max_concurrent = max_concurrent  # 0: no cap
        self.retry_after_s = retry_after_s
        self.in_flight = 0
        self.refused = 0
        self._wrapped: dict[str, grpc.RpcMethodHandler] = {}

    async def _admit(self, context: grpc.aio.ServicerContext) -> None:
        if self.max_concurrent and self.in_flight >= self.max_concurrent:
            self.refused += 1
            status = rich_status(
                Overloaded(
                    f"gateway is serving {self.in_flight} calls, its limit "
                    "(RRM_GATEWAY__MAX_CONCURRENT_RPCS); retry later or on another gateway",
                    retry_after_s=self.retry_after_s,
                )
            )
            await context.abort(status.code, status.details, status.trailing_metadata)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = handler_call_details.method or ""
        wrapped = self._wrapped.get(method)
        if wrapped is not None:
            return wrapped
        handler = await continuation(handler_call_details)
        if handler is None or not self.max_concurrent or not method.startswith(LIMITED_PREFIX):
            return handler
        wrapped = self._wrap(handler)
        self._wrapped[method] = wrapped
        return wrapped

    def _wrap(self, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        kwargs = dict(
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
        if handler.unary_stream:
            stream = handler.unary_stream

            async def admitted_stream(
                request: Any, context: grpc.aio.ServicerContext
            ) -> AsyncIterator[Any]:
                await self._admit(context)
                self.in_flight += 1
                try:
                    async for item in stream(request, context):
                        yield item
                finally:
                    self.in_flight -= 1

            return grpc.unary_stream_rpc_method_handler(admitted_stream, **kwargs)
        unary = handler.unary_unary

        async def admitted(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await self._admit(context)
            self.in_flight += 1
            try:
                return await unary(request, context)
            finally:
                self.in_flight -= 1

        return grpc.unary_unary_rpc_method_handler(admitted, **kwargs)

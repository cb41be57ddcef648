"""The one place where errors become gRPC statuses.

Domain errors carry meaning (InvalidInput names a field, Overloaded a retry delay); this module
turns them into INVALID_ARGUMENT, RESOURCE_EXHAUSTED with google.rpc.RetryInfo, UNAVAILABLE,
DEADLINE_EXCEEDED, ... Anything unexpected is logged with its traceback and reported as INTERNAL.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf import duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from reward_service import errors, metrics

log = logging.getLogger(__name__)

_CODES: list[tuple[type[Exception], grpc.StatusCode]] = [
    (errors.InvalidInput, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.Overloaded, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (errors.DeadlineExceeded, grpc.StatusCode.DEADLINE_EXCEEDED),
    (errors.Unavailable, grpc.StatusCode.UNAVAILABLE),
    (errors.JudgmentFailed, grpc.StatusCode.ABORTED),
]


def code_for(exc: BaseException) -> grpc.StatusCode:
    for kind, code in _CODES:
        if isinstance(exc, kind):
            return code
    return grpc.StatusCode.INTERNAL


def rich_status(exc: BaseException) -> grpc.Status:
    code = code_for(exc)
    message = str(exc) if code is not grpc.StatusCode.INTERNAL else "internal error"
    status = status_pb2.Status(code=code.value[0], message=message)
    if isinstance(exc, errors.Overloaded):
        delay = duration_pb2.Duration()
        delay.FromMilliseconds(int(exc.retry_after_s * 1000))
        status.details.add().Pack(error_details_pb2.RetryInfo(retry_delay=delay))
    if isinstance(exc, errors.InvalidInput):
        violation = error_details_pb2.BadRequest.FieldViolation(
            field=exc.field, description=exc.message
        )
        status.details.add().Pack(error_details_pb2.BadRequest(field_violations=[violation]))
    return rpc_status.to_status(status)


def item_code(exc: BaseException) -> int:
    """google.rpc.Code of an error reported inside a batch answer."""
    code = code_for(exc)
    return int(code.value[0]) if code is not grpc.StatusCode.INTERNAL else code_pb2.INTERNAL


async def abort(context: grpc.aio.ServicerContext, exc: BaseException) -> None:
    if code_for(exc) is grpc.StatusCode.INTERNAL:
        log.error("unexpected error", exc_info=exc)
    status = rich_status(exc)
    await context.abort(status.code, status.details, status.trailing_metadata)


T = TypeVar("T")
Handler = Callable[..., Awaitable[T]]


def _observe(name: str, code: grpc.StatusCode, started: float) -> None:
    metrics.RPCS.labels(name, code.name).inc()
    metrics.RPC_LATENCY.labels(name).observe(time.perf_counter() - started)
    if code is grpc.StatusCode.RESOURCE_EXHAUSTED:
        metrics.OVERLOADED.inc()


def unary(method: Handler[T]) -> Handler[T]:
    """Wrap a unary handler: exceptions leave through `abort`; latency and code are counted."""
    name = method.__name__

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> T:
        started = time.perf_counter()
        try:
            reply = await method(self, request, context)
        except asyncio.CancelledError:
            _observe(name, grpc.StatusCode.CANCELLED, started)
            raise
        except Exception as exc:
            _observe(name, code_for(exc), started)
            await abort(context, exc)
            raise AssertionError("unreachable: abort raises") from exc
        _observe(name, grpc.StatusCode.OK, started)
        return reply

    return wrapper


def streaming(
    method: Callable[..., AsyncIterator[T]],
) -> Callable[..., AsyncIterator[T]]:
    """The same for server-streaming handlers."""

    name = method.__name__

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> Any:
        started = time.perf_counter()
        try:
            async for item in method(self, request, context):
                yield item
        except asyncio.CancelledError:
            _observe(name, grpc.StatusCode.CANCELLED, started)
            raise
        except Exception as exc:
            _observe(name, code_for(exc), started)
            await abort(context, exc)
        else:
            _observe(name, grpc.StatusCode.OK, started)

    return wrapper

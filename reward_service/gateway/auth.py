"""Bearer-token authentication and per-token rate limits, as one grpc.aio server interceptor.

Tokens come from a file (one per line, as a mounted Kubernetes Secret provides them) and/or an
environment variable; a call without a valid `authorization: Bearer <token>` header gets
UNAUTHENTICATED. Health and reflection stay open unless configured otherwise, so probes and
grpcurl work. Tokens are compared in constant time and never logged.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from reward_service.errors import Overloaded, Unauthenticated
from reward_service.gateway.status import rich_status

OPEN_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


def load_tokens(file: str = "", inline: str = "") -> tuple[str, ...]:
    tokens: list[str] = []
    if file:
        for line in Path(file).read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                tokens.append(line)
    tokens += [t.strip() for t in inline.split(",") if t.strip()]
    return tuple(tokens)


@dataclass
class TokenBucket:
    """`rate` calls per second on average, bursts up to `burst`."""

    rate: float
    burst: float
    tokens: float = field(init=False)
    stamp: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.tokens = self.burst

    def take(self) -> float:
        """0 when a call may go now, else the seconds until it may."""
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


def _rejecting(handler: grpc.RpcMethodHandler, exc: Exception) -> grpc.RpcMethodHandler:
    """A handler of the same shape as `handler` that fails the call with `exc`'s status."""
    status = rich_status(exc)

    async def reject(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await context.abort(status.code, status.details, status.trailing_metadata)

    kwargs = dict(
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )
    if handler.unary_stream:

        async def reject_stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
            await reject(request, context)
            yield  # pragma: no cover - makes this an async generator

        return grpc.unary_stream_rpc_method_handler(reject_stream, **kwargs)
    return grpc.unary_unary_rpc_method_handler(reject, **kwargs)


class AuthInterceptor(grpc.aio.ServerInterceptor):
    def __init__(
        self,
        tokens: Iterable[str],
        *,
        rate_limit_per_s: float = 0.0,
        burst: float = 0.0,
        open_prefixes: tuple[str, ...] = OPEN_PREFIXES,
    ) -> None:
        self.tokens = tuple(t.encode() for t in tokens)
        if not self.tokens:
            raise ValueError("authentication is on but no token is configured")
        self.rate = rate_limit_per_s
        self.burst = burst or max(1.0, rate_limit_per_s)
        self.open_prefixes = open_prefixes
        self._buckets: dict[bytes, TokenBucket] = {}

    def _token(self, metadata: Iterable[tuple[str, str | bytes]]) -> bytes | None:
        for key, value in metadata:
            if key == "authorization":
                text = value.decode() if isinstance(value, bytes) else value
                scheme, _, credential = text.partition(" ")
                if scheme.lower() == "bearer":
                    given = credential.strip().encode()
                    for token in self.tokens:
                        if hmac.compare_digest(given, token):
                            return token
        return None

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method or ""
        if handler is None or method.startswith(self.open_prefixes):
            return handler
        token = self._token(handler_call_details.invocation_metadata or ())
        if token is None:
            return _rejecting(handler, Unauthenticated("missing or invalid bearer token"))
        if self.rate > 0:
            bucket = self._buckets.setdefault(token, TokenBucket(self.rate, self.burst))
            wait = bucket.take()
            if wait > 0:
                return _rejecting(
                    handler, Overloaded("rate limit for this token exceeded", retry_after_s=wait)
                )
        return handler

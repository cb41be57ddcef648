"""`RewardClient` (blocking, thread-safe) and `AsyncRewardClient` (asyncio) for rrm.v1.

One channel per client, reused by every call. Each call has a deadline covering all of its
attempts; UNAVAILABLE and RESOURCE_EXHAUSTED are retried with backoff (honouring the server's
RetryInfo), with the same request_id so the service answers a retry from its results instead of
judging again. Every other failure raises a typed `RewardServiceError`; a failed judgment is
`JudgmentFailed`, never a reward.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import grpc
from rrm.v1 import reward_pb2 as pb
from rrm.v1 import reward_pb2_grpc as pb_grpc

from policy_adapter.channel import Endpoint, TLSConfig
from policy_adapter.errors import RETRYABLE, Overloaded, from_rpc_error
from policy_adapter.results import (
    Comparison,
    HistoryLike,
    ItemError,
    JudgeOptions,
    PairRequest,
    RankEvent,
    Ranking,
    RankQuery,
    Scores,
    ServiceInfo,
    Strategy,
    history_pb,
    rank_event,
)
from policy_adapter.retry import RetryPolicy
from policy_adapter.tournament import AdaptiveOptions, OptionError, check_strategy_options

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 600.0


def new_request_id() -> str:
    return f"py-{uuid.uuid4().hex}"


class _Attempts:
    """The retry loop's bookkeeping, shared by both clients: deadline, attempt count, waits."""

    def __init__(self, method: str, policy: RetryPolicy, timeout_s: float) -> None:
        self.method = method
        self.policy = policy
        self.timeout_s = timeout_s
        self.deadline = time.monotonic() + timeout_s
        self.attempt = 0

    def start(self) -> float:
        """Begin an attempt; its timeout is what is left of the call's deadline."""
        self.attempt += 1
        return max(0.001, self.deadline - time.monotonic())

    def wait_after(self, err: grpc.RpcError, *, replayable: bool = True) -> float:
        """Seconds to wait before the next attempt, or raise the typed error if there is none.

        `replayable=False`: the call already gave its caller results (a stream), so it cannot
        start over."""
        error = from_rpc_error(err)
        if (
            not replayable
            or err.code() not in RETRYABLE  # type: ignore[attr-defined]
            or self.attempt >= self.policy.max_attempts
        ):
            raise error from err
        hint = error.retry_after_s if isinstance(error, Overloaded) else None
        wait = self.policy.delay_s(self.attempt, hint)
        if time.monotonic() + wait >= self.deadline:
            raise error from err
        log.warning(
            "%s: %s; retry %d of %d in %.2f s",
            self.method,
            error,
            self.attempt,
            self.policy.max_attempts - 1,
            wait,
        )
        return wait


# ---- request builders (shared, pure) ----


def _compare_pb(
    query: str,
    response_a: str,
    response_b: str,
    history: HistoryLike,
    options: JudgeOptions | None,
    request_id: str,
) -> pb.CompareRequest:
    return pb.CompareRequest(
        request_id=request_id or new_request_id(),
        query=query,
        history=history_pb(history),
        response_a=response_a,
        response_b=response_b,
        options=(options or JudgeOptions()).to_pb(),
    )


def _rank_pb(
    query: str,
    candidates: Sequence[str],
    strategy: Strategy,
    history: HistoryLike,
    options: JudgeOptions | None,
    request_id: str,
    adaptive: AdaptiveOptions | None = None,
    reference_index: int | None = None,
) -> pb.RankRequest:
    strategy = Strategy(strategy)
    check_strategy_options(strategy, adaptive, reference_index, len(candidates))
    request = pb.RankRequest(
        request_id=request_id or new_request_id(),
        query=query,
        history=history_pb(history),
        candidates=list(candidates),
        strategy=int(strategy),  # type: ignore[arg-type]
        options=(options or JudgeOptions()).to_pb(),
    )
    if adaptive is not None:
        request.adaptive.CopyFrom(adaptive.to_pb())
    if reference_index is not None:
        request.reference_index = reference_index
    return request


def _score_pb(
    query: str,
    candidates: Sequence[str],
    reference: str | None,
    strategy: Strategy,
    history: HistoryLike,
    options: JudgeOptions | None,
    request_id: str,
    adaptive: AdaptiveOptions | None = None,
    reference_index: int | None = None,
) -> pb.ScoreRequest:
    strategy = Strategy(strategy)
    if reference is not None and reference_index is not None:
        raise OptionError(
            "reference_index",
            "picks a candidate as the reference (group mode); it cannot go with a reference text",
        )
    check_strategy_options(strategy, adaptive, reference_index, len(candidates))
    request = pb.ScoreRequest(
        request_id=request_id or new_request_id(),
        query=query,
        history=history_pb(history),
        candidates=list(candidates),
        mode=pb.SCORE_MODE_GROUP if reference is None else pb.SCORE_MODE_REFERENCE,
        reference=reference or "",
        strategy=int(strategy),  # type: ignore[arg-type]
        options=(options or JudgeOptions()).to_pb(),
    )
    if adaptive is not None:
        request.adaptive.CopyFrom(adaptive.to_pb())
    if reference_index is not None:
        request.reference_index = reference_index
    return request


def _compare_batch_result(reply: pb.CompareBatchResponse) -> list[Comparison | ItemError]:
    return [
        Comparison.from_pb(r.response)
        if r.WhichOneof("outcome") == "response"
        else ItemError.from_pb(r.error)
        for r in reply.results
    ]


def _rank_batch_result(reply: pb.RankBatchResponse) -> list[Ranking | ItemError]:
    return [
        Ranking.from_pb(r.response)
        if r.WhichOneof("outcome") == "response"
        else ItemError.from_pb(r.error)
        for r in reply.results
    ]


class _ClientBase:
    def __init__(
        self,
        address: str,
        *,
        tls: TLSConfig | None,
        token: str | None,
        timeout_s: float,
        retry: RetryPolicy,
        options: JudgeOptions | None,
    ) -> None:
        self.endpoint = Endpoint(address, tls, token)
        self.timeout_s = timeout_s
        self.retry = retry
        self.options = options  # default JudgeOptions of calls that pass none

    def _opts(self, options: JudgeOptions | None) -> JudgeOptions | None:
        return options if options is not None else self.options

    def _pairs_pb(self, pairs: Sequence[PairRequest]) -> pb.CompareBatchRequest:
        return pb.CompareBatchRequest(
            pairs=[
                _compare_pb(
                    p.query,
                    p.response_a,
                    p.response_b,
                    p.history,
                    self._opts(p.options),
                    p.request_id,
                )
                for p in pairs
            ]
        )

    def _ranks_pb(self, queries: Sequence[RankQuery]) -> pb.RankBatchRequest:
        return pb.RankBatchRequest(
            requests=[
                _rank_pb(
                    q.query,
                    q.candidates,
                    q.strategy,
                    q.history,
                    self._opts(q.options),
                    q.request_id,
                    q.adaptive,
                    q.reference_index,
                )
                for q in queries
            ]
        )


class RewardClient(_ClientBase):
    """Blocking client. Thread-safe: share one per process (it holds one channel)."""

    def __init__(
        self,
        address: str,
        *,
        tls: TLSConfig | None = None,
        token: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        retry: RetryPolicy | None = None,
        options: JudgeOptions | None = None,
    ) -> None:
        super().__init__(
            address,
            tls=tls,
            token=token,
            timeout_s=timeout_s,
            retry=retry or RetryPolicy(),
            options=options,
        )
        self._channel = self.endpoint.sync_channel()
        self._stub = pb_grpc.RewardServiceStub(self._channel)

    def __enter__(self) -> RewardClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def _call(self, name: str, request: Any, timeout_s: float | None) -> Any:
        method = getattr(self._stub, name)
        attempts = _Attempts(name, self.retry, timeout_s or self.timeout_s)
        while True:
            timeout = attempts.start()
            try:
                return method(request, timeout=timeout, metadata=self.endpoint.metadata)
            except grpc.RpcError as err:
                time.sleep(attempts.wait_after(err))

    def compare(
        self,
        query: str,
        response_a: str,
        response_b: str,
        *,
        history: HistoryLike = (),
        options: JudgeOptions | None = None,
        request_id: str = "",
        timeout_s: float | None = None,
    ) -> Comparison:
        request = _compare_pb(
            query, response_a, response_b, history, self._opts(options), request_id
        )
        return Comparison.from_pb(self._call("Compare", request, timeout_s))

    def compare_batch(
        self, pairs: Sequence[PairRequest], *, timeout_s: float | None = None
    ) -> list[Comparison | ItemError]:
        """One answer per pair, in order; a pair that failed is an `ItemError` in its place."""
        reply = self._call("CompareBatch", self._pairs_pb(pairs), timeout_s)
        return _compare_batch_result(reply)

    def rank(
        self,
        query: str,
        candidates: Sequence[str],
        *,
        strategy: Strategy = Strategy.KNOCKOUT,
        adaptive: AdaptiveOptions | None = None,
        reference_index: int | None = None,
        history: HistoryLike = (),
        options: JudgeOptions | None = None,
        request_id: str = "",
        timeout_s: float | None = None,
    ) -> Ranking:
        request = _rank_pb(
            query,
            candidates,
            strategy,
            history,
            self._opts(options),
            request_id,
            adaptive,
            reference_index,
        )
        return Ranking.from_pb(self._call("Rank", request, timeout_s))

    def rank_stream(
        self,
        query: str,
        candidates: Sequence[str],
        *,
        strategy: Strategy = Strategy.KNOCKOUT,
        adaptive: AdaptiveOptions | None = None,
        reference_index: int | None = None,
        history: HistoryLike = (),
        options: JudgeOptions | None = None,
        request_id: str = "",
        timeout_s: float | None = None,
    ) -> Iterator[RankEvent]:
        """Matches as they finish, round ends, then the `Ranking` last (for progress displays).

        Retried like the other calls until the first event arrives; after that a failure
        raises (a new attempt would replay the events already yielded)."""
        request = _rank_pb(
            query,
            candidates,
            strategy,
            history,
            self._opts(options),
            request_id,
            adaptive,
            reference_index,
        )
        attempts = _Attempts("RankStream", self.retry, timeout_s or self.timeout_s)
        while True:
            timeout = attempts.start()
            started = False
            try:
                for event in self._stub.RankStream(
                    request, timeout=timeout, metadata=self.endpoint.metadata
                ):
                    started = True
                    yield rank_event(event)
                return
            except grpc.RpcError as err:
                time.sleep(attempts.wait_after(err, replayable=not started))

    def rank_batch(
        self, queries: Sequence[RankQuery], *, timeout_s: float | None = None
    ) -> list[Ranking | ItemError]:
        reply = self._call("RankBatch", self._ranks_pb(queries), timeout_s)
        return _rank_batch_result(reply)

    def score(
        self,
        query: str,
        candidates: Sequence[str],
        *,
        reference: str | None = None,
        strategy: Strategy = Strategy.UNSPECIFIED,
        adaptive: AdaptiveOptions | None = None,
        reference_index: int | None = None,
        history: HistoryLike = (),
        options: JudgeOptions | None = None,
        request_id: str = "",
        timeout_s: float | None = None,
    ) -> Scores:
        """Group mode (no reference): rank the candidates, one reward each from the ranking
        (`strategy` and its options as for `rank`; `Strategy.IN_GROUP_REFERENCE`: reward_i =
        p(candidate i beats candidate `reference_index`) - 0.5). Reference mode: reward_i =
        p(candidate i beats `reference`)."""
        request = _score_pb(
            query,
            candidates,
            reference,
            strategy,
            history,
            self._opts(options),
            request_id,
            adaptive,
            reference_index,
        )
        return Scores.from_pb(self._call("Score", request, timeout_s))

    def info(self, *, timeout_s: float | None = None) -> ServiceInfo:
        return ServiceInfo.from_pb(self._call("GetInfo", pb.GetInfoRequest(), timeout_s))


class AsyncRewardClient(_ClientBase):
    """asyncio client. Its channel belongs to the event loop of its first call: use one client
    per loop, and `await client.close()` (or `async with`) on that loop."""

    def __init__(
        self,
        address: str,
        *,
        tls: TLSConfig | None = None,
        token: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        retry: RetryPolicy | None = None,
        options: JudgeOptions | None = None,
    ) -> None:
        super().__init__(
            address,
            tls=tls,
            token=token,
            timeout_s=timeout_s,
            retry=retry or RetryPolicy(),
            options=options,
        )
        self._channel: grpc.aio.Channel | None = None
        self._stub: pb_grpc.RewardServiceStub | None = None

    async def __aenter__(self) -> AsyncRewardClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._channel is not None:
            channel, self._channel, self._stub = self._channel, None, None
            await channel.close()

    def _stub_now(self) -> pb_grpc.RewardServiceStub:
        if self._stub is None:
            self._channel = self.endpoint.aio_channel()
            self._stub = pb_grpc.RewardServiceStub(self._channel)
        return self._stub

    async def _call(self, name: str, request: Any, timeout_s: float | None) -> Any:
        method = getattr(self._stub_now(), name)
        attempts = _Attempts(name, self.retry, timeout_s or self.timeout_s)
        while True:
            timeout = attempts.start()
            try:
                return await method(request, timeout=timeout, metadata=self.endpoint.metadata)
            except grpc.RpcError as err:
                await asyncio.sleep(attempts.wait_after(err))

    async def compare(
        self,
        query: str,
        response_a: str,
        response_b: str,
        *,
        history: HistoryLike = (),
        options: JudgeOptions | None = None,
        request_id: str = "",
        timeout_s: float | None = None,
    ) -> Comparison:
        request = _compare_pb(
            query, response_a, response_b, history, self._opts(options), request_id
        )
        return Comparison.from_pb(await self._call("Compare", request, timeout_s))

    async def compare_batch(
        self, pairs: Sequence[PairRequest], *, timeout_s: float | None = None
    ) -> list[Comparison | ItemError]:
        reply = await self._call("CompareBatch", self._pairs_pb(pairs), timeout_s)
        return _compare_batch_result(reply)

    async def rank(
        self,
        query: str,
        candidates: Sequence[str],
        *,
        strategy: Strategy = Strategy.KNOCKOUT,
        adaptive: AdaptiveOptions | None = None,
        reference_index: int | None = None,
        history: HistoryLike = (),
        options: JudgeOptions | None = None,
        request_id: str = "",
        timeout_s: float | None = None,
    ) -> Ranking:
        request = _rank_pb(
            query,
            candidates,
            strategy,
            history,
            self._opts(options),
            request_id,
            adaptive,
            reference_index,
        )
        return Ranking.from_pb(await self._call("Rank", request, timeout_s))

    async def rank_stream(
        self,
        query: str,
        candidates: Sequence[str],
        *,
        strategy: Strategy = Strategy.KNOCKOUT,
        adaptive: AdaptiveOptions | None = None,
        reference_index: int | None = None,
        history: HistoryLike = (),
        options: JudgeOptions | None = None,
        request_id: str = "",
        timeout_s: float | None = None,
    ) -> AsyncIterator[RankEvent]:
        """As `RewardClient.rank_stream`: matches as they finish, then the `Ranking`."""
        request = _rank_pb(
            query,
            candidates,
            strategy,
            history,
            self._opts(options),
            request_id,
            adaptive,
            reference_index,
        )
        attempts = _Attempts("RankStream", self.retry, timeout_s or self.timeout_s)
        while True:
            timeout = attempts.start()
            started = False
            try:
                call = self._stub_now().RankStream(
                    request, timeout=timeout, metadata=self.endpoint.metadata
                )
                async for event in call:
                    started = True
                    yield rank_event(event)
                return
            except grpc.RpcError as err:
                await asyncio.sleep(attempts.wait_after(err, replayable=not started))

    async def rank_batch(
        self, queries: Sequence[RankQuery], *, timeout_s: float | None = None
    ) -> list[Ranking | ItemError]:
        reply = await self._call("RankBatch", self._ranks_pb(queries), timeout_s)
        return _rank_batch_result(reply)

    async def score(
        self,
        query: str,
        candidates: Sequence[str],
        *,
        reference: str | None = None,
        strategy: Strategy = Strategy.UNSPECIFIED,
        adaptive: AdaptiveOptions | None = None,
        reference_index: int | None = None,
        history: HistoryLike = (),
        options: JudgeOptions | None = None,
        request_id: str = "",
        timeout_s: float | None = None,
    ) -> Scores:
        request = _score_pb(
            query,
            candidates,
            reference,
            strategy,
            history,
            self._opts(options),
            request_id,
            adaptive,
            reference_index,
        )
        return Scores.from_pb(await self._call("Score", request, timeout_s))

    async def info(self, *, timeout_s: float | None = None) -> ServiceInfo:
        return ServiceInfo.from_pb(await self._call("GetInfo", pb.GetInfoRequest(), timeout_s))

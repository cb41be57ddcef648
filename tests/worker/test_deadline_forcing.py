"""Verdicts within the caller's deadline: gateway comparator -> queue -> worker -> judge -> a slow
engine. Judgments still reasoning close to the deadline are cut and answered with a forced
verdict (DEADLINE_FORCED) before it; a request that opts out misses it instead.

The judge and tokenizer are real (the CPU model's); the engine is `ScriptedEngine`, a test double
that takes 60 s per reasoning (the real engines' cut at `SamplingSpec.end_by` is tested against
vLLM in tests/engine/test_one_call_verdict.py).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from transformers import AutoTokenizer

from reward_service.domain import ParseStatus
from reward_service.errors import DeadlineExceeded
from reward_service.gateway.comparator import Comparator
from reward_service.gateway.planner import Side
from reward_service.gateway.server import WARMUP
from reward_service.judge import Judge, JudgeProfile
from reward_service.queue.cache import MemoryVerdictCache
from reward_service.queue.memory import MemoryBroker
from reward_service.testing.scripted_engine import EngineCall, ScriptedEngine, ScriptedReply
from reward_service.worker.engine_runner import EngineVoteRunner
from reward_service.worker.worker import Worker
from tests.engine.support import MODEL_DIR

MARGIN_S = 1.0
COMPARISON = replace(WARMUP, votes=3, max_reasoning_tokens=512, temperature=0.6, use_cache=True)


@pytest.fixture(scope="module")
def judge() -> Judge:
    if not (MODEL_DIR / "tokenizer.json").exists():
        pytest.skip(f"{MODEL_DIR} missing: run `rrm model`")
    return Judge(AutoTokenizer.from_pretrained(MODEL_DIR), JudgeProfile.GENERIC)


def slow_engine(judge: Judge) -> ScriptedEngine:
    """Reasoning takes a minute (a long judgment on a busy engine); verdict reads are quick."""
    one, two = judge.verdict_token_ids

    def reply(call: EngineCall) -> ScriptedReply:
        if call.spec.max_tokens == 1:
            top = {one: math.log(0.7), two: math.log(0.2)}
            return ScriptedReply(text="1", token_ids=(one,), logprobs=(top,), latency_s=0.05)
        return ScriptedReply(text="Response 1 is", token_ids=(7, 8, 9), finish_reason="length")

    return ScriptedEngine(reply, latency_s=60.0)


@pytest.fixture
def cache() -> MemoryVerdictCache:
    return MemoryVerdictCache()


@pytest.fixture
async def stack(
    judge: Judge, cache: MemoryVerdictCache
) -> AsyncIterator[tuple[Comparator, ScriptedEngine]]:
    engine = slow_engine(judge)
    broker = MemoryBroker()
    runner = EngineVoteRunner(judge, engine, max_model_len=2048)
    worker = Worker(broker, runner, deadline_margin_s=MARGIN_S, poll_s=0.05, cache=cache)
    running = asyncio.create_task(worker.run(grace_s=0.5))
    yield Comparator(broker), engine
    worker.stop()
    await asyncio.wait_for(running, 10)


async def test_answers_arrive_before_the_deadline_with_forced_verdicts(
    stack: tuple[Comparator, ScriptedEngine], cache: MemoryVerdictCache
) -> None:
    comparator, engine = stack
    deadline = time.time() + 3.0
    outcome = await comparator.compare(COMPARISON, "in-time", deadline)
    assert time.time() < deadline
    assert outcome.winner is Side.A and outcome.failed == 0
    assert [v.result.status for v in outcome.votes] == [ParseStatus.DEADLINE_FORCED] * 2
    assert all(v.p_a == pytest.approx(0.7 / 0.9) for v in outcome.votes)
    reasoning = [c for c in engine.calls if c.spec.max_tokens > 1]
    assert {c.spec.end_by for c in reasoning} == {deadline - MARGIN_S}
    # cut short by this call's deadline: not a verdict to serve a later call with more time
    assert len(cache) == 0


async def test_a_request_that_opts_out_misses_the_deadline(
    stack: tuple[Comparator, ScriptedEngine],
) -> None:
    comparator, engine = stack
    opted_out = replace(COMPARISON, deadline_forcing=False)
    with pytest.raises(DeadlineExceeded):
        await comparator.compare(opted_out, "no-forcing", time.time() + 1.5)
    assert engine.calls and all(c.spec.end_by is None for c in engine.calls)

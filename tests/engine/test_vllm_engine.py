"""The in-process vLLM engine on the real CPU judge model: outputs, logprobs, batching, abort."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest
from transformers import PreTrainedTokenizerBase

from reward_service.engine.base import Engine, SamplingSpec
from reward_service.engine.vllm_engine import VLLMEngine
from reward_service.errors import InvalidInput, Unavailable
from tests.engine.support import CACHE_DIR, STORY, RenderPrompt, engine_settings, wait_until

pytestmark = pytest.mark.engine


def test_satisfies_the_engine_protocol(vllm_engine: VLLMEngine) -> None:
    assert isinstance(vllm_engine, Engine)
    assert vllm_engine.model_id == "SmolLM2-135M-Instruct"
    assert vllm_engine.supports_seed is False


async def test_generates_tokens_and_text_from_token_ids(
    vllm_engine: VLLMEngine, chat_prompt: RenderPrompt, tokenizer: PreTrainedTokenizerBase
) -> None:
    prompt = chat_prompt(STORY)
    gen = await vllm_engine.generate(prompt, SamplingSpec(max_tokens=24, temperature=0.0), "t-len")

    assert gen.finish_reason == "length"
    assert len(gen.token_ids) == 24
    assert gen.prompt_tokens == len(prompt)
    assert gen.text.strip()
    assert gen.text == tokenizer.decode(list(gen.token_ids), skip_special_tokens=True)
    assert gen.logprobs is None


async def test_stop_string_ends_generation_with_stop(
    vllm_engine: VLLMEngine, chat_prompt: RenderPrompt
) -> None:
    prompt = chat_prompt(STORY)
    greedy = await vllm_engine.generate(prompt, SamplingSpec(max_tokens=32, temperature=0.0), "g")
    words = greedy.text.split()
    stop = words[len(words) // 2]

    stopped = await vllm_engine.generate(
        prompt, SamplingSpec(max_tokens=32, temperature=0.0, stop=(stop,)), "t-stop"
    )

    assert stopped.finish_reason == "stop"
    assert stopped.text == greedy.text[: greedy.text.index(stop)]
    assert len(stopped.token_ids) < len(greedy.token_ids)


@pytest.mark.parametrize("k", [5, 20])
async def test_logprobs_are_keyed_by_token_id(
    vllm_engine: VLLMEngine, chat_prompt: RenderPrompt, k: int
) -> None:
    spec = SamplingSpec(max_tokens=8, temperature=0.0, logprobs=k)
    gen = await vllm_engine.generate(chat_prompt(STORY), spec, f"t-lp{k}")

    assert gen.logprobs is not None
    assert len(gen.logprobs) == len(gen.token_ids)
    for sampled, position in zip(gen.token_ids, gen.logprobs, strict=True):
        # The top k, plus the sampled token when it is not among them.
        assert k <= len(position) <= k + 1
        assert all(isinstance(token_id, int) for token_id in position)
        assert all(logprob <= 0.0 for logprob in position.values())
        assert position[sampled] == max(position.values())  # greedy picks the argmax


async def test_repeated_prompt_reports_cached_prompt_tokens(
    vllm_engine: VLLMEngine, chat_prompt: RenderPrompt
) -> None:
    # A unique prefix so no earlier test warmed the cache; ~600 tokens spans several blocks.
    text = f"{uuid.uuid4()} " + " ".join(f"Fact {i}: the sky is blue." for i in range(60))
    prompt = chat_prompt(text)
    spec = SamplingSpec(max_tokens=1, temperature=0.0)

    first = await vllm_engine.generate(prompt, spec, "t-cache-1")
    second = await vllm_engine.generate(prompt, spec, "t-cache-2")

    assert first.cached_prompt_tokens == 0
    assert second.cached_prompt_tokens >= len(prompt) // 2
    assert second.prompt_tokens == len(prompt)


async def test_concurrent_requests_are_batched_and_all_complete(
    vllm_engine: VLLMEngine, chat_prompt: RenderPrompt
) -> None:
    peak_running = 0

    async def watch() -> None:
        nonlocal peak_running
        while True:
            peak_running = max(peak_running, vllm_engine.load.running)
            await asyncio.sleep(0.02)

    watcher = asyncio.create_task(watch())
    spec = SamplingSpec(max_tokens=48, temperature=0.8)
    started = time.monotonic()
    gens = await asyncio.gather(
        *(
            vllm_engine.generate(chat_prompt(f"Story {i}: {STORY}"), spec, f"t-conc-{i}")
            for i in range(16)
        )
    )
    elapsed = time.monotonic() - started
    watcher.cancel()

    assert all(g.finish_reason in ("stop", "length") for g in gens)
    assert all(0 < len(g.token_ids) <= 48 for g in gens)
    assert peak_running > 1  # continuous batching, not one at a time
    tokens = sum(len(g.token_ids) for g in gens)
    print(f"16 concurrent: {tokens} tokens in {elapsed:.1f} s ({tokens / elapsed:.0f} tok/s)")


async def test_cancelling_the_caller_aborts_the_request_in_the_engine(
    vllm_engine: VLLMEngine, chat_prompt: RenderPrompt, monkeypatch: pytest.MonkeyPatch
) -> None:
    llm: Any = vllm_engine._llm
    aborted: list[Any] = []
    real_abort = llm.abort

    async def spy_abort(request_id: Any, internal: bool = False) -> None:
        aborted.append(request_id)
        await real_abort(request_id, internal=internal)

    monkeypatch.setattr(llm, "abort", spy_abort)
    # ~1900 tokens at ~50 tok/s would keep the engine busy for half a minute.
    spec = SamplingSpec(max_tokens=1900, temperature=1.0)
    task = asyncio.create_task(vllm_engine.generate(chat_prompt(STORY), spec, "t-cancel"))
    await wait_until(lambda: vllm_engine.load.running == 1, timeout_s=20)

    cancelled_at = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    await wait_until(
        lambda: vllm_engine.load.running == 0 and vllm_engine.load.updated_at > cancelled_at,
        timeout_s=5,
    )
    assert len(aborted) == 1 and str(aborted[0]).startswith("t-cancel")
    assert llm.get_num_unfinished_requests() == 0
    follow_up = await asyncio.wait_for(
        vllm_engine.generate(chat_prompt(STORY), SamplingSpec(max_tokens=4), "t-after-cancel"),
        timeout=5,
    )
    assert follow_up.finish_reason == "length"


async def test_seeded_request_is_refused_when_seeds_are_unsupported(
    vllm_engine: VLLMEngine, chat_prompt: RenderPrompt
) -> None:
    with pytest.raises(InvalidInput, match="seed"):
        await vllm_engine.generate(chat_prompt(STORY), SamplingSpec(max_tokens=4, seed=7), "t-seed")
    assert vllm_engine.alive


async def test_prompt_longer_than_the_context_is_invalid_input(vllm_engine: VLLMEngine) -> None:
    with pytest.raises(InvalidInput):
        await vllm_engine.generate([42] * 2100, SamplingSpec(max_tokens=4), "t-too-long")
    assert vllm_engine.alive


async def test_generate_before_start_is_unavailable(model_dir: Any) -> None:
    engine = VLLMEngine(engine_settings(), str(model_dir), cache_dir=CACHE_DIR)
    with pytest.raises(Unavailable, match="not running"):
        await engine.generate([1, 2, 3], SamplingSpec(max_tokens=1), "t-unstarted")

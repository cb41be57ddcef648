"""The OpenAI-compatible engine against a real vLLM api_server started by the test."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import httpx
import pytest
from transformers import PreTrainedTokenizerBase

from reward_service.engine.base import Engine, SamplingSpec
from reward_service.engine.openai_engine import OpenAIEngine
from reward_service.engine.vllm_engine import VLLMEngine
from reward_service.errors import InvalidInput, Unavailable
from tests.engine.support import (
    STORY,
    ApiServer,
    RenderPrompt,
    engine_settings,
    free_port,
    wait_until,
)

pytestmark = pytest.mark.engine


def running_requests(server: ApiServer) -> float:
    """vLLM's own gauge of requests in the engine, from the server's /metrics."""
    metrics = httpx.get(f"{server.root_url}/metrics", timeout=5).text
    match = re.search(r"^vllm:num_requests_running\{[^}]*\} (\S+)$", metrics, re.MULTILINE)
    assert match is not None, "vllm:num_requests_running missing from /metrics"
    return float(match.group(1))


def test_satisfies_the_engine_protocol(openai_engine: OpenAIEngine) -> None:
    assert isinstance(openai_engine, Engine)
    assert openai_engine.model_id == "SmolLM2-135M-Instruct"


async def test_generation_fields_from_a_token_id_prompt(
    openai_engine: OpenAIEngine, chat_prompt: RenderPrompt, tokenizer: PreTrainedTokenizerBase
) -> None:
    prompt = chat_prompt(STORY)
    spec = SamplingSpec(max_tokens=16, temperature=0.0, logprobs=5)
    gen = await openai_engine.generate(prompt, spec, "o-len")

    assert gen.finish_reason == "length"
    assert len(gen.token_ids) == 16
    assert gen.prompt_tokens == len(prompt)
    assert gen.text == tokenizer.decode(list(gen.token_ids), skip_special_tokens=True)
    assert gen.logprobs is not None and len(gen.logprobs) == 16
    for sampled, position in zip(gen.token_ids, gen.logprobs, strict=True):
        assert 5 <= len(position) <= 6
        assert all(isinstance(token_id, int) for token_id in position)
        assert position[sampled] == max(position.values())


async def test_stop_string_ends_generation_with_stop(
    openai_engine: OpenAIEngine, chat_prompt: RenderPrompt
) -> None:
    prompt = chat_prompt(STORY)
    greedy = await openai_engine.generate(prompt, SamplingSpec(max_tokens=32, temperature=0), "g")
    stop = greedy.text.split()[len(greedy.text.split()) // 2]

    stopped = await openai_engine.generate(
        prompt, SamplingSpec(max_tokens=32, temperature=0.0, stop=(stop,)), "o-stop"
    )

    assert stopped.finish_reason == "stop"
    assert stopped.text == greedy.text[: greedy.text.index(stop)]


async def test_greedy_output_matches_the_in_process_engine(
    openai_engine: OpenAIEngine, vllm_engine: VLLMEngine, chat_prompt: RenderPrompt
) -> None:
    prompt = chat_prompt("Which is larger, 9.11 or 9.9? Explain.")
    spec = SamplingSpec(max_tokens=16, temperature=0.0, logprobs=5)

    remote = await openai_engine.generate(prompt, spec, "o-greedy")
    local = await vllm_engine.generate(prompt, spec, "v-greedy")

    assert remote.token_ids[:8] == local.token_ids[:8]
    assert remote.logprobs is not None and local.logprobs is not None
    assert remote.logprobs[0].keys() == local.logprobs[0].keys()
    for token_id, logprob in local.logprobs[0].items():
        assert remote.logprobs[0][token_id] == pytest.approx(logprob, abs=1e-2)


async def test_cached_prompt_tokens_come_from_usage_details(
    openai_engine: OpenAIEngine, chat_prompt: RenderPrompt
) -> None:
    prompt = chat_prompt(f"{time.time_ns()} " + "The sky is blue. " * 120)
    spec = SamplingSpec(max_tokens=1, temperature=0.0)

    first = await openai_engine.generate(prompt, spec, "o-cache-1")
    second = await openai_engine.generate(prompt, spec, "o-cache-2")

    assert first.cached_prompt_tokens == 0
    assert second.cached_prompt_tokens >= len(prompt) // 2


async def test_cancelling_the_caller_aborts_the_request_on_the_server(
    openai_engine: OpenAIEngine, vllm_server: ApiServer, chat_prompt: RenderPrompt
) -> None:
    spec = SamplingSpec(max_tokens=1900, temperature=1.0)
    task = asyncio.create_task(openai_engine.generate(chat_prompt(STORY), spec, "o-cancel"))
    await wait_until(lambda: running_requests(vllm_server) == 1, timeout_s=20)

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    waited = await wait_until(lambda: running_requests(vllm_server) == 0, timeout_s=5)
    print(f"server aborted the request {waited:.2f} s after the client left")


async def test_request_timeout_is_unavailable(
    vllm_server: ApiServer, model_dir: Path, chat_prompt: RenderPrompt
) -> None:
    settings = engine_settings(kind="openai", base_url=vllm_server.base_url, request_timeout_s=0.5)
    engine = OpenAIEngine(settings, str(model_dir))
    try:
        with pytest.raises(Unavailable, match="no answer within"):
            await engine.generate(chat_prompt(STORY), SamplingSpec(max_tokens=1900), "o-slow")
    finally:
        await engine.close()
    await wait_until(lambda: running_requests(vllm_server) == 0, timeout_s=5)


async def test_unknown_model_name_is_unavailable(vllm_server: ApiServer, model_dir: Path) -> None:
    settings = engine_settings(
        kind="openai", base_url=vllm_server.base_url, served_model_name="no-such-model"
    )
    engine = OpenAIEngine(settings, str(model_dir))
    try:
        with pytest.raises(Unavailable, match="HTTP 404"):
            await engine.start()
    finally:
        await engine.close()


async def test_prompt_longer_than_the_context_is_invalid_input(
    openai_engine: OpenAIEngine,
) -> None:
    with pytest.raises(InvalidInput):
        await openai_engine.generate([42] * 2100, SamplingSpec(max_tokens=4), "o-too-long")


async def test_unreachable_server_is_unavailable(model_dir: Path) -> None:
    base_url = f"http://127.0.0.1:{free_port()}/v1"
    engine = OpenAIEngine(
        engine_settings(kind="openai", base_url=base_url), str(model_dir), ready_timeout_s=1.0
    )
    try:
        with pytest.raises(Unavailable, match="not healthy"):
            await engine.start()
        with pytest.raises(Unavailable, match="ConnectError"):
            await engine.generate([1, 2, 3], SamplingSpec(max_tokens=1), "o-nowhere")
    finally:
        await engine.close()

"""Engine fixtures: one in-process vLLM engine and one real vLLM api_server per session.

Both load SmolLM2-135M-Instruct (`rrm model` converts it) with a 1 GiB KV cache each, so the two
fit beside each other on a 2-core, 24 GiB machine.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from transformers import AutoTokenizer, PreTrainedTokenizerBase

from reward_service.engine.openai_engine import OpenAIEngine
from reward_service.engine.vllm_engine import VLLMEngine
from tests.engine.support import (
    CACHE_DIR,
    MODEL_DIR,
    ApiServer,
    RenderPrompt,
    engine_settings,
    vllm_api_server,
)


@pytest.fixture(scope="session")
def model_dir() -> Path:
    if not (MODEL_DIR / "config.json").exists():
        pytest.skip(f"{MODEL_DIR} missing: run `rrm model` to convert the CPU default judge")
    return MODEL_DIR


@pytest.fixture(scope="session")
def tokenizer(model_dir: Path) -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(model_dir)


@pytest.fixture(scope="session")
def chat_prompt(tokenizer: PreTrainedTokenizerBase) -> RenderPrompt:
    """Token ids of a one-turn chat, rendered the way the judge renders its prompts."""

    def render(user: str) -> list[int]:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": user}], add_generation_prompt=True, tokenize=False
        )
        return list(tokenizer.encode(text, add_special_tokens=False))

    return render


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def vllm_engine(model_dir: Path) -> AsyncIterator[VLLMEngine]:
    """The started in-process engine, shared by the whole session (a load is ~25 s)."""
    engine = VLLMEngine(engine_settings(), str(model_dir), cache_dir=CACHE_DIR)
    await engine.start()
    yield engine
    await engine.close()


@pytest.fixture(scope="session")
def vllm_server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """A real vLLM api_server shared by the session (a start is ~25-45 s); its log is in the
    pytest temp dir. Tests that kill a server start their own."""
    log_path = tmp_path_factory.mktemp("vllm-server") / "server.log"
    with vllm_api_server(model_dir, log_path) as server:
        yield server


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def openai_engine(vllm_server: ApiServer, model_dir: Path) -> AsyncIterator[OpenAIEngine]:
    """The OpenAI-compatible engine on the module's api_server."""
    engine = OpenAIEngine(
        engine_settings(kind="openai", base_url=vllm_server.base_url), str(model_dir)
    )
    await engine.start()
    yield engine
    await engine.close()

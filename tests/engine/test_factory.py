"""`build_engine` picks the engine class from settings (nothing is started here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from reward_service.engine import build_engine
from reward_service.engine.openai_engine import OpenAIEngine
from reward_service.engine.vllm_engine import VLLMEngine
from reward_service.settings import EngineKind, EngineSettings, Settings


def test_vllm_kind_builds_the_in_process_engine_on_the_default_model(tmp_path: Path) -> None:
    engine = build_engine(Settings(cache_dir=tmp_path, engine=EngineSettings()))

    assert isinstance(engine, VLLMEngine)
    assert engine.model_id == "SmolLM2-135M-Instruct"


async def test_openai_kind_builds_the_http_engine() -> None:
    settings = Settings(
        engine=EngineSettings(
            kind=EngineKind.OPENAI,
            model="Reward-Reasoning/RRM-7B",
            base_url="http://127.0.0.1:8000/v1",
        )
    )
    engine = build_engine(settings)
    try:
        assert isinstance(engine, OpenAIEngine)
        assert engine.model_id == "RRM-7B"
        assert engine.health_url == "http://127.0.0.1:8000/health"
    finally:
        await engine.close()


def test_openai_kind_without_a_base_url_is_refused() -> None:
    with pytest.raises(ValueError, match="base_url"):
        build_engine(Settings(engine=EngineSettings(kind=EngineKind.OPENAI)))

"""Builds the configured engine; the only place that maps `EngineKind` to a class."""

from __future__ import annotations

from reward_service.engine.base import Engine
from reward_service.settings import EngineKind, Settings


def build_engine(settings: Settings) -> Engine:
    """The engine `settings.engine.kind` names, not yet started.

    Imports are local so that choosing the openai engine never imports vLLM (and torch).
    """
    kind = settings.engine.kind
    if kind is EngineKind.VLLM:
        from reward_service.engine.vllm_engine import VLLMEngine

        return VLLMEngine(settings.engine, settings.model_path(), cache_dir=settings.cache_dir)
    if kind is EngineKind.OPENAI:
        from reward_service.engine.openai_engine import OpenAIEngine

        return OpenAIEngine(settings.engine, settings.model_path())
    raise ValueError(f"unknown engine kind {kind!r}")

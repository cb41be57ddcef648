"""Inference engines behind one `Engine` contract: in-process vLLM or a remote OpenAI server."""

from reward_service.engine.base import Engine, Generation, SamplingSpec
from reward_service.engine.factory import build_engine

__all__ = ["Engine", "Generation", "SamplingSpec", "build_engine"]

"""Adapter fixtures: the scripted service stack (fast), OpenRLHF's rollout code, the tokenizer."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from transformers import AutoTokenizer

from reward_service.domain import VoteResult, VoteTask
from tests.adapter.harness import MODEL_DIR, Rollout, openrlhf_rollout
from tests.gateway.conftest import Stack, close_stack, make_stack


def address_of(stack: Stack) -> str:
    return f"127.0.0.1:{stack.server.port}"


def fail_every_vote(task: VoteTask) -> VoteResult:
    return VoteResult.failed("engine exploded (scripted)")


@pytest.fixture
async def scripted() -> AsyncIterator[Stack]:
    """The real gateway + queue + worker on 127.0.0.1, judged by the ScriptedRunner (the longer
    response wins, p = 0.9)."""
    stack = await make_stack()
    yield stack
    await close_stack(stack)


@pytest.fixture
async def failing() -> AsyncIterator[Stack]:
    """The same stack whose every judgment fails: Score and Compare answer ABORTED."""
    stack = await make_stack()
    stack.runner.script = fail_every_vote
    yield stack
    await close_stack(stack)


@pytest.fixture(scope="session")
def tokenizer() -> Any:
    if not (MODEL_DIR / "tokenizer.json").exists():
        pytest.skip(f"{MODEL_DIR} missing: run `rrm model`")
    return AutoTokenizer.from_pretrained(MODEL_DIR)


@pytest.fixture(scope="session")
def rollout() -> Iterator[Rollout]:
    with openrlhf_rollout() as loaded:
        yield loaded

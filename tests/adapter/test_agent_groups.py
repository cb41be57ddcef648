"""The agent's groups of fewer than two distinct samples (a timeout, a lost sample, identical
answers), through OpenRLHF 0.11.2's agent loader and rollout actor: judged against the label's
reference when it has one, else the configured outcome, counted and logged with the prompt;
never a silent 0."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from tests.adapter.conftest import address_of
from tests.adapter.harness import AGENT_FILE, Rollout, ScriptedPolicy, chat_prompt
from tests.adapter.rollouts import generate_samples
from tests.gateway.conftest import Stack

LONG, SHORT = "a long and careful answer", "ok"


async def rollouts(
    rollout: Rollout, tokenizer: Any, texts: list[str], label: object
) -> tuple[Any, list[dict[str, Any]]]:
    executor = rollout.load_agent_executor(str(AGENT_FILE))
    actor = rollout.actor(executor, ScriptedPolicy(tokenizer, texts))
    prompt = chat_prompt(tokenizer, "Explain rain.")
    outputs = await generate_samples(actor, tokenizer, prompt, len(texts), label)
    return executor, outputs


async def test_a_lone_sample_is_judged_against_the_labels_reference(
    scripted: Stack, rollout: Rollout, tokenizer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RRM_ADDRESS", address_of(scripted))
    label = {"reference": SHORT}
    executor, [output] = await rollouts(rollout, tokenizer, [LONG], label)
    assert output["reward"] == pytest.approx(0.9)  # the scripted judge: the longer one wins
    assert output["extra_logs"]["rrm_group_size"] == 1.0
    assert executor.undersized == {"reference": 1}


async def test_a_lone_sample_without_reference_gets_the_configured_neutral_value(
    scripted: Stack,
    rollout: Rollout,
    tokenizer: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("RRM_ADDRESS", address_of(scripted))
    monkeypatch.setenv("RRM_NEUTRAL_REWARD", "0.25")
    before = len(scripted.runner.calls)
    with caplog.at_level(logging.WARNING):
        executor, [output] = await rollouts(rollout, tokenizer, [LONG], "")
    assert output["reward"] == 0.25 and output["scores"] == 0.5
    assert executor.undersized == {"neutral": 1}
    assert "group of prompt 'Explain rain.' closed with 1 sample" in caplog.text
    assert len(scripted.runner.calls) == before  # nothing was judged for it


async def test_a_lone_sample_fails_its_rollout_when_configured(
    scripted: Stack, rollout: Rollout, tokenizer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RRM_ADDRESS", address_of(scripted))
    monkeypatch.setenv("RRM_UNDERSIZED", "error")
    with pytest.raises(RuntimeError, match=r"group of prompt 'Explain rain\.' closed with 1"):
        await rollouts(rollout, tokenizer, [LONG], "")


async def test_identical_samples_tie_without_a_judgment(
    scripted: Stack, rollout: Rollout, tokenizer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RRM_ADDRESS", address_of(scripted))
    before = len(scripted.runner.calls)
    executor, outputs = await rollouts(rollout, tokenizer, [LONG, LONG, LONG], "")
    assert [o["reward"] for o in outputs] == [0.0] * 3
    assert [o["extra_logs"]["rrm_group_size"] for o in outputs] == [3.0] * 3
    assert executor.undersized == {"tie": 1} and len(scripted.runner.calls) == before

"""The reference-mode reward function and the agent as OpenRLHF 0.11.2 runs them: concurrency
beyond `asyncio.to_thread`'s default pool, and failures that the trainer's log names (rrm-serve,
the endpoint, the gRPC status and message) instead of OpenRLHF's later missing-reward errors."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from openrlhf.utils.agent import SingleTurnAgentExecutor

from policy_adapter import JudgmentFailed, ServiceUnavailable
from reward_service.domain import VoteResult
from tests.adapter.conftest import address_of
from tests.adapter.harness import (
    AGENT_FILE,
    REWARD_FUNC_FILE,
    Rollout,
    ScriptedPolicy,
    chat_prompt,
    free_socket,
)
from tests.adapter.rollouts import generate_samples
from tests.gateway.conftest import Stack, close_stack, make_stack

LONG, SHORT = "a long and careful answer", "ok"


async def rollouts(actor: Any, tokenizer: Any, n: int, label: str) -> list[dict[str, Any]]:
    return await generate_samples(
        actor, tokenizer, chat_prompt(tokenizer, "Explain rain."), n, label
    )


@pytest.fixture
async def default_pool_restored() -> AsyncIterator[None]:
    """Loading the reward file widens the running loop's default pool; the test session's loop
    gets a default-sized one back afterwards."""
    yield
    asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor())


@pytest.fixture
def openrlhf_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """OpenRLHF's agent logger does not propagate: hand it caplog's handler too."""
    logger = logging.getLogger("openrlhf.utils.agent")
    logger.addHandler(caplog.handler)
    with caplog.at_level(logging.INFO):
        yield caplog
    logger.removeHandler(caplog.handler)


class PeakInFlight:
    """Wraps the scripted runner (a TEST DOUBLE for the judge): every vote waits until `gate`
    votes are in flight at once (or `patience_s` passed), and the peak is recorded."""

    def __init__(self, stack: Stack, gate: int, patience_s: float = 15.0) -> None:
        self.run = stack.runner.run
        self.gate, self.patience_s = gate, patience_s
        self.in_flight = self.peak = 0
        self.full = asyncio.Event()
        stack.runner.run = self.wrapped  # type: ignore[method-assign]

    async def wrapped(self, *args: Any, **kwargs: Any) -> VoteResult:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        if self.in_flight >= self.gate:
            self.full.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.full.wait(), self.patience_s)
        try:
            return await self.run(*args, **kwargs)
        finally:
            self.in_flight -= 1


@pytest.fixture
async def wide() -> AsyncIterator[Stack]:
    """The scripted stack with room for many votes at once in its worker."""
    stack = await make_stack(max_in_flight=128)
    yield stack
    await close_stack(stack)


async def test_reward_func_keeps_more_samples_in_flight_than_the_default_pool(
    wide: Stack, default_pool_restored: None, tokenizer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    samples = 40  # the default pool here: min(32, cores + 4) threads
    monkeypatch.setenv("RRM_ADDRESS", address_of(wide))
    monkeypatch.setenv("RRM_REWARD_CONCURRENCY", "64")
    executor = SingleTurnAgentExecutor(remote_rm_url=str(REWARD_FUNC_FILE))
    peak = PeakInFlight(wide, gate=samples)
    prompt = chat_prompt(tokenizer, "Explain rain.")
    # as OpenRLHF's execute() does for every sample of a batch: one to_thread call per sample
    calls = [
        executor._fetch_rewards_via_func([prompt + f"{LONG} {i}"], [prompt], [SHORT])
        for i in range(samples)
    ]
    results = await asyncio.gather(*calls)
    assert peak.peak == samples
    assert [r[0]["rewards"] for r in results] == [pytest.approx([0.9])] * samples


async def test_reward_concurrency_sizes_the_pool(
    scripted: Stack, default_pool_restored: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RRM_ADDRESS", address_of(scripted))
    monkeypatch.setenv("RRM_REWARD_CONCURRENCY", "3")
    executor = SingleTurnAgentExecutor(remote_rm_url=str(REWARD_FUNC_FILE))
    peak = PeakInFlight(scripted, gate=4, patience_s=2.0)
    calls = [executor._fetch_rewards_via_func([f"p {LONG} {i}"], ["p"], [SHORT]) for i in range(6)]
    await asyncio.gather(*calls)
    assert peak.peak == 3


async def test_reward_func_failure_names_rrm_serve_the_endpoint_and_the_status(
    failing: Stack,
    rollout: Rollout,
    tokenizer: Any,
    monkeypatch: pytest.MonkeyPatch,
    openrlhf_log: pytest.LogCaptureFixture,
) -> None:
    address = address_of(failing)
    monkeypatch.setenv("RRM_ADDRESS", address)
    executor = SingleTurnAgentExecutor(remote_rm_url=str(REWARD_FUNC_FILE))
    actor = rollout.actor(executor, ScriptedPolicy(tokenizer, [LONG]))
    [output] = await rollouts(actor, tokenizer, 1, label=SHORT)
    assert output["reward"] is None  # OpenRLHF caught it: no reward, never a made-up one
    [ours] = [r for r in openrlhf_log.records if r.levelno == logging.ERROR]
    assert ours.getMessage() == (
        f"rrm-serve at {address} could not reward a sample against its reference "
        "(Score, reference mode): gRPC status ABORTED: engine exploded (scripted)"
    )
    # OpenRLHF's own line (INFO) carries the same words, from the exception's message
    [theirs] = [r for r in openrlhf_log.records if "Failed to fetch" in r.getMessage()]
    assert f"rrm-serve at {address}" in theirs.getMessage()
    assert "engine exploded (scripted)" in theirs.getMessage()


async def test_reward_func_unreachable_service_is_named(
    tokenizer: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with free_socket() as sock:  # nothing listens there
        address = f"127.0.0.1:{sock.getsockname()[1]}"
    monkeypatch.setenv("RRM_ADDRESS", address)
    monkeypatch.setenv("RRM_MAX_ATTEMPTS", "1")
    executor = SingleTurnAgentExecutor(remote_rm_url=str(REWARD_FUNC_FILE))
    prompt = chat_prompt(tokenizer, "Explain rain.")
    with caplog.at_level(logging.ERROR), pytest.raises(ServiceUnavailable) as raised:
        await executor._fetch_rewards_via_func([prompt + LONG], [prompt], [SHORT])
    assert f"rrm-serve at {address} could not reward a sample" in str(raised.value)
    assert f"rrm-serve at {address}" in caplog.text and "gRPC status UNAVAILABLE" in caplog.text


async def test_agent_failure_names_rrm_serve_the_endpoint_and_the_status(
    failing: Stack,
    rollout: Rollout,
    tokenizer: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    address = address_of(failing)
    monkeypatch.setenv("RRM_ADDRESS", address)
    executor = rollout.load_agent_executor(str(AGENT_FILE))
    actor = rollout.actor(executor, ScriptedPolicy(tokenizer, [SHORT, LONG]))
    with caplog.at_level(logging.ERROR), pytest.raises(JudgmentFailed) as raised:
        await rollouts(actor, tokenizer, 2, label="")
    line = (
        f"rrm-serve at {address} could not rank a group of 2 samples (Score, group mode): "
        "gRPC status ABORTED: engine exploded (scripted)"
    )
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR] == [line]
    assert f"rrm-serve at {address}" in str(raised.value)


async def test_reward_func_without_an_address_says_so(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("RRM_ADDRESS", raising=False)
    executor = SingleTurnAgentExecutor(remote_rm_url=str(REWARD_FUNC_FILE))
    with caplog.at_level(logging.ERROR), pytest.raises(ValueError, match="RRM_ADDRESS"):
        await executor._fetch_rewards_via_func(["p x"], ["p"], [SHORT])
    assert "rrm-serve: set RRM_ADDRESS" in caplog.text

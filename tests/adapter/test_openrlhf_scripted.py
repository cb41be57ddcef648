"""The three OpenRLHF integrations driven by OpenRLHF 0.11.2's own code (its reward-func loader
and HTTP client in `SingleTurnAgentExecutor`, its agent loader and `RolloutRayActor.
generate_responses`, its `_process_response_into_experience`) against the scripted service
stack: cohorts, timeouts, idempotency and failures, fast."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from typing import Any

import httpx
import pytest
from openrlhf.utils.agent import SingleTurnAgentExecutor

from policy_adapter import AsyncRewardClient, JudgmentFailed, RetryPolicy, Strategy
from policy_adapter.group import GROUP_LOG_KEYS, REFERENCE_LOG_KEYS
from policy_adapter.remote_rm import RemoteRMConfig, create_app
from tests.adapter.conftest import address_of
from tests.adapter.harness import (
    AGENT_FILE,
    REWARD_FUNC_FILE,
    Rollout,
    ScriptedPolicy,
    chat_prompt,
    free_socket,
    serving,
)
from tests.adapter.rollouts import generate_samples
from tests.gateway.conftest import Stack

LONGEST, MIDDLE, SHORT = "a long and careful answer", "a medium one", "ok"


async def generate(
    actor: Any, tokenizer: Any, user: str, n: int, label: object = ""
) -> list[dict[str, Any]]:
    return await generate_samples(actor, tokenizer, chat_prompt(tokenizer, user), n, label)


# ---- (b) reward_func, reference mode ----


async def test_reward_func_loaded_by_openrlhf_rewards_against_the_reference(
    scripted: Stack, rollout: Rollout, tokenizer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RRM_ADDRESS", address_of(scripted))
    executor = SingleTurnAgentExecutor(remote_rm_url=str(REWARD_FUNC_FILE))
    assert executor.reward_func is not None  # OpenRLHF's importlib loader found reward_func

    prompt = chat_prompt(tokenizer, "Explain rain.")
    queries = [prompt + LONGEST + "<|im_end|>", prompt + SHORT + "<|im_end|>"]
    results = await executor._fetch_rewards_via_func(queries, [prompt] * 2, [MIDDLE] * 2)
    assert [r["rewards"] for r in results] == [pytest.approx([0.9]), pytest.approx([0.1])]
    assert set(results[0]["extra_logs"]) == set(REFERENCE_LOG_KEYS)

    # the whole rollout path: generation, OpenRLHF's reward call, the Experience it builds
    actor = rollout.actor(executor, ScriptedPolicy(tokenizer, [LONGEST, SHORT]))
    outputs = await generate(actor, tokenizer, "Explain rain.", 2, label=MIDDLE)
    assert [o["reward"] for o in outputs] == [pytest.approx([0.9]), pytest.approx([0.1])]
    experience = rollout.experience(outputs[0])
    assert experience.rewards.flatten().tolist() == pytest.approx([0.9])
    assert experience.info["rrm_p_win"].flatten().tolist() == pytest.approx([0.9])


async def test_reward_func_failure_raises_never_a_reward(
    failing: Stack, rollout: Rollout, tokenizer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RRM_ADDRESS", address_of(failing))
    executor = SingleTurnAgentExecutor(remote_rm_url=str(REWARD_FUNC_FILE))
    prompt = chat_prompt(tokenizer, "Explain rain.")
    with pytest.raises(JudgmentFailed):
        await executor._fetch_rewards_via_func([prompt + LONGEST], [prompt], [MIDDLE])
    # OpenRLHF's execute() logs the error and leaves the reward unset (None, never 0): its
    # trainer then stops for want of a reward
    actor = rollout.actor(executor, ScriptedPolicy(tokenizer, [LONGEST]))
    [output] = await generate(actor, tokenizer, "Explain rain.", 1, label=MIDDLE)
    assert output["reward"] is None and rollout.experience(output).rewards is None


async def test_reward_func_needs_the_reference_label(
    scripted: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RRM_ADDRESS", address_of(scripted))
    executor = SingleTurnAgentExecutor(remote_rm_url=str(REWARD_FUNC_FILE))
    with pytest.raises(ValueError, match="reference"):
        await executor._fetch_rewards_via_func(["p x"], ["p"], [""])


# ---- (c) the remote RM over HTTP ----


def rm_app(stack: Stack, **config: Any) -> Any:
    client = AsyncRewardClient(address_of(stack), retry=RetryPolicy(max_attempts=1))
    return create_app(RemoteRMConfig(**config), client)


async def test_remote_rm_ranks_a_cohort_once_and_answers_every_sample(
    scripted: Stack, rollout: Rollout, tokenizer: Any
) -> None:
    app = rm_app(scripted, n=3, strategy=Strategy.WIN_RATE)
    async with serving(app) as url:
        executor = SingleTurnAgentExecutor([f"{url}/get_reward"])
        actor = rollout.actor(executor, ScriptedPolicy(tokenizer, [MIDDLE, LONGEST, SHORT]))
        before = len(scripted.runner.calls)
        outputs = await generate(actor, tokenizer, "Explain rain.", 3)
        judged = len(scripted.runner.calls) - before
        rewards = [o["reward"][0] for o in outputs]
        assert rewards[1] > rewards[0] > rewards[2]  # by length: the scripted judge's taste
        assert judged == 3  # one round robin of 3: 3 matches, for the three requests together
        assert set(outputs[0]["extra_logs"]) == set(GROUP_LOG_KEYS)
        assert [o["scores"][0] for o in outputs] == [0.5, 1.0, 0.0]  # win rates
        assert app.state.rm.cohorts.judged_cohorts == 1

        experience = rollout.experience(outputs[1])
        assert experience.rewards.flatten().tolist() == pytest.approx([rewards[1]])
        assert experience.info["rrm_wins"].flatten().tolist() == [2.0]


async def test_remote_rm_flushes_a_partial_cohort_and_keys_groups_by_label(
    scripted: Stack, tokenizer: Any
) -> None:
    app = rm_app(scripted, n=4, flush_timeout_s=0.3)
    async with serving(app) as url:
        executor = SingleTurnAgentExecutor([f"{url}/get_reward"])
        prompt = chat_prompt(tokenizer, "Name a fruit.")
        started = time.monotonic()
        calls = [
            executor._fetch_rewards_via_http([prompt + text], [prompt], [{"group": group}])
            for group, text in (("g1", LONGEST), ("g1", SHORT), ("g2", SHORT), ("g2", MIDDLE))
        ]
        results = [r[0]["rewards"][0] for r in await asyncio.gather(*calls)]
        assert time.monotonic() - started >= 0.3
        assert results[0] > results[1] and results[3] > results[2]
        assert app.state.rm.cohorts.timed_out_cohorts == 2  # two groups of 2, neither reached 4


async def test_remote_rm_reference_mode(scripted: Stack, tokenizer: Any) -> None:
    async with serving(rm_app(scripted, mode="reference")) as url, httpx.AsyncClient() as http:
        prompt = chat_prompt(tokenizer, "Name a fruit.")
        reply = await http.post(
            f"{url}/get_reward",
            json={"query": [prompt + LONGEST], "prompts": [prompt], "labels": [MIDDLE]},
        )
        assert reply.status_code == 200
        assert reply.json()["rewards"] == pytest.approx([0.9])


async def test_remote_rm_failure_is_a_non_2xx_answer(
    failing: Stack, tokenizer: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async with serving(rm_app(failing, n=2)) as url:
        prompt = chat_prompt(tokenizer, "Name a fruit.")
        # two samples in one request fill the cohort of 2 (OpenRLHF sends one at a time)
        body = {"query": [prompt + SHORT, prompt + LONGEST], "prompts": [prompt] * 2}
        body["labels"] = ["", ""]
        async with httpx.AsyncClient() as http:
            reply = await http.post(f"{url}/get_reward", json=body)
            assert reply.status_code == 502
            assert reply.json()["error"] == "ABORTED" and "rewards" not in reply.json()
            bad = await http.post(f"{url}/get_reward", json={"query": "not a list"})
            assert bad.status_code == 400
        # OpenRLHF's client retries 5 times, 1 s apart, then raises
        executor = SingleTurnAgentExecutor([f"{url}/get_reward"])
        with caplog.at_level(logging.INFO), pytest.raises(RuntimeError, match="5 times"):
            await executor._fetch_rewards_via_http(body["query"], body["prompts"], body["labels"])


async def test_remote_rm_health(scripted: Stack) -> None:
    async with serving(rm_app(scripted)) as url, httpx.AsyncClient() as http:
        reply = await http.get(f"{url}/health")
        assert reply.status_code == 200 and reply.json()["model"] == "scripted"
    with free_socket() as sock:  # nothing listens there
        client = AsyncRewardClient(
            f"127.0.0.1:{sock.getsockname()[1]}", retry=RetryPolicy(max_attempts=1)
        )
        app = create_app(RemoteRMConfig(), client)
        async with serving(app) as url, httpx.AsyncClient() as http:
            assert (await http.get(f"{url}/health")).status_code == 503


# ---- (a) the agent executor ----


async def test_agent_executor_ranks_each_prompts_samples_once(
    scripted: Stack, rollout: Rollout, tokenizer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RRM_ADDRESS", address_of(scripted))
    monkeypatch.setenv("RRM_STRATEGY", "win_rate")
    monkeypatch.setenv("RRM_N_SAMPLES_PER_PROMPT", "4")
    monkeypatch.setenv("RRM_GROUP_TIMEOUT_S", "10")
    executor = rollout.load_agent_executor(str(AGENT_FILE))  # OpenRLHF's loader and checks
    policy = ScriptedPolicy(tokenizer, [SHORT, LONGEST, MIDDLE, "tiny"])
    actor = rollout.actor(executor, policy)

    before = len(scripted.runner.calls)
    started = time.monotonic()
    # a training prompt (4 samples) and an eval-sized one (2 samples) at once: the group size
    # is learned per call, so the 2-sample group does not wait for the timeout
    train, small = await asyncio.gather(
        generate(actor, tokenizer, "Explain rain.", 4), generate(actor, tokenizer, "Hi?", 2)
    )
    assert time.monotonic() - started < executor.settings.group_timeout_s
    assert len(scripted.runner.calls) - before == 6 + 1  # one round robin of 4, one match of 2
    texts = [tokenizer.decode(o["observation_tokens"][o["action_ranges"][0][0] :]) for o in train]
    by_length = sorted(range(4), key=lambda i: len(texts[i]))
    rewards = [o["reward"] for o in train]
    assert sorted(range(4), key=lambda i: rewards[i]) == by_length
    assert all(set(o["extra_logs"]) == set(GROUP_LOG_KEYS) for o in train + small)
    assert [o["extra_logs"]["rrm_group_size"] for o in train + small] == [4.0] * 4 + [2.0] * 2
    experience = rollout.experience(train[by_length[-1]])
    assert experience.rewards.tolist() == pytest.approx([max(rewards)])
    assert experience.scores.tolist() == [1.0] and experience.info["rrm_wins"].tolist() == [3.0]


async def test_agent_executor_judges_stragglers_apart(
    scripted: Stack,
    rollout: Rollout,
    tokenizer: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("RRM_ADDRESS", address_of(scripted))
    monkeypatch.setenv("RRM_GROUP_TIMEOUT_S", "0.3")
    executor = rollout.load_agent_executor(str(AGENT_FILE))
    policy = ScriptedPolicy(
        tokenizer, [SHORT, MIDDLE, LONGEST], latency=lambda t: 1.0 if t == LONGEST else 0.0
    )
    with caplog.at_level(logging.WARNING):
        outputs = await generate(rollout.actor(executor, policy), tokenizer, "Explain rain.", 3)
    assert outputs[1]["reward"] > outputs[0]["reward"]
    assert outputs[2]["reward"] == 0.0 and outputs[2]["extra_logs"]["rrm_group_size"] == 1.0
    assert "1 still generating" in caplog.text and executor.groups.timed_out_groups == 1


async def test_agent_executor_failure_fails_the_rollout(
    failing: Stack, rollout: Rollout, tokenizer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RRM_ADDRESS", address_of(failing))
    executor = rollout.load_agent_executor(str(AGENT_FILE))
    actor = rollout.actor(executor, ScriptedPolicy(tokenizer, [SHORT, LONGEST]))
    with pytest.raises(JudgmentFailed):
        await generate(actor, tokenizer, "Explain rain.", 2)


def test_agent_executor_needs_an_address(rollout: Rollout, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RRM_ADDRESS", raising=False)
    with pytest.raises(ValueError, match="RRM_ADDRESS"):
        rollout.load_agent_executor(str(AGENT_FILE))


async def test_remote_rm_command(scripted: Stack, tokenizer: Any) -> None:
    """`rrm remote-rm` as OpenRLHF's users start it (a process), spoken to by OpenRLHF."""
    with free_socket() as sock:
        port = sock.getsockname()[1]
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "policy_adapter.cli", "remote-rm",
        "--target", address_of(scripted), "--host", "127.0.0.1", "--port", str(port),
        "--n", "2", "--flush-timeout", "5", "--strategy", "knockout",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient() as http:
            for _ in range(300):
                try:
                    if (await http.get(f"{url}/health")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
        executor = SingleTurnAgentExecutor([f"{url}/get_reward"])
        prompt = chat_prompt(tokenizer, "Name a fruit.")
        replies = await asyncio.gather(
            *(
                executor._fetch_rewards_via_http([prompt + t], [prompt], [""])
                for t in (SHORT, MIDDLE)
            )
        )
        assert [r[0]["rewards"] for r in replies] == [[-1.0], [1.0]]
    finally:
        process.terminate()
        _, stderr = await process.communicate()
    # uvicorn shuts down gracefully, then re-raises SIGTERM: exit by the signal is expected
    assert "Application shutdown complete" in stderr.decode(), stderr.decode()[-2000:]

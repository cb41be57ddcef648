"""The adapter against the REAL service (`rrm serve`, vLLM on the CPU judge SmolLM2-135M) through
OpenRLHF 0.11.2's own code, and best-of-N with a real vLLM policy server. Judgments are few and
short (16-token reasoning budget): the CPU judge makes about three a second."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from openrlhf.datasets import RewardDataset
from openrlhf.datasets.utils import blending_datasets
from openrlhf.utils.agent import SingleTurnAgentExecutor

from policy_adapter import AsyncRewardClient, JudgeOptions, ParseStatus, Strategy, Winner
from policy_adapter.bestofn import (
    BestOfNConfig,
    PolicySampler,
    SamplingConfig,
    read_rows,
    run_bestofn,
)
from policy_adapter.group import GROUP_LOG_KEYS, REFERENCE_LOG_KEYS
from policy_adapter.remote_rm import RemoteRMConfig, create_app
from reward_service.testing.serve_process import RunningService
from tests.adapter.harness import (
    AGENT_FILE,
    REWARD_FUNC_FILE,
    PolicyServer,
    Rollout,
    ScriptedPolicy,
    chat_prompt,
    policy_server,
    sampling_params,
    serving,
)

pytestmark = pytest.mark.engine

BUDGET = 16
OPTIONS = JudgeOptions(max_reasoning_tokens=BUDGET)
QUESTION = "How do I keep my houseplants alive?"
ANSWERS = [
    "Water them when the top inch of soil is dry, give them bright indirect light, and use "
    "pots with drainage holes.",
    "Plants are green.",
    "Check the light, water and drainage first; most houseplants die from overwatering.",
]
DECIDED = (ParseStatus.OK, ParseStatus.BUDGET_FORCED)


@pytest.fixture
def judge_env(cpu_service: RunningService, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("RRM_ADDRESS", cpu_service.address)
    monkeypatch.setenv("RRM_MAX_REASONING_TOKENS", str(BUDGET))
    return cpu_service.address


async def test_client_calls_on_the_cpu_judge(cpu_service: RunningService) -> None:
    async with AsyncRewardClient(cpu_service.address, options=OPTIONS) as client:
        info = await client.info()
        assert info.model == "SmolLM2-135M-Instruct" and info.limits.max_votes > 0

        compared = await client.compare(QUESTION, ANSWERS[0], ANSWERS[1])
        assert compared.winner in (Winner.A, Winner.B) and 0.0 <= compared.p_a <= 1.0
        assert compared.votes[0].parse_status in DECIDED

        ranked = await client.rank(QUESTION, ANSWERS, strategy=Strategy.KNOCKOUT)
        assert sorted(ranked.ranking) == [0, 1, 2] and ranked.comparisons == 2

        reference = await client.score(QUESTION, ANSWERS[1:], reference=ANSWERS[0])
        assert len(reference.rewards) == 2 and all(0 <= r <= 1 for r in reference.rewards)

        group = await client.score(QUESTION, ANSWERS, strategy=Strategy.KNOCKOUT)
        assert group.ranking is not None and len(group.rewards) == 3
        assert max(group.rewards) == group.rewards[group.ranking.winner]


async def test_reward_func_through_openrlhf(
    judge_env: str, rollout: Rollout, tokenizer: Any
) -> None:
    executor = SingleTurnAgentExecutor(remote_rm_url=str(REWARD_FUNC_FILE))
    actor = rollout.actor(executor, ScriptedPolicy(tokenizer, ANSWERS[1:]))
    outputs = await actor.generate_responses(
        prompt=chat_prompt(tokenizer, QUESTION),
        label=ANSWERS[0],  # the reference answer (--data.label_key)
        sampling_params=sampling_params(),
        max_length=512,
        hf_tokenizer=tokenizer,
        num_samples=2,
    )
    for output in outputs:
        [reward] = output["reward"]
        assert 0.0 <= reward <= 1.0 and output["scores"] == [reward]
        assert set(output["extra_logs"]) == set(REFERENCE_LOG_KEYS)
        assert output["extra_logs"]["rrm_votes"] == [1.0]
        assert rollout.experience(output).rewards.flatten().tolist() == pytest.approx([reward])


async def test_remote_rm_through_openrlhfs_http_client(
    cpu_service: RunningService, rollout: Rollout, tokenizer: Any
) -> None:
    client = AsyncRewardClient(cpu_service.address, options=OPTIONS)
    app = create_app(RemoteRMConfig(n=3, strategy=Strategy.KNOCKOUT), client)
    async with serving(app) as url:
        executor = SingleTurnAgentExecutor([f"{url}/get_reward"])
        actor = rollout.actor(executor, ScriptedPolicy(tokenizer, ANSWERS))
        outputs = await actor.generate_responses(
            prompt=chat_prompt(tokenizer, QUESTION),
            label="",
            sampling_params=sampling_params(),
            max_length=512,
            hf_tokenizer=tokenizer,
            num_samples=3,
        )
    rewards = [o["reward"][0] for o in outputs]
    assert sorted(rewards) == [-1.0, 0.0, 1.0]  # a knockout of 3: out in round 1, final, winner
    assert all(set(o["extra_logs"]) == set(GROUP_LOG_KEYS) for o in outputs)
    assert sum(o["extra_logs"]["rrm_wins"][0] for o in outputs) == 2  # a knockout of 3
    assert app.state.rm.cohorts.judged_cohorts == 1


async def test_agent_executor_through_openrlhf(
    judge_env: str, rollout: Rollout, tokenizer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RRM_STRATEGY", "knockout")
    executor = rollout.load_agent_executor(str(AGENT_FILE))
    actor = rollout.actor(executor, ScriptedPolicy(tokenizer, ANSWERS))
    outputs = await actor.generate_responses(
        prompt=chat_prompt(tokenizer, QUESTION),
        label="",
        sampling_params=sampling_params(),
        max_length=512,
        hf_tokenizer=tokenizer,
        num_samples=3,
    )
    rewards = [o["reward"] for o in outputs]
    assert sorted(rewards) == [-1.0, 0.0, 1.0]
    assert [o["extra_logs"]["rrm_group_size"] for o in outputs] == [3.0] * 3
    assert sum(o["extra_logs"]["rrm_votes"] for o in outputs) == 2 * 2  # 2 matches, 2 players
    experiences = [rollout.experience(o) for o in outputs]
    assert [e.rewards.item() for e in experiences] == pytest.approx(rewards)


@pytest.fixture(scope="module")
def policy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PolicyServer]:
    with policy_server(tmp_path_factory.mktemp("policy")) as server:
        yield server


async def test_bestofn_samples_a_real_policy_and_writes_loadable_dpo(
    cpu_service: RunningService, policy: PolicyServer, tmp_path: Path, tokenizer: Any
) -> None:
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        "".join(
            json.dumps({"prompt": p}) + "\n"
            for p in ("Give me a tip for better sleep.", "What is a good name for a cat?")
        )
    )
    sampler = PolicySampler(SamplingConfig(policy.base_url, n=4, max_tokens=32))
    config = BestOfNConfig(out_dir=tmp_path / "out", options=OPTIONS, concurrency=2)
    async with AsyncRewardClient(cpu_service.address) as client:
        summary = await run_bestofn(read_rows(prompts), config, client, sampler)
    await sampler.close()
    assert (summary.done, summary.failed) == (2, 0), summary.errors
    assert summary.policy_tokens > 0 and summary.judge_completion_tokens > 0
    ledger = [json.loads(x) for x in (tmp_path / "out" / "rankings.jsonl").read_text().splitlines()]
    for row in ledger:
        n = len(row["responses"])
        assert 2 <= n <= 4 and len(row["matches"]) == n - 1  # a knockout of the distinct ones

    data = SimpleNamespace(
        prompt_key="prompt",
        chosen_key="chosen",
        rejected_key="rejected",
        apply_chat_template=True,
        tokenizer_chat_template=None,
    )
    strategy = SimpleNamespace(
        args=SimpleNamespace(data=data), print=lambda *a: None, is_rank_0=lambda: False
    )
    raw = blending_datasets(str(tmp_path / "out" / "dpo.jsonl"), None, strategy)
    dataset = await asyncio.to_thread(
        RewardDataset, raw, tokenizer, 1024, strategy, is_dpo=True, num_processors=1
    )
    assert len(dataset) == 2
    chosen_ids, _, rejected_ids, _, _ = dataset[0]
    assert chosen_ids.shape[1] > 0 and rejected_ids.shape[1] > 0

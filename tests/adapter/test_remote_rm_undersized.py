"""A remote-RM cohort that closes with a single sample is never silently rewarded 0.0: judged
against the label's reference, else an error or the configured neutral value; counted, logged.
The real gateway with the scripted judge (the longer response wins, p = 0.9)."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import httpx
import pytest

from policy_adapter import AsyncRewardClient, RetryPolicy
from policy_adapter.cohort_redis import RedisCohortConfig
from policy_adapter.group import GROUP_LOG_KEYS
from policy_adapter.remote_rm import RemoteRMConfig, create_app
from tests.adapter.conftest import address_of
from tests.adapter.harness import serving
from tests.gateway.conftest import Stack
from tests.support import redis_server
from tests.support.redis_server import RedisServer

redis_session = redis_server.redis_session

PROMPT = "<|im_start|>user\nWhich planet is largest?<|im_end|>\n<|im_start|>assistant\n"


def app_of(stack: Stack, **config: Any) -> Any:
    client = AsyncRewardClient(address_of(stack), retry=RetryPolicy(max_attempts=1))
    return create_app(RemoteRMConfig(n=4, flush_timeout_s=0.2, **config), client)


async def post(url: str, texts: list[str], label: object = "") -> httpx.Response:
    body: dict[str, list[Any]] = {
        "query": [PROMPT + t for t in texts],
        "prompts": [PROMPT] * len(texts),
        "labels": [label] * len(texts),
    }
    async with httpx.AsyncClient() as http:
        return await http.post(f"{url}/get_reward", json=body, timeout=30)


async def counted(url: str, outcome: str) -> float:
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"{url}/metrics")).text
    prefix = f'rrm_remote_rm_undersized_cohorts_total{{outcome="{outcome}"}}'
    [line] = [line for line in text.splitlines() if line.startswith(prefix)]
    return float(line.split()[-1])


async def test_a_lone_sample_is_an_error_naming_its_prompt_by_default(
    scripted: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    async with serving(app_of(scripted)) as url:
        with caplog.at_level(logging.WARNING):
            reply = await post(url, ["Jupiter"])
        assert reply.status_code == 422 and "rewards" not in reply.json()
        assert "Which planet is largest?" in reply.json()["message"]
        assert "Which planet is largest?" in caplog.text and "1 sample" in caplog.text
        assert await counted(url, "error") == 1.0


async def test_a_lone_sample_gets_the_configured_neutral_reward(scripted: Stack) -> None:
    async with serving(app_of(scripted, undersized="neutral", neutral_reward=0.25)) as url:
        reply = await post(url, ["Jupiter"])
        assert reply.status_code == 200
        assert reply.json()["rewards"] == [0.25] and reply.json()["scores"] == [0.5]
        assert set(reply.json()["extra_logs"]) == set(GROUP_LOG_KEYS)
        assert await counted(url, "neutral") == 1.0 and await counted(url, "error") == 0.0


async def test_a_lone_sample_is_judged_against_the_reference_its_label_carries(
    scripted: Stack,
) -> None:
    async with serving(app_of(scripted)) as url:
        label = {"reference": "Jupiter, by far"}
        longer = await post(url, ["Jupiter is the largest one"], label)
        shorter = await post(url, ["Mars"], label)
        assert longer.json()["rewards"] == pytest.approx([0.9])
        assert shorter.json()["rewards"] == pytest.approx([0.1])
        assert longer.json()["extra_logs"]["rrm_group_size"] == [1.0]
        assert await counted(url, "reference") == 2.0


async def test_identical_samples_are_a_tie(scripted: Stack) -> None:
    async with serving(app_of(scripted, neutral_reward=0.5)) as url:
        reply = await post(url, ["Jupiter"] * 4)  # the whole cohort, all the same
        assert reply.json()["rewards"] == [0.5] * 4
        assert reply.json()["extra_logs"]["rrm_group_size"] == [4.0] * 4
        assert await counted(url, "tie") == 1.0


async def test_shared_cohorts_answer_a_lone_sample_alike(
    scripted: Stack, redis_session: RedisServer
) -> None:
    """With cohorts in Redis every replica answers from the stored outcome: still a 422."""
    shared = RedisCohortConfig(namespace=uuid.uuid4().hex[:8], poll_s=0.02)
    async with serving(app_of(scripted, redis_url=redis_session.url, shared=shared)) as url:
        reply = await post(url, ["Jupiter"])
        assert reply.status_code == 422 and reply.json()["error"] == "UndersizedGroup"
        assert "Which planet is largest?" in reply.json()["message"]

"""OpenRLHF PPO/GRPO with group rewards: pass this file as `--train.agent_func_path`.

Each vLLM engine actor builds one `AgentExecutor` and runs the n samples of a prompt through it
concurrently. Every sample generates as OpenRLHF's `SingleTurnAgentExecutor` does, then waits at
a per-prompt barrier; the group is ranked once by the reward service (Score, group mode) and each
sample returns its own reward, a score and extra_logs. A failure raises out of `execute` and logs
an ERROR naming rrm-serve, the endpoint, the gRPC status and message: the rollout fails loudly
rather than train on a missing or made-up reward.

Configured by `RRM_*` variables (see `policy_adapter.settings`): RRM_ADDRESS is required;
RRM_N_SAMPLES_PER_PROMPT caps a group (0: learned from the calls), RRM_GROUP_TIMEOUT_S bounds the
wait for stragglers, RRM_STRATEGY / RRM_VOTES / RRM_MAX_REASONING_TOKENS tune the judging.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from typing import Any

from openrlhf.utils.agent import SingleTurnAgentExecutor

from policy_adapter.client import AsyncRewardClient
from policy_adapter.cohort import SampleGroups
from policy_adapter.errors import RewardServiceError, failure_line, in_context
from policy_adapter.group import SampleReward, group_sample_rewards
from policy_adapter.settings import AdapterSettings
from policy_adapter.texts import TemplateReader, conversation_of, judgeable

log = logging.getLogger(__name__)

GroupKey = tuple[str, str]  # (templated prompt, label as JSON)


def _label_key(label: object) -> str:
    return json.dumps(label, sort_keys=True, default=str)


def template_reader(hf_tokenizer: Any) -> TemplateReader:
    """Reads prompts by the policy's own chat template (none: by common templates' markers)."""

    def render(messages: list[dict[str, str]]) -> str:
        return str(
            hf_tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        )

    return TemplateReader(render)


class AgentExecutor(SingleTurnAgentExecutor):  # type: ignore[misc]
    def __init__(self, settings: AdapterSettings | None = None) -> None:
        super().__init__(remote_rm_url=None)  # generation only: the reward comes from the group
        self.settings = settings or AdapterSettings()
        if not self.settings.address:
            raise ValueError("set RRM_ADDRESS to the reward service's host:port")
        self._client: AsyncRewardClient | None = None
        self._reader: TemplateReader | None = None  # the policy's chat template, on first use
        self.groups: SampleGroups[GroupKey, SampleReward] = SampleGroups(
            self._judge,
            max_size=self.settings.n_samples_per_prompt or None,
            timeout_s=self.settings.group_timeout_s,
        )

    @property
    def client(self) -> AsyncRewardClient:
        if self._client is None:  # created on the engine's event loop, on first use
            self._client = self.settings.async_client()
        return self._client

    async def execute(
        self,
        prompt: str,
        label: Any,
        sampling_params: Any,
        max_length: int,
        hf_tokenizer: Any,
        llm_engine: Any,
        images: Any = None,
    ) -> dict[str, Any]:
        if self._reader is None:
            self._reader = template_reader(hf_tokenizer)
        # register before the first await: the whole group registers before any sample ends
        ticket = self.groups.enter((prompt, _label_key(label)))
        try:
            output: dict[str, Any] = await super().execute(
                prompt, label, sampling_params, max_length, hf_tokenizer, llm_engine, images
            )
        except BaseException:
            self.groups.withdraw(ticket)
            raise
        start, end = output["action_ranges"][0]
        response = hf_tokenizer.decode(
            output["observation_tokens"][start:end], skip_special_tokens=True
        )
        reward = await self.groups.submit(ticket, response.strip())
        output.update(reward=reward.reward, scores=reward.score, extra_logs=reward.extra_logs)
        return output

    async def _judge(self, key: GroupKey, responses: Sequence[str]) -> list[SampleReward]:
        prompt, _ = key
        conversation = conversation_of(prompt, self._reader)
        texts = [judgeable(r) for r in responses]
        unique = list(dict.fromkeys(texts))  # identical samples are judged once
        started = time.monotonic()
        try:
            scores = await self.client.score(
                conversation.query,
                unique,
                history=conversation.history,
                strategy=self.settings.strategy_enum,
            )
        except RewardServiceError as exc:
            what = f"rank a group of {len(texts)} samples (Score, group mode)"
            endpoint = self.settings.address
            log.error("%s", failure_line(exc, endpoint=endpoint, what=what))
            raise in_context(exc, endpoint=endpoint, what=what) from exc
        rewards = group_sample_rewards(scores, [unique.index(t) for t in texts])
        if len(texts) == 1:
            log.warning("a group of one sample: nothing to compare, its reward is 0")
        log.info(
            "ranked a group of %d samples (%d distinct) in %.1f s: rewards %s",
            len(texts),
            len(unique),
            time.monotonic() - started,
            [round(r.reward, 3) for r in rewards],
        )
        return rewards

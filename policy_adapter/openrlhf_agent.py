"""OpenRLHF PPO/GRPO with group rewards: pass this file as `--train.agent_func_path`.

Each vLLM engine actor builds one `AgentExecutor` and runs the n samples of a prompt through it
concurrently. Every sample generates as OpenRLHF's `SingleTurnAgentExecutor` does, then waits at
a per-prompt barrier; the group is ranked once by the reward service (Score, group mode) and each
sample returns its own reward, a score and extra_logs. A failure raises out of `execute` and logs
an ERROR naming rrm-serve, the endpoint, the gRPC status and message: the rollout fails loudly
rather than train on a missing or made-up reward.

Configured by `RRM_*` variables (see `policy_adapter.settings`): RRM_ADDRESS is required;
RRM_N_SAMPLES_PER_PROMPT caps a group (0: learned from the calls), RRM_GROUP_TIMEOUT_S bounds the
wait for stragglers, RRM_STRATEGY (and its RRM_ADAPTIVE_* / RRM_REFERENCE_INDEX options) /
RRM_VOTES / RRM_MAX_REASONING_TOKENS tune the judging, RRM_UNDERSIZED / RRM_NEUTRAL_REWARD say
what a group left with one sample gets when its label has no reference to judge it against. The
prompt is read by the policy tokenizer's chat template.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from openrlhf.utils.agent import SingleTurnAgentExecutor

from policy_adapter.client import AsyncRewardClient
from policy_adapter.cohort import SampleGroups
from policy_adapter.errors import RewardServiceError, failure_line, in_context
from policy_adapter.group import (
    GROUP_LOG_KEYS,
    SampleReward,
    group_sample_rewards,
    reference_sample_rewards,
)
from policy_adapter.results import Scores
from policy_adapter.settings import AdapterSettings, env_name
from policy_adapter.texts import (
    Conversation,
    TemplateReader,
    conversation_of,
    judgeable,
    parse_label,
)
from policy_adapter.tournament import OptionError

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
        # groups that closed with fewer than two distinct samples, by outcome
        self.undersized: Counter[str] = Counter()
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

    async def _score(
        self, what: str, conversation: Conversation, texts: list[str], **how: Any
    ) -> Scores:
        """Score; a failure logged and raised naming rrm-serve, the endpoint and the status."""
        try:
            return await self.client.score(
                conversation.query, texts, history=conversation.history, **how
            )
        except OptionError as exc:  # e.g. RRM_REFERENCE_INDEX past a small group's samples
            raise ValueError(
                f"{what}: {env_name(exc.option)} {exc.problem} (RRM_* settings)"
            ) from exc
        except RewardServiceError as exc:
            endpoint = self.settings.address
            log.error("%s", failure_line(exc, endpoint=endpoint, what=what))
            raise in_context(exc, endpoint=endpoint, what=what) from exc

    async def _judge(self, key: GroupKey, responses: Sequence[str]) -> list[SampleReward]:
        prompt, label = key
        conversation = conversation_of(prompt, self._reader)
        texts = [judgeable(r) for r in responses]
        unique = list(dict.fromkeys(texts))  # identical samples are judged once
        if len(unique) < 2:
            return await self._undersized(conversation, json.loads(label), texts)
        started = time.monotonic()
        scores = await self._score(
            f"rank a group of {len(texts)} samples (Score, group mode)",
            conversation,
            unique,
            **self.settings.strategy_options(len(unique)),
        )
        rewards = group_sample_rewards(scores, [unique.index(t) for t in texts])
        log.info(
            "ranked a group of %d samples (%d distinct) in %.1f s: rewards %s",
            len(texts),
            len(unique),
            time.monotonic() - started,
            [round(r.reward, 3) for r in rewards],
        )
        return rewards

    async def _undersized(
        self, conversation: Conversation, label: object, texts: list[str]
    ) -> list[SampleReward]:
        """Nothing to rank: identical samples tie; a sample alone (its group timed out, or lost
        members) is judged against the label's reference when it has one, else the configured
        outcome (RRM_UNDERSIZED), never a silent 0."""
        brief = conversation.query[:120]
        if len(texts) >= 2:
            self.undersized["tie"] += 1
            log.info("group of prompt %r: %d identical samples, a tie", brief, len(texts))
            return [_neutral(self.settings.neutral_reward, len(texts))] * len(texts)
        reference = parse_label(label, plain="ignore").reference
        outcome = "reference" if reference else self.settings.undersized
        self.undersized[outcome] += 1
        log.warning(
            "group of prompt %r closed with 1 sample: %s",
            brief,
            {
                "reference": "judged against the label's reference",
                "neutral": f"rewarded the neutral {self.settings.neutral_reward} (RRM_UNDERSIZED)",
                "error": "failed (RRM_UNDERSIZED=error)",
            }[outcome],
        )
        if outcome == "error":
            raise UndersizedGroup(
                f"the group of prompt {brief!r} closed with 1 sample and its label has no "
                "reference to judge it against (RRM_UNDERSIZED=neutral rewards it a neutral value)"
            )
        if outcome == "neutral":
            return [_neutral(self.settings.neutral_reward, 1)]
        scores = await self._score(
            "judge a lone sample against its reference (Score, reference mode)",
            conversation,
            texts,
            reference=reference,
        )
        [alone] = reference_sample_rewards(scores)
        return [replace(_neutral(alone.reward, 1), score=alone.reward)]


class UndersizedGroup(RuntimeError):
    """A group closed with one sample and nothing to judge it against (RRM_UNDERSIZED=error)."""


def _neutral(reward: float, members: int) -> SampleReward:
    logs = dict.fromkeys(GROUP_LOG_KEYS, 0.0) | {"rrm_group_size": float(members)}
    return SampleReward(reward=reward, score=0.5, extra_logs=logs)

"""A judge's reward mixed with a rule-based one, in one OpenRLHF reward function file:

    --reward.remote_url examples/openrlhf/mixed_reward_func.py --data.label_key label

reward = RRM_MIX_RRM_WEIGHT x p(sample beats the reference, judged by rrm-serve)
       + RRM_MIX_RULE_WEIGHT x (the sample's final answer matches the label's answer)

The label is the reference answer as a string (judged against, and its final answer checked), or
{"reference": "<a worked solution>", "answer": "42"}. `scores` is the rule's 0/1, the accuracy
that OpenRLHF's --algo.dynamic_filtering_enable reads. A failed judgment raises, as in
`policy_adapter/openrlhf_reward_func.py`: a sample never gets the rule's part alone as if the
judge had said 0. The judge is configured by `RRM_*` variables (RRM_ADDRESS is required).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from policy_adapter.reference_judge import ReferenceJudge
from policy_adapter.rule_rewards import answers_match, final_answer
from policy_adapter.texts import parse_label, response_of


class MixSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RRM_MIX_", frozen=True)

    rrm_weight: float = Field(default=0.5, ge=0)
    rule_weight: float = Field(default=0.5, ge=0)


_mix = MixSettings()
_judge = ReferenceJudge()


def expected_answer(label: object) -> str:
    fields = parse_label(label, plain="reference")
    if fields.answer is not None:
        return fields.answer
    reference = fields.reference or ""
    return final_answer(reference) or reference


def reward_func(
    queries: Sequence[str], prompts: Sequence[str], labels: Sequence[Any], **kwargs: Any
) -> dict[str, Any]:
    judged = _judge.rewards(queries, prompts, labels)
    correct = [
        float(answers_match(response_of(query, prompt), expected_answer(label)))
        for query, prompt, label in zip(queries, prompts, labels, strict=True)
    ]
    keys = judged[0].extra_logs if judged else {}
    logs = {key: [s.extra_logs[key] for s in judged] for key in keys}
    return {
        "rewards": [
            _mix.rrm_weight * s.reward + _mix.rule_weight * c
            for s, c in zip(judged, correct, strict=True)
        ],
        "scores": correct,
        "extra_logs": {**logs, "rule_correct": correct},
    }

"""Which prompt/parse conventions a checkpoint needs, detected from its chat template."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

from reward_service.judge.render import apply_template

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

REASONING_OPEN = "<think>\n"


class JudgeProfile(StrEnum):
    # DeepSeek-R1-Distill RRM checkpoints: the generation prompt opens <think>, so the completion
    # starts inside the reasoning and a verdict needs a closing </think>.
    RRM = "rrm"
    # Plain instruct models (e.g. SmolLM2, ChatML): no reasoning tags, verdict anywhere.
    GENERIC = "generic"


def detect_profile(tokenizer: PreTrainedTokenizerBase) -> JudgeProfile:
    """RRM when the rendered generation prompt ends by opening the reasoning (`<think>\\n`)."""
    probe = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    if apply_template(tokenizer, probe).endswith(REASONING_OPEN):
        return JudgeProfile.RRM
    return JudgeProfile.GENERIC

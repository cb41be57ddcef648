"""From what OpenRLHF hands a reward function to what the judge reads.

OpenRLHF passes `query` = the templated prompt + the response, decoded with special tokens kept,
`prompt` = the templated prompt, and `label` = the raw dataset label. The judge wants the
conversation (earlier turns + the last user message; `policy_adapter.chat_templates`) and the
bare response.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Literal

from policy_adapter.chat_templates import Conversation, TemplateReader, conversation_of

log = logging.getLogger(__name__)

__all__ = ["Conversation", "TemplateReader", "conversation_of"]  # read from chat templates

# End-of-turn markers of common chat templates, kept in `query` by OpenRLHF's decode.
END_MARKERS = (
    "<|im_end|>",
    "<|endoftext|>",
    "<|eot_id|>",
    "<|end_of_text|>",
    "<|end|>",
    "</s>",
    "<｜end▁of▁sentence｜>",
    "<end_of_turn>",
    "<eos>",
)
# What the judge sees for an empty response: the service rejects empty text, and an empty
# answer is a real (bad) answer that must be judged, not skipped.
EMPTY_RESPONSE = "(empty response)"


def strip_end_markers(text: str) -> str:
    text = text.strip()
    stripped = True
    while stripped:
        stripped = False
        for marker in END_MARKERS:
            if text.endswith(marker):
                text = text[: -len(marker)].rstrip()
                stripped = True
    return text


def response_of(sequence: str, prompt: str) -> str:
    """The response inside `sequence` (= prompt + response), end markers removed."""
    if sequence.startswith(prompt):
        tail = sequence[len(prompt) :]
    else:  # the tokenizer round trip changed the prompt text: cut at the common prefix
        common = next(
            (i for i, (x, y) in enumerate(zip(sequence, prompt, strict=False)) if x != y),
            min(len(sequence), len(prompt)),
        )
        log.warning(
            "query does not start with its prompt (they differ after %d characters)", common
        )
        tail = sequence[common:]
    return strip_end_markers(tail)


def judgeable(response: str) -> str:
    return response if response.strip() else EMPTY_RESPONSE


@dataclass(frozen=True, slots=True)
class Label:
    group: str | None = None
    reference: str | None = None
    answer: str | None = None  # the short final answer a rule-based reward checks


def parse_label(label: object, *, plain: Literal["group", "reference", "ignore"]) -> Label:
    """A dict (or a JSON object string) may carry "group", "reference" and "answer"; a plain
    string is a group id, a reference answer or nothing, as `plain` says."""
    fields: object = label
    if isinstance(label, str) and label.lstrip().startswith("{"):
        try:
            fields = json.loads(label)
        except json.JSONDecodeError:
            fields = label
    if isinstance(fields, dict):
        group, reference, answer = (fields.get(k) for k in ("group", "reference", "answer"))
        return Label(
            group=None if group is None else str(group),
            reference=None if reference is None else str(reference),
            answer=None if answer is None else str(answer),
        )
    if label is None or label == "" or plain == "ignore":
        return Label()
    text = str(label)
    return Label(group=text) if plain == "group" else Label(reference=text)

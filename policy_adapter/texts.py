"""From what OpenRLHF hands a reward function to what the judge reads.

OpenRLHF passes `query` = the templated prompt + the response, decoded with special tokens kept,
`prompt` = the templated prompt, and `label` = the raw dataset label. The judge wants the
conversation (earlier turns + the last user message) and the bare response.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Literal

from policy_adapter.results import Turn

log = logging.getLogger(__name__)

# End-of-turn markers of common chat templates, kept in `query` by OpenRLHF's decode.
END_MARKERS = (
    "<|im_end|>",
    "<|endoftext|>",
    "<|eot_id|>",
    "<|end_of_text|>",
    "<|end|>",
    "</s>",
    "<｜end▁of▁sentence｜>",
)
# What the judge sees for an empty response: the service rejects empty text, and an empty
# answer is a real (bad) answer that must be judged, not skipped.
EMPTY_RESPONSE = "(empty response)"

_TEMPLATES = (
    re.compile(r"<\|im_start\|>(system|user|assistant)\n(.*?)(?:<\|im_end\|>|$)", re.S),
    re.compile(
        r"<\|start_header_id\|>(system|user|assistant)<\|end_header_id\|>\n\n(.*?)(?:<\|eot_id\|>|$)",
        re.S,
    ),
)


@dataclass(frozen=True, slots=True)
class Conversation:
    history: tuple[Turn, ...]
    query: str


def conversation_of(prompt: str) -> Conversation:
    """Turns of a ChatML or Llama-3 templated prompt; any other prompt is the query as is."""
    for pattern in _TEMPLATES:
        turns = [(role, content.strip()) for role, content in pattern.findall(prompt)]
        users = [i for i, (role, _) in enumerate(turns) if role == "user"]
        if users and turns[users[-1]][1]:
            last = users[-1]
            history = tuple(Turn(role, content) for role, content in turns[:last] if content)
            return Conversation(history, turns[last][1])
    return Conversation((), prompt.strip())


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

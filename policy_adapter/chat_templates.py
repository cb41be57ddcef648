"""The chat turns inside a templated prompt (OpenRLHF's `--data.apply_chat_template`).

Two ways: `TemplateReader` learns the policy tokenizer's own chat template by rendering sentinel
conversations through it, so whatever the template writes around the messages (role markers, a
default system prompt, BOS, a `<think>` opener) is matched exactly; without a tokenizer (the
reward function, the remote RM) the role markers of the common templates are recognised: ChatML
(Qwen), Llama-3, Gemma, Mistral and DeepSeek-R1.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from policy_adapter.results import Turn

log = logging.getLogger(__name__)

# messages -> the prompt text, generation prompt included (the tokenizer's apply_chat_template)
Render = Callable[[list[dict[str, str]]], str]


@dataclass(frozen=True, slots=True)
class Conversation:
    history: tuple[Turn, ...]
    query: str


def conversation_from_turns(turns: Sequence[tuple[str, str]]) -> Conversation | None:
    """Earlier turns + the last user message; None without a non-empty user message."""
    users = [i for i, (role, content) in enumerate(turns) if role == "user"]
    if not users or not turns[users[-1]][1]:
        return None
    last = users[-1]
    history = tuple(Turn(role, content) for role, content in turns[:last] if content)
    return Conversation(history, turns[last][1])


# ---- role markers of common templates ----


@dataclass(frozen=True, slots=True)
class MarkerFormat:
    name: str
    markers: tuple[tuple[str, str], ...]  # (text that opens a turn, role)
    ends: tuple[str, ...]  # a turn's content ends at the first of these
    preamble: str | None = None  # role of the text before the first marker (BOS removed)
    bos: tuple[str, ...] = ()

    def turns(self, prompt: str) -> list[tuple[str, str]]:
        roles = dict(self.markers)
        pattern = "|".join(re.escape(marker) for marker, _ in self.markers)
        found = list(re.finditer(pattern, prompt))
        if not found:
            return []
        turns = []
        if self.preamble:
            head = prompt[: found[0].start()]
            for bos in self.bos:
                head = head.removeprefix(bos)
            turns.append((self.preamble, self._content(head)))
        stops = [*(m.start() for m in found[1:]), len(prompt)]
        for here, stop in zip(found, stops, strict=True):
            turns.append((roles[here.group()], self._content(prompt[here.end() : stop])))
        return turns

    def _content(self, text: str) -> str:
        for end in self.ends:
            text = text.split(end, 1)[0]
        return text.strip()


def _headers(opener: str, closer: str, roles: dict[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple((f"{opener}{name}{closer}", role) for name, role in roles.items())


_SAME = {"system": "system", "user": "user", "assistant": "assistant"}
MARKER_FORMATS = (
    MarkerFormat("chatml", _headers("<|im_start|>", "\n", _SAME), ("<|im_end|>",)),
    MarkerFormat(
        "llama3",
        _headers("<|start_header_id|>", "<|end_header_id|>\n\n", _SAME),
        ("<|eot_id|>",),
    ),
    MarkerFormat(
        "gemma",
        _headers("<start_of_turn>", "\n", {**_SAME, "model": "assistant"}),
        ("<end_of_turn>",),
    ),
    MarkerFormat(
        "deepseek-r1",
        (("<｜User｜>", "user"), ("<｜Assistant｜>", "assistant")),
        ("<｜end▁of▁sentence｜>",),
        preamble="system",
        bos=("<｜begin▁of▁sentence｜>",),
    ),
    MarkerFormat(
        "mistral",
        (("[SYSTEM_PROMPT]", "system"), ("[INST]", "user"), ("[/INST]", "assistant")),
        ("[/SYSTEM_PROMPT]", "</s>"),
    ),
)


def conversation_by_markers(prompt: str) -> Conversation | None:
    for chat_format in MARKER_FORMATS:
        conversation = conversation_from_turns(chat_format.turns(prompt))
        if conversation is not None:
            return conversation
    return None


# ---- the policy's own template ----

_SENTINEL = re.compile(r"RRMTURN(\d+)X")


@dataclass(frozen=True, slots=True)
class _Shape:
    pattern: re.Pattern[str]
    roles: tuple[str, ...]  # the role of sentinel i
    markup: tuple[str, ...]  # what the template writes between contents (not just whitespace)


class TemplateReader:
    """Reads prompts that one chat template rendered. Each conversation shape (an optional system
    message, then 0..max_exchanges user/assistant exchanges, then the user's turn) is rendered
    once with sentinel contents; the rendering, sentinels turned into groups, is the pattern."""

    def __init__(self, render: Render, *, max_exchanges: int = 8) -> None:
        self.shapes: list[_Shape] = []
        # the most turns first: a shape with fewer turns matches too, one content swallowing
        # several turns; that match is refused (it contains markup), and so is a prompt with
        # more than max_exchanges exchanges (read by the markers instead)
        for exchanges in range(max_exchanges, -1, -1):
            for system in (False, True):
                roles = ["system"] * system + ["user", "assistant"] * exchanges + ["user"]
                shape = self._shape(render, roles)
                if shape is not None:
                    self.shapes.append(shape)

    @staticmethod
    def _shape(render: Render, roles: list[str]) -> _Shape | None:
        messages = [{"role": r, "content": f"RRMTURN{i}X"} for i, r in enumerate(roles)]
        try:
            rendered = render(messages)
        except Exception:  # the template refuses this shape (e.g. no system role)
            return None
        pattern, seen, markup = [], set(), []
        for k, piece in enumerate(_SENTINEL.split(rendered)):
            if k % 2 == 0:
                pattern.append(re.escape(piece))
                if piece.strip():
                    markup.append(piece.strip())
            elif piece in seen:
                pattern.append(f"(?P=t{piece})")
            else:
                seen.add(piece)
                pattern.append(f"(?P<t{piece}>.*?)")
        if not all(str(i) in seen for i, r in enumerate(roles) if r == "user"):
            return None  # a user message the template does not show: nothing to read back
        return _Shape(re.compile("".join(pattern), re.S), tuple(roles), tuple(markup))

    def read(self, prompt: str) -> Conversation | None:
        for shape in self.shapes:
            match = shape.pattern.fullmatch(prompt)
            if match is None:
                continue
            groups = match.groupdict()
            if any(m in g for g in groups.values() if g for m in shape.markup):
                continue
            turns = [
                (role, (groups.get(f"t{i}") or "").strip()) for i, role in enumerate(shape.roles)
            ]
            return conversation_from_turns(turns)
        return None


def conversation_of(prompt: str, reader: TemplateReader | None = None) -> Conversation:
    """The turns of a templated prompt: by the policy's own template when a reader is given and
    matches, else by the role markers of common templates, else the prompt is the query."""
    if reader is not None:
        conversation = reader.read(prompt)
        if conversation is not None:
            return conversation
        log.debug("prompt not rendered by the policy's chat template: reading its markers")
    return conversation_by_markers(prompt) or Conversation((), prompt.strip())

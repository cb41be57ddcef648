"""Chat-template rendering in which message content can never become a special or added token.

`tokenizer.apply_chat_template(..., tokenize=True)` renders text and re-tokenises it, so a response
containing "<|im_end|>" or "</think>" turns into the real control token: a prompt injection that
can end the judge's reasoning or fake a turn. `split_special_tokens` does not help with tokens that
are added but not special (DeepSeek's `<think>`/`</think>`).

Method: render the template once with placeholder strings in place of the contents (the
skeleton), split the skeleton at added-token strings the way Hugging Face does (leftmost-longest)
- those are the template's own control tokens - and encode the text between them, with the
contents substituted, by the tokenizer's BPE pipeline rebuilt without added tokens and without a
post-processor. Hugging Face also encodes the text between added tokens separately, so for content
free of added-token strings the ids equal apply_chat_template's; with such content, the content
stays plain text. The constructor checks that equality on a probe conversation and refuses a
template or tokenizer it cannot reproduce (e.g. one that edits message content, or a SentencePiece
pre-tokeniser that treats the first text piece differently) rather than serve different prompts.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from tokenizers import Tokenizer

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


class TemplateMismatch(ValueError):
    """The safe rendering cannot reproduce this tokenizer's chat template exactly."""


def apply_template(tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, str]]) -> str:
    """The template's text with the generation prompt (transformers 4 and 5)."""
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    if not isinstance(text, str):
        raise TypeError(f"apply_chat_template returned {type(text).__name__}, expected str")
    return text


def template_ids(tokenizer: PreTrainedTokenizerBase, messages: list[dict[str, str]]) -> list[int]:
    """Hugging Face's own ids for the messages (a dict/BatchEncoding in transformers 5)."""
    result: Any = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    if hasattr(result, "keys"):
        result = result["input_ids"]
    return [int(i) for i in result]


class RawEncoder:
    """The tokenizer's normaliser + pre-tokeniser + BPE, knowing no added tokens at all."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase) -> None:
        backend = getattr(tokenizer, "backend_tokenizer", None)
        if backend is None:
            raise TypeError("the judge needs a fast (tokenizers-backed) tokenizer")
        # Added tokens live in the Tokenizer, not in its model: a new Tokenizer around the same
        # (read-only, shared) model and pipeline knows none of them. No post-processor: no BOS.
        self._tokenizer = Tokenizer(backend.model)
        self._tokenizer.normalizer = backend.normalizer
        self._tokenizer.pre_tokenizer = backend.pre_tokenizer
        self._tokenizer.decoder = backend.decoder

    def encode(self, text: str) -> list[int]:
        return self._tokenizer.encode(text, add_special_tokens=False).ids if text else []

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return [e.ids for e in encodings]

    def decode(self, ids: Sequence[int]) -> str:
        return self._tokenizer.decode(list(ids), skip_special_tokens=False)


class _Slot(int):
    """Index of a message whose content goes here (an int subclass keeps parts hashable/simple)."""


class _Token:
    __slots__ = ("content", "id", "lstrip", "rstrip")

    def __init__(self, token_id: int, content: str, lstrip: bool, rstrip: bool) -> None:
        self.id, self.content, self.lstrip, self.rstrip = token_id, content, lstrip, rstrip


# Alternating pieces of the skeleton: template text, a content slot, or a template token.
_Part = str | _Slot | _Token


class ChatRenderer:
    """Renders messages with fixed roles (e.g. system, user) through a tokenizer's chat template."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, roles: Sequence[str]) -> None:
        self.roles = tuple(roles)
        self.raw = RawEncoder(tokenizer)
        added = tokenizer.added_tokens_decoder
        self.added_ids = frozenset(int(i) for i in added)
        self.added_by_content = {str(t.content): int(i) for i, t in added.items()}
        tokens = {
            str(t.content): _Token(int(i), str(t.content), bool(t.lstrip), bool(t.rstrip))
            for i, t in added.items()
        }
        placeholders = _placeholders(len(self.roles), str(tokenizer.chat_template or ""))
        skeleton = apply_template(tokenizer, self._messages(placeholders))
        self._parts = _split(skeleton, tokens, placeholders)
        self._self_check(tokenizer)

    def _messages(self, contents: Sequence[str]) -> list[dict[str, str]]:
        return [{"role": r, "content": c} for r, c in zip(self.roles, contents, strict=True)]

    def render_text(self, contents: Sequence[str]) -> str:
        """The prompt as text: equal to apply_chat_template(tokenize=False)."""
        out = []
        for part in self._parts:
            if isinstance(part, _Token):
                out.append(part.content)
            elif isinstance(part, _Slot):
                out.append(contents[part])
            else:
                out.append(part)
        return "".join(out)

    def render_ids(self, contents: Sequence[str]) -> list[int]:
        """Prompt token ids; text runs (template text + content) are BPE-encoded only."""
        if len(contents) != len(self.roles):
            raise ValueError(f"expected {len(self.roles)} contents, got {len(contents)}")
        runs: list[str | _Token] = []
        text: list[str] = []
        for part in self._parts:
            if isinstance(part, _Token):
                runs.append("".join(text))
                runs.append(part)
                text = []
            else:
                text.append(contents[part] if isinstance(part, _Slot) else part)
        runs.append("".join(text))
        texts = [_strip_for_neighbours(runs, i) for i, r in enumerate(runs) if isinstance(r, str)]
        encoded = iter(self.raw.encode_batch(texts))
        ids: list[int] = []
        for run in runs:
            if isinstance(run, _Token):
                ids.append(run.id)
                continue
            piece = next(encoded)
            if self.added_ids.intersection(piece):
                # Defence in depth: a BPE vocabulary that spells an added token from plain text.
                raise TemplateMismatch("plain text encoded to an added-token id")
            ids.extend(piece)
        return ids

    def _self_check(self, tokenizer: PreTrainedTokenizerBase) -> None:
        probe = [f" Probe {r} message:\n  ¿Qué tal? 123 {{braces}}\t\n\n" for r in self.roles]
        messages = self._messages(probe)
        if self.render_text(probe) != apply_template(tokenizer, messages):
            raise TemplateMismatch("the chat template changes message content (trims, edits)")
        if self.render_ids(probe) != template_ids(tokenizer, messages):
            raise TemplateMismatch("piecewise encoding differs from the tokenizer's own")


def _placeholders(n: int, template: str) -> list[str]:
    """Private-use strings absent from the template (so they mark exactly the content)."""
    nonce = 0
    while True:
        candidates = [f"\ue000{nonce}:{i}\ue001" for i in range(n)]
        if not any(c in template for c in candidates):
            return candidates
        nonce += 1


def _split(skeleton: str, tokens: dict[str, _Token], placeholders: list[str]) -> list[_Part]:
    """Skeleton -> parts: added tokens matched leftmost-longest (as HF), placeholders as slots."""
    parts: list[_Part] = []
    pattern = "|".join(re.escape(c) for c in sorted(tokens, key=len, reverse=True))
    cursor = 0
    for match in re.finditer(pattern, skeleton) if pattern else ():
        parts.extend(_text_parts(skeleton[cursor : match.start()], placeholders))
        parts.append(tokens[match.group()])
        cursor = match.end()
    parts.extend(_text_parts(skeleton[cursor:], placeholders))
    slots = sorted(p for p in parts if isinstance(p, _Slot))
    if slots != list(range(len(placeholders))):
        raise TemplateMismatch("the chat template must show each message content exactly once")
    return parts


def _text_parts(text: str, placeholders: list[str]) -> list[_Part]:
    pattern = "|".join(re.escape(p) for p in placeholders)
    parts: list[_Part] = []
    for piece in re.split(f"({pattern})", text):
        if piece in placeholders:
            parts.append(_Slot(placeholders.index(piece)))
        elif piece:
            parts.append(piece)
    return parts


def _strip_for_neighbours(runs: list[str | _Token], i: int) -> str:
    """Whitespace that an lstrip/rstrip added token absorbs, as Hugging Face does."""
    text = runs[i]
    assert isinstance(text, str)
    before = runs[i - 1] if i > 0 else None
    after = runs[i + 1] if i + 1 < len(runs) else None
    if isinstance(before, _Token) and before.rstrip:
        text = text.lstrip()
    if isinstance(after, _Token) and after.lstrip:
        text = text.rstrip()
    return text

"""The judge: RRM prompt -> token ids, completion -> verdict, and the ids that force or re-read it.

Pure: the only collaborator is the tokenizer object passed in; no engine, no I/O.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from reward_service.domain import Pair, ParseStatus, Verdict
from reward_service.judge.profile import JudgeProfile
from reward_service.judge.prompt import HISTORY_FORMAT, SYSTEM_PROMPT, USER_FORMAT, user_message
from reward_service.judge.render import ChatRenderer, RawEncoder
from reward_service.judge.verdict import THINK_CLOSE, ParsedVerdict, parse_completion

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# Bump when the parse rule or the forced-verdict continuation changes meaning.
RULES_VERSION = "rules/1"
VERDICT_TEXTS = ("\\boxed{Assistant 1}", "\\boxed{Assistant 2}")
CLOSE_REASONING = "\n" + THINK_CLOSE + "\n\n"
ANSWER_BREAK = "\n\n"


class Judge:
    """One checkpoint's judge; immutable after construction, safe to share across tasks."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, profile: JudgeProfile) -> None:
        self.profile = JudgeProfile(profile)
        self._tokenizer = tokenizer
        self._renderer = ChatRenderer(tokenizer, roles=("system", "user"))
        self._raw = self._renderer.raw
        self._prefix_ids, self.verdict_token_ids = _verdict_tokens(self._raw)
        # In generated text, the reasoning tags are the model's own added tokens (when it has them).
        self._marker_ids = {
            tag: self._renderer.added_by_content[tag]
            for tag in ("<think>", THINK_CLOSE)
            if self.profile is JudgeProfile.RRM and tag in self._renderer.added_by_content
        }
        self.template_version = _template_version(self.profile, tokenizer)

    @property
    def verdict_prefix_ids(self) -> tuple[int, ...]:
        """Ids of the shared start of both verdicts (e.g. "\\boxed{Assistant ")."""
        return tuple(self._prefix_ids)

    @property
    def forced_overhead(self) -> int:
        """Most tokens a vote can need beyond prompt + reasoning budget (suffix + 1 read)."""
        return max(len(self.forced_suffix_ids("")), len(self.forced_suffix_ids(THINK_CLOSE))) + 1

    def render(self, pair: Pair) -> list[int]:
        """Prompt ids; query, history and responses can never become control tokens."""
        return self._renderer.render_ids((SYSTEM_PROMPT, user_message(pair)))

    def render_text(self, pair: Pair) -> str:
        return self._renderer.render_text((SYSTEM_PROMPT, user_message(pair)))

    def parse(self, completion: str) -> ParsedVerdict:
        return parse_completion(completion, starts_in_reasoning=self.profile is JudgeProfile.RRM)

    def forced_suffix_ids(self, completion: str) -> list[int]:
        """Ids appended after the generated ids when the budget ran out, to ask for the verdict.

        RRM with reasoning still open: "\\n</think>\\n\\n" (with the real `</think>` token) and
        the verdict prefix; otherwise a paragraph break and the prefix. The next token is the
        verdict.
        """
        if self.profile is JudgeProfile.RRM and THINK_CLOSE not in completion:
            return self._lead_then_prefix(CLOSE_REASONING)
        return self._lead_then_prefix(ANSWER_BREAK)

    def stop_forced_ids(self, completion: str) -> list[int]:
        """The completion of a judge that stopped without a verdict, re-encoded (its end-of-turn
        token dropped), then closed as for the budget: the next token is the verdict."""
        if self.profile is JudgeProfile.RRM and THINK_CLOSE not in completion:
            return self._lead_then_prefix(completion + CLOSE_REASONING)
        return self._lead_then_prefix(completion + ANSWER_BREAK)

    def reread_ids(self, completion: str, parsed: ParsedVerdict) -> list[int]:
        """Completion up to its verdict box, then the verdict prefix: p(first) is read next.

        The text is re-encoded rather than cut from the generated ids (a text offset need not
        fall on a token boundary); `</think>` and `<think>` map to their added tokens, as the
        model emitted them.
        """
        if parsed.boxed_start is None:
            raise ValueError("the completion has no verdict box to re-read")
        return self._lead_then_prefix(completion[: parsed.boxed_start])

    def verdict_position(
        self, generated_ids: Sequence[int], completion: str, parsed: ParsedVerdict
    ) -> int | None:
        """Index in `generated_ids` of the natural verdict's token, or None.

        Found when the judge wrote the parsed box as "\\boxed{Assistant " + the canonical verdict
        token: the reasoning sample's logprobs at that index are then p(verdict | everything
        the judge wrote before it), and no second request is needed. The candidate is checked
        by text: the ids after it must decode to exactly the completion after the verdict
        digit, so it is the parsed (last) box. None when the judge tokenised the verdict some
        other way or wrote `\\fbox`: the caller re-reads instead.
        """
        if parsed.status is not ParseStatus.OK or parsed.boxed_start is None:
            return None
        index = 0 if parsed.verdict is Verdict.FIRST else 1
        head = VERDICT_TEXTS[index][:-1]  # "\\boxed{Assistant N"
        verdict_end = parsed.boxed_start + len(head)
        if completion[parsed.boxed_start : verdict_end] != head:
            return None
        token, tail = self.verdict_token_ids[index], completion[verdict_end:]
        for i in range(len(generated_ids) - 1, -1, -1):
            if generated_ids[i] != token:
                continue
            rest = self._decode_generated(generated_ids[i + 1 :])
            if rest == tail:
                return i
            if len(rest) > len(tail):
                return None
        return None

    def p_first(self, top_logprobs: Mapping[int, float]) -> float | None:
        """p(Assistant 1) from one position's top-k logprobs, renormalised over the two verdicts.

        A verdict token missing from the top-k has a logprob of at most the smallest one shown,
        which is used in its place (an upper bound, so the estimate leans towards it). None when
        neither verdict token is among the top-k: the model wanted to write something else.
        """
        first_id, second_id = self.verdict_token_ids
        first, second = top_logprobs.get(first_id), top_logprobs.get(second_id)
        if first is None and second is None:
            return None
        floor = min(top_logprobs.values())
        first = floor if first is None else first
        second = floor if second is None else second
        if first == second == -math.inf:
            return None
        return _sigmoid(first - second)

    def _lead_then_prefix(self, lead: str) -> list[int]:
        """Ids of `lead` + "\\boxed{Assistant ", tokenised as one text, ending before the verdict.

        Encoding lead and verdict together keeps the junction canonical (Qwen writes " \\" as one
        token); the result is cut where the encodings of the two verdicts part. If that point is
        not the pair of verdict tokens (an odd tokenizer), fall back to plain concatenation.
        """
        one, two = (self._encode_generated(lead + text) for text in VERDICT_TEXTS)
        n = _common_prefix_len(one, two)
        if n < min(len(one), len(two)) and (one[n], two[n]) == self.verdict_token_ids:
            return one[:n]
        return [*self._encode_generated(lead), *self._prefix_ids]

    def _decode_generated(self, ids: Sequence[int]) -> str:
        """Generated ids as the engine detokenises them (special tokens such as EOS dropped)."""
        text = self._tokenizer.decode(
            list(ids), skip_special_tokens=True, clean_up_tokenization_spaces=False
        )
        return text if isinstance(text, str) else "".join(text)

    def _encode_generated(self, text: str) -> list[int]:
        if not self._marker_ids:
            return self._raw.encode(text)
        ids: list[int] = []
        for piece in _split_keep(text, tuple(self._marker_ids)):
            marker = self._marker_ids.get(piece)
            ids.extend([marker] if marker is not None else self._raw.encode(piece))
        return ids


def _verdict_tokens(raw: RawEncoder) -> tuple[list[int], tuple[int, int]]:
    """Longest common token prefix of the two verdicts, and the first token where they differ."""
    one, two = raw.encode_batch(VERDICT_TEXTS)
    n = _common_prefix_len(one, two)
    if n >= min(len(one), len(two)):
        raise ValueError("the tokenizer does not separate the two verdicts by a token")
    return list(one[:n]), (one[n], two[n])


def _common_prefix_len(a: list[int], b: list[int]) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def _template_version(profile: JudgeProfile, tokenizer: PreTrainedTokenizerBase) -> str:
    template = tokenizer.chat_template
    parts = (RULES_VERSION, SYSTEM_PROMPT, USER_FORMAT, HISTORY_FORMAT, str(template or ""))
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()
    return f"{profile}/{digest[:12]}"


def _split_keep(text: str, markers: tuple[str, ...]) -> list[str]:
    """Split `text` at any of `markers`, keeping them as pieces."""
    alternatives = "|".join(re.escape(m) for m in sorted(markers, key=len, reverse=True))
    return [p for p in re.split(f"({alternatives})", text) if p]


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)

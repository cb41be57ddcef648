"""Reading the verdict out of a judge's completion (pure string work, no tokenizer).

Only the completion is ever parsed, never the prompt, so text in the judged responses (a fake
"\\boxed{Assistant 1}", a fake "### Assistant 2" header) cannot decide a verdict.

The rule follows the reference (RRM-evaluation's `last_boxed_only_string` + exact match):
- RRM profile: the completion starts inside the reasoning; without `</think>` there is no verdict.
  The answer is the text after the LAST `</think>`.
- GENERIC profile: the whole completion is the answer.
- In the answer, take the LAST `\\boxed{` or `\\fbox{` (whichever comes later; the reference
  prefers any `\\boxed` over a later `\\fbox`, which only differs when a judge mixes both), match
  its braces, and map the content exactly: "Assistant 1" -> FIRST, "Assistant 2" -> SECOND.
  No whitespace stripping or case folding: the reference compares exactly, and a lenient parser
  would turn the same completion into different verdicts here and in published numbers.
  An unclosed last box is unparseable (it is not replaced by an earlier, closed one).
"""

from __future__ import annotations

from dataclasses import dataclass

from reward_service.domain import ParseStatus, Verdict

THINK_CLOSE = "</think>"
BOX_OPENERS = ("\\boxed{", "\\fbox{")
VERDICT_TEXT = {"Assistant 1": Verdict.FIRST, "Assistant 2": Verdict.SECOND}


@dataclass(frozen=True, slots=True)
class ParsedVerdict:
    """A parsed completion.

    `boxed_start` is the offset in the completion of the last box opener in the answer region
    (None if there is none, or if an RRM completion never closed its reasoning): it is where a
    natural verdict starts, so the verdict's probability can be re-read at that position.
    """

    verdict: Verdict
    status: ParseStatus  # OK or UNPARSEABLE
    reasoning: str
    boxed_start: int | None


def last_box(text: str, start: int = 0) -> tuple[int, str | None] | None:
    """(offset of the last box opener at or after `start`, its brace-matched content or None)."""
    found = max(text.rfind(opener, start) for opener in BOX_OPENERS)
    if found < 0:
        return None
    open_brace = text.index("{", found)
    depth = 0
    for i in range(open_brace, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return found, text[open_brace + 1 : i]
    return found, None


def parse_completion(completion: str, *, starts_in_reasoning: bool) -> ParsedVerdict:
    """Apply the module's rule; `starts_in_reasoning` is True for the RRM profile."""
    if starts_in_reasoning:
        close = completion.rfind(THINK_CLOSE)
        if close < 0:
            return ParsedVerdict(Verdict.UNDECIDED, ParseStatus.UNPARSEABLE, completion, None)
        reasoning, answer_start = completion[:close], close + len(THINK_CLOSE)
    else:
        reasoning, answer_start = completion, 0
    box = last_box(completion, answer_start)
    if box is None:
        return ParsedVerdict(Verdict.UNDECIDED, ParseStatus.UNPARSEABLE, reasoning, None)
    offset, content = box
    verdict = VERDICT_TEXT.get(content) if content is not None else None
    if verdict is None:
        return ParsedVerdict(Verdict.UNDECIDED, ParseStatus.UNPARSEABLE, reasoning, offset)
    return ParsedVerdict(verdict, ParseStatus.OK, reasoning, offset)

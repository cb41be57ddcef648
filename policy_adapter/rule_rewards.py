"""Rule-based rewards that RLHF runs mix with a judge's: the final answer of a response checked
against the label (math answers: `\\boxed{}`, GSM8K's `####`, "the answer is", the last number).
Pure string work, no judge."""

from __future__ import annotations

import re
from fractions import Fraction

_GSM8K = re.compile(r"####\s*(.+?)\s*$", re.S)
_ANSWER_IS = re.compile(r"answer\s+is\s*:?\s*(.+?)(?:\.\s|\.?$|\n)", re.I | re.S)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?")
_FRAC = re.compile(r"^\\[dt]?frac\{([^{}]+)\}\{([^{}]+)\}$")
_TEXT = re.compile(r"\\(?:text|mathrm|textbf)\{([^{}]*)\}")


def last_boxed(text: str) -> str | None:
    """The content of the last `\\boxed{...}` (nested braces kept), or None."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, i = 0, start + len("\\boxed")
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1 : j]
    return None  # unbalanced: a truncated response has no final answer


def final_answer(text: str) -> str | None:
    """The answer a response commits to, by the conventions math datasets use, most explicit
    first; None when it states none."""
    if "\\boxed{" in text:
        return last_boxed(text)  # None when cut off inside the box: no answer, not its digits
    for pattern in (_GSM8K, _ANSWER_IS):
        matches = pattern.findall(text)
        if matches:
            return str(matches[-1])
    numbers = _NUMBER.findall(text)
    return numbers[-1] if numbers else None


def normalize_answer(answer: str) -> str:
    text = _TEXT.sub(r"\1", answer.strip().strip("$").strip())
    text = text.replace("\\!", "").replace("\\,", "").replace("\\left", "").replace("\\right", "")
    text = re.sub(r"\s+", " ", text).strip().rstrip(".").strip()
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", text):
        text = text.replace(",", "")  # 1,000 -> 1000
    return text.lower()


def _number(text: str) -> Fraction | None:
    frac = _FRAC.match(text)
    if frac:
        text = f"{frac.group(1)}/{frac.group(2)}"
    try:
        return Fraction(text.replace(" ", ""))
    except (ValueError, ZeroDivisionError):
        return None


def answers_match(response: str, expected: str) -> bool:
    """Does the response's final answer equal the expected one? Numbers compare by value
    (0.5 = 1/2 = \\frac{1}{2}), anything else by its normalized text."""
    found = final_answer(response)
    if found is None:
        return False
    given, wanted = normalize_answer(found), normalize_answer(expected)
    if given == wanted:
        return True
    a, b = _number(given), _number(wanted)
    return a is not None and a == b

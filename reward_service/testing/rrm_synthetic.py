"""Synthetic judgments with a learnable rule, for the tiny trained RRM (`tiny_rrm`).

The rule: of two short answers exactly one says "correct" (the other "wrong"); that one is
better. The judge's reasoning first copies the evidence, then concludes, then closes the reasoning
and boxes the verdict, as an RRM does:

    The first says wrong. The second says correct. So Assistant 2 is better.
    </think>

    \\boxed{Assistant 2}

A query that ends with LONG_MARKER makes the judge "check again" (copy the evidence and conclude
again) without end, so it always runs past a reasoning budget (the service's forced-verdict
path). Pure: no tokenizer, no torch.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

from reward_service.domain import Pair, Verdict

GOOD, BAD = "correct", "wrong"
LONG_MARKER = "Take your time."
CHECK_AGAIN = " Let me check again. "
# One-token words (Qwen2 vocabulary, checked by the builder) for queries and answers.
SUBJECTS = (
    "Paris", "London", "Tom", "Anna", "Bob", "Rome", "Tokyo", "Mars", "Venus", "water",
    "iron", "gold", "salt", "milk", "coffee", "tea", "bread", "rice", "apple", "banana",
    "cat", "dog", "horse", "bird", "fish", "tree", "river", "ocean", "sun", "moon",
    "light", "sound", "music", "paper", "glass", "stone", "fire", "snow", "rain", "wind",
)  # fmt: skip
TOPICS = (
    "history", "physics", "cooking", "music", "travel", "sports", "math", "art", "health",
    "science", "language", "money", "weather", "animals", "plants", "space",
)  # fmt: skip
QUESTIONS = (
    "Which answer about {topic} is right?",
    "Is this claim about {topic} true?",
    "Check the statement on {topic}.",
    "What do you think about {topic}?",
    "Tell me the truth about {topic}.",
)


@dataclass(frozen=True, slots=True)
class Judgment:
    """A pair, the verdict the rule gives, and the completion the trained judge should write."""

    pair: Pair
    verdict: Verdict
    long: bool

    @property
    def evidence(self) -> str:
        """The copied evidence and the conclusion (one cycle of the reasoning)."""
        words = [_word(self.pair.first), _word(self.pair.second)]
        return f"The first says {words[0]}. The second says {words[1]}. {self.conclusion}"

    def reasoning(self, cycles: int = 1) -> str:
        """The reasoning text; a long judgment repeats its cycle (`cycles` of them shown)."""
        if not self.long:
            return self.evidence
        return CHECK_AGAIN.join([self.evidence] * cycles) + CHECK_AGAIN.rstrip(" ")

    @property
    def conclusion(self) -> str:
        return f"So Assistant {1 if self.verdict is Verdict.FIRST else 2} is better."

    @property
    def completion(self) -> str:
        """What a judge that finishes writes after the prompt's `<think>\\n` (short judgments)."""
        n = 1 if self.verdict is Verdict.FIRST else 2
        return f"{self.evidence}\n</think>\n\n\\boxed{{Assistant {n}}}"


def rule_verdict(pair: Pair) -> Verdict:
    """The rule: the answer that says "correct" wins; UNDECIDED unless exactly one does."""
    first, second = _says_good(pair.first), _says_good(pair.second)
    if first == second:
        return Verdict.UNDECIDED
    return Verdict.FIRST if first else Verdict.SECOND


def answer(subject: str, good: bool) -> str:
    return f"{subject} is {GOOD if good else BAD}."


def make_judgment(rng: random.Random, *, long: bool) -> Judgment:
    topic = rng.choice(TOPICS)
    query = rng.choice(QUESTIONS).format(topic=topic)
    if long:
        query = f"{query} {LONG_MARKER}"
    first_good = rng.random() < 0.5
    first = answer(rng.choice(SUBJECTS), first_good)
    second = answer(rng.choice(SUBJECTS), not first_good)
    pair = Pair(query=query, first=first, second=second)
    return Judgment(pair, Verdict.FIRST if first_good else Verdict.SECOND, long)


def _says_good(text: str) -> bool:
    return re.search(rf"\b{GOOD}\b", text) is not None


def _word(text: str) -> str:
    return GOOD if _says_good(text) else BAD

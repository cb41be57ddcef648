"""Reading HH-RLHF-style preference rows ("\\n\\nHuman: ...\\n\\nAssistant: ...") into comparisons.

Both dialogues of a row share every turn but the last assistant reply: the shared turns become the
history and final query, the two last replies the responses (chosen is the human-preferred one).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

_TURN = re.compile(r"\n\n(Human|Assistant): ")


@dataclass(frozen=True, slots=True)
class PreferencePair:
    history: tuple[tuple[str, str], ...]  # (role, content), oldest first
    query: str
    chosen: str
    rejected: str


def split_dialogue(text: str) -> list[tuple[str, str]]:
    parts = _TURN.split(text)
    turns = []
    for i in range(1, len(parts) - 1, 2):
        role = "user" if parts[i] == "Human" else "assistant"
        turns.append((role, parts[i + 1].strip()))
    return turns


def parse_row(row: dict[str, str]) -> PreferencePair | None:
    """None when the row is not a shared dialogue ending in two different assistant replies."""
    chosen, rejected = split_dialogue(row["chosen"]), split_dialogue(row["rejected"])
    if len(chosen) < 2 or chosen[:-1] != rejected[:-1] or chosen[-1][0] != "assistant":
        return None
    context = chosen[:-1]
    if context[-1][0] != "user" or not chosen[-1][1] or not rejected[-1][1]:
        return None
    if chosen[-1][1] == rejected[-1][1]:
        return None
    return PreferencePair(
        history=tuple(context[:-1]),
        query=context[-1][1],
        chosen=chosen[-1][1],
        rejected=rejected[-1][1],
    )


def load_pairs(path: str | Path, limit: int | None = None) -> Iterator[PreferencePair]:
    count = 0
    with open(path, encoding="utf-8") as f:
        for line in f:
            pair = parse_row(json.loads(line))
            if pair is None:
                continue
            yield pair
            count += 1
            if limit is not None and count >= limit:
                return

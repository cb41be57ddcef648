"""Tokenizers for the judge tests: the tiny RRM-shaped Qwen (built once) and the CPU default."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from reward_service.domain import Pair, Turn
from reward_service.judge import Judge, JudgeProfile
from reward_service.testing.tiny_qwen import build_tiny_rrm_model

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
SMOL_DIR = REPO / ".cache" / "models" / "SmolLM2-135M-Instruct"

_TURN = re.compile(r"\n\n(Human|Assistant): ")
_ROLES = {"Human": "user", "Assistant": "assistant"}


def _dialogue(text: str) -> list[Turn]:
    parts = _TURN.split(text)
    assert parts[0] == "", text[:80]
    return [Turn(_ROLES[r], c) for r, c in zip(parts[1::2], parts[2::2], strict=True)]


def load_hh_pairs() -> list[Pair]:
    """Real multi-turn pairs: history + last user turn as the query, chosen vs rejected."""
    pairs = []
    path = FIXTURES / "hh-rlhf" / "harmless-base-test-64.jsonl"
    for line in path.read_text("utf-8").splitlines():
        row = json.loads(line)
        chosen, rejected = _dialogue(row["chosen"]), _dialogue(row["rejected"])
        assert chosen[:-1] == rejected[:-1] and chosen[-2].role == "user"
        pairs.append(
            Pair(
                query=chosen[-2].content,
                first=chosen[-1].content,
                second=rejected[-1].content,
                history=tuple(chosen[:-2]),
            )
        )
    return pairs


@pytest.fixture(scope="session")
def hh_pairs() -> list[Pair]:
    return load_hh_pairs()


@pytest.fixture(scope="session")
def tiny_rrm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built afresh each session (a few seconds), so the builder itself is always exercised."""
    return build_tiny_rrm_model(tmp_path_factory.mktemp("models") / "tiny-rrm")


@pytest.fixture(scope="session")
def qwen_tokenizer(tiny_rrm_dir: Path) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_rrm_dir)


@pytest.fixture(scope="session")
def smol_tokenizer() -> PreTrainedTokenizerBase:
    if not (SMOL_DIR / "tokenizer.json").exists():
        pytest.skip(f"CPU default model not converted at {SMOL_DIR} (run `rrm model`)")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(SMOL_DIR)


@pytest.fixture(scope="session")
def rrm_judge(qwen_tokenizer: PreTrainedTokenizerBase) -> Judge:
    return Judge(qwen_tokenizer, JudgeProfile.RRM)


@pytest.fixture(scope="session")
def smol_judge(smol_tokenizer: PreTrainedTokenizerBase) -> Judge:
    return Judge(smol_tokenizer, JudgeProfile.GENERIC)


@pytest.fixture(scope="session", params=["qwen", "smol"])
def tokenizer_and_judge(
    request: pytest.FixtureRequest,
) -> tuple[PreTrainedTokenizerBase, Judge]:
    """Both real tokenizers, for properties that must hold for each."""
    if request.param == "qwen":
        return request.getfixturevalue("qwen_tokenizer"), request.getfixturevalue("rrm_judge")
    return request.getfixturevalue("smol_tokenizer"), request.getfixturevalue("smol_judge")

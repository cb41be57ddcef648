"""Judge: profile detection, verdict tokens, forced / re-read continuations and p(first)."""

from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reward_service.domain import Pair
from reward_service.judge import Judge, JudgeProfile, detect_profile

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

THINK_CLOSE_ID = 151649


def test_profiles_are_detected_from_the_template(
    qwen_tokenizer: PreTrainedTokenizerBase, smol_tokenizer: PreTrainedTokenizerBase
) -> None:
    assert detect_profile(qwen_tokenizer) is JudgeProfile.RRM
    assert detect_profile(smol_tokenizer) is JudgeProfile.GENERIC


def test_verdict_tokens_on_qwen(rrm_judge: Judge, qwen_tokenizer: PreTrainedTokenizerBase) -> None:
    """Qwen: "\\boxed{Assistant 1}" = \\ | boxed | { | Assistant | ' ' | 1 | }."""
    assert [qwen_tokenizer.decode([i]) for i in rrm_judge.verdict_prefix_ids] == [
        "\\",
        "boxed",
        "{",
        "Assistant",
        " ",
    ]
    assert rrm_judge.verdict_token_ids == (16, 17)
    assert [qwen_tokenizer.decode([i]) for i in rrm_judge.verdict_token_ids] == ["1", "2"]


def test_verdict_tokens_on_smollm2(
    smol_judge: Judge, smol_tokenizer: PreTrainedTokenizerBase
) -> None:
    """SmolLM2 (as converted from GGUF): \\ | box | ed | { | Ass | istant | ' ' | 1 | }."""
    assert [smol_tokenizer.decode([i]) for i in smol_judge.verdict_prefix_ids] == [
        "\\",
        "box",
        "ed",
        "{",
        "Ass",
        "istant",
        " ",
    ]
    assert [smol_tokenizer.decode([i]) for i in smol_judge.verdict_token_ids] == ["1", "2"]


def test_verdict_tokens_continue_the_prefix(
    tokenizer_and_judge: tuple[PreTrainedTokenizerBase, Judge],
) -> None:
    tok, judge = tokenizer_and_judge
    for n, token in zip((1, 2), judge.verdict_token_ids, strict=True):
        ids = tok.encode(f"\\boxed{{Assistant {n}}}", add_special_tokens=False)
        assert ids[: len(judge.verdict_prefix_ids) + 1] == [*judge.verdict_prefix_ids, token]


def test_rrm_forced_suffix_closes_open_reasoning(
    rrm_judge: Judge, qwen_tokenizer: PreTrainedTokenizerBase
) -> None:
    suffix = rrm_judge.forced_suffix_ids("I am still thinking about")
    assert suffix.count(THINK_CLOSE_ID) == 1  # the real </think> token, not its spelling
    assert qwen_tokenizer.decode(suffix) == "\n</think>\n\n\\boxed{Assistant "
    closed = rrm_judge.forced_suffix_ids("thought</think>\n\nThe better one is")
    assert THINK_CLOSE_ID not in closed
    assert qwen_tokenizer.decode(closed) == "\n\n\\boxed{Assistant "
    assert closed == qwen_tokenizer.encode("\n\n\\boxed{Assistant ", add_special_tokens=False)


def test_generic_forced_suffix(smol_judge: Judge, smol_tokenizer: PreTrainedTokenizerBase) -> None:
    suffix = smol_judge.forced_suffix_ids("I think </think> is just text here")
    assert smol_tokenizer.decode(suffix) == "\n\n\\boxed{Assistant "
    assert suffix == smol_judge.forced_suffix_ids("")


def test_forced_overhead_covers_every_suffix(
    tokenizer_and_judge: tuple[PreTrainedTokenizerBase, Judge],
) -> None:
    _, judge = tokenizer_and_judge
    for completion in ("", "a</think>b", "x" * 100):
        assert len(judge.forced_suffix_ids(completion)) + 1 <= judge.forced_overhead
    assert judge.forced_overhead <= 12


def test_reread_reproduces_the_completion_up_to_the_verdict(
    rrm_judge: Judge, qwen_tokenizer: PreTrainedTokenizerBase
) -> None:
    completion = "Both are fine.\n</think>\n\nI pick \\boxed{Assistant 2}."
    parsed = rrm_judge.parse(completion)
    ids = rrm_judge.reread_ids(completion, parsed)
    assert ids.count(THINK_CLOSE_ID) == 1
    assert qwen_tokenizer.decode(ids) == "Both are fine.\n</think>\n\nI pick \\boxed{Assistant "
    # canonical tokenisation at the junction: " \\" is one Qwen token, as the model writes it
    assert ids == qwen_tokenizer.encode(
        "Both are fine.\n</think>\n\nI pick \\boxed{Assistant ", add_special_tokens=False
    )
    # and the canonical continuation of that text is indeed the verdict token
    full = qwen_tokenizer.encode(completion, add_special_tokens=False)
    assert full[: len(ids) + 1] == [*ids, rrm_judge.verdict_token_ids[1]]


def test_reread_of_an_fbox_reads_at_the_same_place(
    smol_judge: Judge, smol_tokenizer: PreTrainedTokenizerBase
) -> None:
    completion = "Reasoning.\n\\fbox{Assistant 1}"
    ids = smol_judge.reread_ids(completion, smol_judge.parse(completion))
    assert smol_tokenizer.decode(ids) == "Reasoning.\n\\boxed{Assistant "


def test_reread_needs_a_box(rrm_judge: Judge) -> None:
    with pytest.raises(ValueError, match="no verdict box"):
        rrm_judge.reread_ids("no box", rrm_judge.parse("no box"))


def test_p_first_is_a_softmax_over_the_two_verdicts(rrm_judge: Judge) -> None:
    one, two = rrm_judge.verdict_token_ids
    p = rrm_judge.p_first({one: math.log(0.3), two: math.log(0.1), 5: math.log(0.6)})
    assert p == pytest.approx(0.75)
    assert rrm_judge.p_first({one: -1.0, two: -1.0}) == pytest.approx(0.5)


def test_p_first_bounds_a_missing_verdict_by_the_smallest_logprob(rrm_judge: Judge) -> None:
    one, two = rrm_judge.verdict_token_ids
    top = {one: math.log(0.5), 7: math.log(0.3), 8: math.log(0.05)}
    assert rrm_judge.p_first(top) == pytest.approx(0.5 / 0.55)
    top = {two: math.log(0.5), 7: math.log(0.3), 8: math.log(0.05)}
    assert rrm_judge.p_first(top) == pytest.approx(0.05 / 0.55)
    assert rrm_judge.p_first({7: -0.1, 8: -3.0}) is None
    assert rrm_judge.p_first({one: -math.inf, two: -math.inf}) is None
    assert rrm_judge.p_first({one: -math.inf, two: -1.0}) == 0.0


@given(a=st.floats(-1e6, 0), b=st.floats(-1e6, 0))
def test_p_first_is_a_probability_and_antisymmetric(a: float, b: float) -> None:
    one, two = 16, 17  # Qwen's verdict tokens; p_first only needs the ids
    judge = _bare_judge((one, two))
    p, q = judge.p_first({one: a, two: b}), judge.p_first({one: b, two: a})
    assert p is not None and q is not None
    assert 0.0 <= p <= 1.0 and math.isfinite(p)
    assert p + q == pytest.approx(1.0)


def _bare_judge(verdict_ids: tuple[int, int]) -> Judge:
    judge = Judge.__new__(Judge)
    judge.verdict_token_ids = verdict_ids
    return judge


def test_template_version_names_profile_and_content(
    qwen_tokenizer: PreTrainedTokenizerBase, rrm_judge: Judge
) -> None:
    version = rrm_judge.template_version
    assert version.startswith("rrm/") and len(version) == len("rrm/") + 12
    assert Judge(qwen_tokenizer, JudgeProfile.RRM).template_version == version  # stable
    assert Judge(qwen_tokenizer, JudgeProfile.GENERIC).template_version.startswith("generic/")
    other = copy.deepcopy(qwen_tokenizer)
    other.chat_template = str(qwen_tokenizer.chat_template) + "{{ '' }}"
    assert Judge(other, JudgeProfile.RRM).template_version != version


def test_render_returns_the_prompt_length_the_worker_checks(rrm_judge: Judge) -> None:
    short = len(rrm_judge.render(Pair("q", "a", "b")))
    longer = len(rrm_judge.render(Pair("q", "a " * 100, "b")))
    assert 300 < short < longer

"""Verdict parsing: the reference's rule, exactly, and robust to anything a judge may write."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reward_service.domain import ParseStatus, Verdict
from reward_service.judge.verdict import ParsedVerdict, last_box, parse_completion

OK, BAD = ParseStatus.OK, ParseStatus.UNPARSEABLE
FIRST, SECOND, NONE = Verdict.FIRST, Verdict.SECOND, Verdict.UNDECIDED


def rrm(text: str) -> ParsedVerdict:
    return parse_completion(text, starts_in_reasoning=True)


def generic(text: str) -> ParsedVerdict:
    return parse_completion(text, starts_in_reasoning=False)


@pytest.mark.parametrize(
    ("completion", "verdict", "status"),
    [
        ("think...\n</think>\n\n\\boxed{Assistant 1}", FIRST, OK),
        ("think...\n</think>\n\n\\boxed{Assistant 2}", SECOND, OK),
        ("t</think>\\fbox{Assistant 2}", SECOND, OK),
        # the last box wins, whichever kind
        ("t</think>\\boxed{Assistant 1} no, \\boxed{Assistant 2}", SECOND, OK),
        ("t</think>\\boxed{Assistant 2} hmm \\fbox{Assistant 1}", FIRST, OK),
        # boxes in the reasoning do not count
        ("\\boxed{Assistant 1}</think>The answer is \\boxed{Assistant 2}.", SECOND, OK),
        ("\\boxed{Assistant 1}</think>no box", NONE, BAD),
        # text after the LAST </think>
        ("a</think>\\boxed{Assistant 1}</think>\\boxed{Assistant 2}", SECOND, OK),
        ("a</think>\\boxed{Assistant 1}</think>nothing", NONE, BAD),
        # reasoning never closed -> unparseable even with a box
        ("I think \\boxed{Assistant 1}", NONE, BAD),
        ("", NONE, BAD),
        # exact content only
        ("t</think>\\boxed{ Assistant 1}", NONE, BAD),
        ("t</think>\\boxed{Assistant 1 }", NONE, BAD),
        ("t</think>\\boxed{assistant 1}", NONE, BAD),
        ("t</think>\\boxed{1}", NONE, BAD),
        ("t</think>\\boxed{Assistant 3}", NONE, BAD),
        ("t</think>\\boxed{\\text{Assistant 1}}", NONE, BAD),
        # unclosed last box is not replaced by an earlier closed one
        ("t</think>\\boxed{Assistant 1} and \\boxed{Assistant 2", NONE, BAD),
        # brace matching
        ("t</think>\\boxed{Assistant {1}}", NONE, BAD),
        ("t</think>\\boxed{Assistant 2}}}", SECOND, OK),
    ],
)
def test_rrm_rule(completion: str, verdict: Verdict, status: ParseStatus) -> None:
    parsed = rrm(completion)
    assert (parsed.verdict, parsed.status) == (verdict, status)


def test_rrm_reasoning_and_box_offset() -> None:
    text = "step 1\nstep 2\n</think>\n\nSo: \\boxed{Assistant 2}"
    parsed = rrm(text)
    assert parsed.reasoning == "step 1\nstep 2\n"
    assert parsed.boxed_start == text.index("\\boxed")
    unclosed = rrm("no end \\boxed{Assistant 1}")
    assert unclosed.reasoning == "no end \\boxed{Assistant 1}"
    assert unclosed.boxed_start is None
    assert rrm("a</think>\\boxed{Assistant 9}").boxed_start == len("a</think>")


def test_generic_reads_the_whole_completion() -> None:
    assert generic("Assistant 1 is better. \\boxed{Assistant 1}").verdict is FIRST
    assert generic("</think>?? \\boxed{Assistant 2}").verdict is SECOND
    parsed = generic("no verdict here")
    assert (parsed.verdict, parsed.status, parsed.boxed_start) == (NONE, BAD, None)
    assert parsed.reasoning == "no verdict here"


def test_last_box() -> None:
    assert last_box("x") is None
    assert last_box("\\boxed{a{b}c} \\fbox{d}") == (14, "d")
    assert last_box("\\boxed{a{b}c}") == (0, "a{b}c")
    assert last_box("\\boxed{open") == (0, None)
    assert last_box("\\boxed{a}", start=1) is None


_TEXT = st.text(alphabet=st.sampled_from(list("ab {}\\\n</think>Assistant12fboxed")), max_size=60)


@given(
    prefix=_TEXT, verdict=st.sampled_from([FIRST, SECOND]), tail=st.sampled_from(["", ".", " ok"])
)
def test_a_final_clean_verdict_always_wins(prefix: str, verdict: Verdict, tail: str) -> None:
    """Whatever came before (boxes, braces, tags), a closing box at the end decides."""
    text = f"{prefix}</think>\\boxed{{Assistant {int(verdict)}}}{tail}"
    assert rrm(text).verdict is verdict
    assert generic(text).verdict is verdict


@given(text=st.text(max_size=200))
def test_parse_never_raises_and_is_consistent(text: str) -> None:
    for parsed in (rrm(text), generic(text)):
        assert (parsed.status is OK) == (parsed.verdict is not NONE)
        if parsed.status is OK:
            assert parsed.boxed_start is not None
            assert text[parsed.boxed_start :].startswith(("\\boxed{", "\\fbox{"))

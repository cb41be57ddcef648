"""An RRM reward mixed with a rule-based answer check (examples/openrlhf/mixed_reward_func.py),
loaded and called by OpenRLHF 0.11.2's own reward-func loader and rollout, judged by the real
gateway with the scripted judge (the longer response wins, p = 0.9)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from openrlhf.utils.agent import SingleTurnAgentExecutor

from policy_adapter.rule_rewards import answers_match, final_answer, last_boxed
from tests.adapter.conftest import address_of
from tests.adapter.harness import Rollout, ScriptedPolicy, chat_prompt
from tests.adapter.rollouts import generate_samples
from tests.gateway.conftest import Stack

MIXED_FILE = Path(__file__).resolve().parents[2] / "examples" / "openrlhf" / "mixed_reward_func.py"
REFERENCE = "6 times 7 is \\boxed{42}"
RIGHT_AND_LONG = "Six sevens: 7+7+7+7+7+7 = 42, so the answer is \\boxed{42}"  # p = 0.9
WRONG_AND_LONG = "Six sevens: 7+7+7+7+7+7 = 41, so the answer is \\boxed{41}"  # p = 0.9
RIGHT_AND_SHORT = "\\boxed{42}"  # p = 0.1


async def test_mixed_reward_file_loaded_and_called_by_openrlhf(
    scripted: Stack, rollout: Rollout, tokenizer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RRM_ADDRESS", address_of(scripted))
    monkeypatch.setenv("RRM_MIX_RRM_WEIGHT", "0.3")
    monkeypatch.setenv("RRM_MIX_RULE_WEIGHT", "0.7")
    executor = SingleTurnAgentExecutor(remote_rm_url=str(MIXED_FILE))
    assert executor.reward_func is not None  # OpenRLHF's importlib loader found reward_func

    texts = [RIGHT_AND_LONG, WRONG_AND_LONG, RIGHT_AND_SHORT]
    actor = rollout.actor(executor, ScriptedPolicy(tokenizer, texts))
    prompt = chat_prompt(tokenizer, "What is 6 x 7?")
    outputs = await generate_samples(actor, tokenizer, prompt, 3, REFERENCE)
    expected = [0.3 * 0.9 + 0.7, 0.3 * 0.9, 0.3 * 0.1 + 0.7]
    assert [o["reward"] for o in outputs] == [pytest.approx([r]) for r in expected]
    assert [o["scores"] for o in outputs] == [[1.0], [0.0], [1.0]]
    experience = rollout.experience(outputs[0])
    assert experience.rewards.flatten().tolist() == pytest.approx([expected[0]])
    assert experience.info["rule_correct"].flatten().tolist() == [1.0]
    assert experience.info["rrm_p_win"].flatten().tolist() == pytest.approx([0.9])

    # a label with a worked reference and a separate short answer
    label = {"reference": "Six times seven is forty-two.", "answer": "42"}
    [result] = await executor._fetch_rewards_via_func([prompt + RIGHT_AND_LONG], [prompt], [label])
    assert result["rewards"] == [pytest.approx(0.3 * 0.9 + 0.7)]


@pytest.mark.parametrize(
    ("response", "expected", "match"),
    [
        ("so \\boxed{\\frac{1}{2}}", "0.5", True),
        ("first \\boxed{3} then \\boxed{4}", "4", True),
        ("Natalia sold 72 clips.\n#### 72", "72", True),
        ("The answer is 1,000.", "1000", True),
        ("The answer is: Paris.", "paris", True),
        ("I get 12 and then 13", "13", True),
        ("I get 12 and then 13", "12", False),
        ("\\boxed{41}", "42", False),
        ("no answer here", "42", False),
        ("cut off \\boxed{4", "4", False),  # a truncated box is no answer, not "4"
    ],
)
def test_answers_match(response: str, expected: str, match: bool) -> None:
    assert answers_match(response, expected) is match


def test_final_answer_keeps_nested_braces() -> None:
    assert last_boxed("x = \\boxed{\\sqrt{2}+1}.") == "\\sqrt{2}+1"
    assert final_answer("plain words") is None

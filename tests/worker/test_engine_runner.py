"""The production vote runner tokenises each vote's judge prompt once (its context-length check
and the vote share the rendered ids).

The judge and tokenizer are real (the tiny RRM-shaped Qwen); the engine is `ScriptedEngine`, a
test double (the real engines are tested in tests/engine/)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from reward_service.domain import Pair, ParseStatus, Verdict, VoteTask
from reward_service.judge import Judge, JudgeProfile
from reward_service.judge.judge import VERDICT_TEXTS
from reward_service.testing.scripted_engine import EngineCall, ScriptedEngine, ScriptedReply
from reward_service.testing.tiny_qwen import build_tiny_rrm_tokenizer
from reward_service.worker.engine_runner import EngineVoteRunner, PromptTooLong

PAIR = Pair(query="Capital of France?", first="Paris, on the Seine.", second="Lyon.")
TASK = VoteTask(pair=PAIR, max_reasoning_tokens=64, temperature=0.6, seed=7)


class CountingTokenizer:
    """Wraps the judge's BPE tokenizer (a `tokenizers.Tokenizer`) and records the texts of
    every encode call; everything else is delegated."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.calls: list[tuple[str, ...]] = []

    def encode(self, text: str, *args: Any, **kwargs: Any) -> Any:
        self.calls.append((text,))
        return self._inner.encode(text, *args, **kwargs)

    def encode_batch(self, texts: list[str], *args: Any, **kwargs: Any) -> Any:
        self.calls.append(tuple(texts))
        return self._inner.encode_batch(texts, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def prompt_encodes(self) -> int:
        """Calls whose texts hold a response of the pair: the judge prompt being tokenised."""
        return sum(any(PAIR.first in text for text in call) for call in self.calls)


@pytest.fixture
def judge_and_counter() -> tuple[Judge, CountingTokenizer]:
    judge = Judge(build_tiny_rrm_tokenizer(), JudgeProfile.RRM)
    raw = judge._renderer.raw
    counter = CountingTokenizer(raw._tokenizer)
    raw._tokenizer = counter  # type: ignore[assignment]
    return judge, counter


def natural_verdict(judge: Judge) -> ScriptedReply:
    """Reasoning that writes "\\boxed{Assistant 1}" itself, with logprobs at every token."""
    text = "Paris is right.\n</think>\n\n" + VERDICT_TEXTS[0][:-1] + "}"
    head = judge.reread_ids(text, judge.parse(text))
    ids = (
        *head,
        judge.verdict_token_ids[0],
        *judge._tokenizer.encode("}", add_special_tokens=False),
    )
    one, two = judge.verdict_token_ids
    top = [{token: -0.1} for token in ids]
    top[len(head)] = {one: math.log(0.8), two: math.log(0.2)}
    return ScriptedReply(text=text, token_ids=ids, finish_reason="stop", logprobs=tuple(top))


def budget_then_read(judge: Judge) -> ScriptedEngine:
    """Reasoning runs out of budget; the forced read says Assistant 2."""
    one, two = judge.verdict_token_ids

    def reply(call: EngineCall) -> ScriptedReply:
        if call.spec.max_tokens == 1:
            top = {one: math.log(0.3), two: math.log(0.6)}
            return ScriptedReply(text="2", token_ids=(two,), logprobs=(top,))
        return ScriptedReply(text="Lyon is", token_ids=(100, 101), finish_reason="length")

    return ScriptedEngine(reply)


async def test_a_natural_verdict_tokenises_only_its_prompt_once(
    judge_and_counter: tuple[Judge, CountingTokenizer],
) -> None:
    judge, counter = judge_and_counter
    engine = ScriptedEngine([natural_verdict(judge)])
    runner = EngineVoteRunner(judge, engine, max_model_len=4096)
    counter.calls.clear()  # building the reply and the runner encoded text too
    result = await runner.run(TASK, "r1")
    assert (result.verdict, result.status) == (Verdict.FIRST, ParseStatus.OK)
    # one tokenizer call in the whole vote: the prompt's pieces, in one batch
    assert len(counter.calls) == 1 and counter.prompt_encodes() == 1
    assert engine.calls[0].prompt_ids == tuple(judge.render(PAIR))


async def test_every_vote_tokenises_its_prompt_once(
    judge_and_counter: tuple[Judge, CountingTokenizer],
) -> None:
    judge, counter = judge_and_counter
    engine = budget_then_read(judge)
    runner = EngineVoteRunner(judge, engine, max_model_len=4096)
    for i in range(5):
        result = await runner.run(TASK, f"r{i}")
        assert (result.verdict, result.status) == (Verdict.SECOND, ParseStatus.BUDGET_FORCED)
    assert counter.prompt_encodes() == 5
    prompt = tuple(judge.render(PAIR))
    reasoning = [c for c in engine.calls if c.spec.max_tokens != 1]
    assert [c.prompt_ids for c in reasoning] == [prompt] * 5
    # the forced read continues the same prompt ids
    reads = [c for c in engine.calls if c.spec.max_tokens == 1]
    assert all(c.prompt_ids[: len(prompt)] == prompt for c in reads)


async def test_a_prompt_too_long_is_refused_before_the_engine(
    judge_and_counter: tuple[Judge, CountingTokenizer],
) -> None:
    judge, counter = judge_and_counter
    engine = ScriptedEngine()
    runner = EngineVoteRunner(judge, engine, max_model_len=64)
    with pytest.raises(PromptTooLong, match="exceeds the model context of 64"):
        await runner.run(TASK, "r")
    assert engine.calls == [] and counter.prompt_encodes() == 1

"""The production `VoteRunner`: render with the judge, generate on the engine, parse, force a
verdict when the reasoning budget runs out (see `worker/vote.py`)."""

from __future__ import annotations

from reward_service.domain import VoteResult, VoteTask
from reward_service.engine.base import Engine
from reward_service.judge import Judge
from reward_service.worker.vote import judge_vote


class PromptTooLong(ValueError):
    """The rendered prompt plus the reasoning budget does not fit the model's context."""


class EngineVoteRunner:
    def __init__(
        self, judge: Judge, engine: Engine, *, max_model_len: int, one_call: bool = True
    ) -> None:
        self.judge = judge
        self.engine = engine
        self.max_model_len = max_model_len
        self.one_call = one_call
        # tokenises the forced suffixes: once, not per vote
        self._forced_overhead = judge.forced_overhead

    async def run(
        self, task: VoteTask, request_id: str, verdict_by: float | None = None
    ) -> VoteResult:
        prompt = self.judge.render(task.pair)
        prompt_len = len(prompt)
        # room for the forced end of reasoning, verdict prefix and the read token
        needed = prompt_len + task.max_reasoning_tokens + self._forced_overhead
        if needed > self.max_model_len:
            raise PromptTooLong(
                f"prompt is {prompt_len} tokens; with max_reasoning_tokens "
                f"{task.max_reasoning_tokens} it exceeds the model context of {self.max_model_len}"
            )
        return await judge_vote(
            self.judge,
            self.engine,
            task,
            request_id,
            verdict_by,
            one_call=self.one_call,
            prompt_ids=prompt,
        )

    async def check(self) -> None:
        await self.engine.check()

    async def recover(self) -> None:
        await self.engine.recover()

"""Rejects, at the gateway, comparisons whose rendered prompt cannot fit the model's context.

Without it such a request would travel to a worker and come back as a failed judgment; with it
the caller gets INVALID_ARGUMENT saying how long the prompt is and what would fit.
"""

from __future__ import annotations

from typing import Protocol

from reward_service.domain import Pair
from reward_service.errors import InvalidInput
from reward_service.gateway.planner import Comparison
from reward_service.judge import Judge


class PromptGuard(Protocol):
    def check(self, c: Comparison) -> None:
        """Raise InvalidInput when `c` cannot be judged within the context window."""
        ...


class ContextGuard:
    def __init__(self, judge: Judge, max_model_len: int) -> None:
        self.judge = judge
        self.max_model_len = max_model_len

    def check(self, c: Comparison) -> None:
        # Both shown orders render to the same length; one render per comparison suffices.
        tokens = len(self.judge.render(Pair(c.query, c.response_a, c.response_b, c.history)))
        needed = tokens + c.max_reasoning_tokens + self.judge.forced_overhead
        if needed > self.max_model_len:
            room = self.max_model_len - tokens - self.judge.forced_overhead
            raise InvalidInput(
                "prompt",
                f"the rendered prompt is {tokens} tokens; with max_reasoning_tokens "
                f"{c.max_reasoning_tokens} it exceeds the model context of {self.max_model_len}"
                + (f" (at most {room} reasoning tokens fit)" if room > 0 else ""),
            )

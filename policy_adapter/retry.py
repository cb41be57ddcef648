"""When to retry a call and how long to wait: exponential backoff with jitter, never shorter
than the delay the server asked for (google.rpc.RetryInfo), never past the call's deadline."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retries apply to UNAVAILABLE and RESOURCE_EXHAUSTED only; every other status is final.

    `max_attempts` counts the first try. The wait before retry k (1-based) is
    `min(max_backoff_s, initial_backoff_s * multiplier**(k-1))`, at least the server's
    RetryInfo delay, then stretched by a random factor in [1, 1 + jitter] so that many clients
    turned away at once do not come back at once.
    """

    max_attempts: int = 5
    initial_backoff_s: float = 0.25
    max_backoff_s: float = 10.0
    multiplier: float = 2.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.initial_backoff_s < 0 or self.max_backoff_s < 0 or self.jitter < 0:
            raise ValueError("backoff and jitter must not be negative")
        if self.multiplier < 1:
            raise ValueError("multiplier must be at least 1")

    def delay_s(
        self, retry: int, server_hint_s: float | None, rng: random.Random | None = None
    ) -> float:
        """The wait before retry number `retry` (1 = the first retry)."""
        base = min(self.max_backoff_s, self.initial_backoff_s * self.multiplier ** (retry - 1))
        if server_hint_s is not None:
            base = max(base, server_hint_s)
        return base * (1.0 + (rng or random).uniform(0.0, self.jitter))


NO_RETRY = RetryPolicy(max_attempts=1)

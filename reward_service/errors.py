"""The domain exception tree. Each class maps to exactly one gRPC status in `gateway/status.py`."""

from __future__ import annotations


class RRMError(Exception):
    """Base of every error the service raises on purpose."""


class InvalidInput(RRMError):
    """A request field is wrong; `field` names it (e.g. "pairs[2].response_a")."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class Overloaded(RRMError):
    """Too much queued work (or too many calls from one client); retry after `retry_after_s`."""

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class Unavailable(RRMError):
    """A dependency (engine, queue) is down or not ready yet; safe to retry."""


class DeadlineExceeded(RRMError):
    """The caller's deadline passed before every judgment came back."""


class JudgmentFailed(RRMError):
    """No vote of an item could be made (engine error, retries exhausted). Never a reward of 0."""


class EngineTimeout(Unavailable):
    """The engine took longer than its request timeout: overloaded or down, never the job's
    fault (a healthy but busy server is slow for every job alike)."""


class EngineDead(Unavailable):
    """The inference engine died; in-flight work must be handed back and the engine restarted."""


class Unauthenticated(RRMError):
    """Missing or wrong credentials."""

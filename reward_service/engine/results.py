"""What both engines agree on when they turn a backend's answer into a `Generation`."""

from __future__ import annotations

from pathlib import PurePosixPath

from reward_service.errors import Unavailable

# The reasons the judge understands; anything else from a backend is an error, not a guess.
FINISH_REASONS = frozenset({"stop", "length", "abort"})


def display_model_name(served_model_name: str, model: str) -> str:
    """The configured served name, else the last part of the model path or id."""
    return served_model_name or PurePosixPath(model.rstrip("/")).name or model


def finish_reason(reason: str | None, request_id: str) -> str:
    """Map a backend finish reason onto the contract's "stop" / "length" / "abort".

    vLLM reports "error" for a retryable request-level failure (e.g. a KV load error), so it
    becomes `Unavailable` rather than a judgment built on a truncated generation.
    """
    if reason in FINISH_REASONS:
        return reason
    if reason == "error":
        raise Unavailable(f"engine reported an internal error for request {request_id}")
    raise Unavailable(f"engine finished request {request_id} with unknown reason {reason!r}")

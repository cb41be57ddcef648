"""What both engines agree on when they turn a backend's answer into a `Generation`."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import PurePosixPath
from typing import overload

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


class PositionLogprobs(Sequence[Mapping[int, float]]):
    """Per-position `{token_id: logprob}`, built only for the positions that are read.

    A reasoning call asks for top-k logprobs at every generated token so that a natural verdict
    needs no second request, but the judge reads one position of hundreds: converting them all
    would cost more than the engine's own step.
    """

    def __init__(self, length: int, position: Callable[[int], dict[int, float]]) -> None:
        self._length = length
        self._position = position

    def __len__(self) -> int:
        return self._length

    @overload
    def __getitem__(self, index: int) -> Mapping[int, float]: ...

    @overload
    def __getitem__(self, index: slice) -> Sequence[Mapping[int, float]]: ...

    def __getitem__(
        self, index: int | slice
    ) -> Mapping[int, float] | Sequence[Mapping[int, float]]:
        if isinstance(index, slice):
            return [self._position(i) for i in range(*index.indices(self._length))]
        if index < 0:
            index += self._length
        if not 0 <= index < self._length:
            raise IndexError(f"logprobs position {index} out of range ({self._length})")
        return self._position(index)

"""The judgment budget of one call: items x matches x votes (x2 with ORDER_BOTH), checked before
any work is planned.

Each per-field limit is reasonable alone, but their product is not: a RankBatch of 512 round
robins of 32 candidates with 16 votes in both orders is 8 million judgments, enough to fill the
queue for days and to pin the gateway's CPU planning them. The count is taken from the raw
request (an upper bound: early stopping may save votes), so it costs microseconds.
"""

from __future__ import annotations

from collections.abc import Iterable

from rrm.v1 import reward_pb2 as pb

from reward_service.domain import Limits
from reward_service.errors import InvalidInput

LIMIT_NAME = "max_judgments_per_call"


def per_comparison(options: pb.JudgeOptions) -> int:
    return max(options.votes, 1) * (2 if options.order == pb.ORDER_BOTH else 1)


def matches(candidates: int, strategy: int) -> int:
    """Knockout plays n - 1 matches; the round robins (Elo, Bradley-Terry, win rate) every pair."""
    if strategy == pb.STRATEGY_KNOCKOUT:
        return max(candidates - 1, 0)
    return candidates * (candidates - 1) // 2


def compare(req: pb.CompareRequest) -> int:
    return per_comparison(req.options)


def rank(req: pb.RankRequest) -> int:
    strategy = req.strategy or pb.STRATEGY_KNOCKOUT
    return matches(len(req.candidates), strategy) * per_comparison(req.options)


def score(req: pb.ScoreRequest) -> int:
    if req.mode == pb.SCORE_MODE_REFERENCE:
        return len(req.candidates) * per_comparison(req.options)
    return matches(len(req.candidates), req.strategy or pb.STRATEGY_ELO) * per_comparison(
        req.options
    )


def check(counts: Iterable[int], field: str, limits: Limits) -> None:
    """INVALID_ARGUMENT on `field`, naming the limit, when the call could need too many."""
    total = sum(counts)
    if total > limits.max_judgments_per_call:
        raise InvalidInput(
            field,
            f"needs up to {total} judgments (items x matches x votes), over the "
            f"{LIMIT_NAME} limit of {limits.max_judgments_per_call}",
        )

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
from reward_service.ranking import comparisons_bound
from reward_service.ranking.swiss import default_rounds

LIMIT_NAME = "max_judgments_per_call"
# STRATEGY_ADAPTIVE without a judgment_budget: this many judgments per comparison it may need.
ADAPTIVE_BUDGET_FACTOR = 3


def per_comparison(options: pb.JudgeOptions) -> int:
    """A cascade may run both of its stages: the short one (in both orders when asked) and the
    full one."""
    votes = max(options.votes, 1)
    full = votes * (2 if options.order == pb.ORDER_BOTH else 1)
    if not options.HasField("cascade"):
        return full
    short_both = options.order == pb.ORDER_BOTH or options.cascade.short_both_orders
    return full + votes * (2 if short_both else 1)


def matches(candidates: int, strategy: int) -> int:
    """Knockout and in-group reference play n - 1 matches, the anchored knockout at most
    2(n - 1), Swiss n/2 per round; the round robins (Elo, Bradley-Terry, win rate) every pair."""
    n = max(candidates, 0)
    if strategy in (pb.STRATEGY_KNOCKOUT, pb.STRATEGY_IN_GROUP_REFERENCE):
        return max(n - 1, 0)
    if strategy == pb.STRATEGY_ANCHORED_KNOCKOUT:
        return 2 * max(n - 1, 0)
    if strategy == pb.STRATEGY_SWISS:
        return n // 2 * default_rounds(n)
    return n * (n - 1) // 2


def adaptive_k(n: int, options: pb.AdaptiveOptions) -> int:
    """The size of the top the adaptive ranking settles (lenient: validation names bad values)."""
    if options.target == pb.ADAPTIVE_TARGET_FULL:
        return max(n, 1)
    if options.target == pb.ADAPTIVE_TARGET_TOP_K:
        return min(max(options.top_k, 1), max(n, 1))
    return 1


def adaptive_minimum(n: int, options: pb.AdaptiveOptions, both_orders: bool) -> int:
    """Judgments the target may need at one per comparison: the least budget accepted."""
    return comparisons_bound(max(n, 1), adaptive_k(n, options)) * (2 if both_orders else 1)


def adaptive_budget(n: int, options: pb.AdaptiveOptions, both_orders: bool) -> int:
    """The adaptive ranking's judgment cap: the caller's, else ADAPTIVE_BUDGET_FACTOR x the
    least."""
    least = adaptive_minimum(n, options, both_orders)
    return options.judgment_budget or ADAPTIVE_BUDGET_FACTOR * least


def _tournament(
    candidates: int, strategy: int, options: pb.JudgeOptions, adaptive: pb.AdaptiveOptions
) -> int:
    if strategy == pb.STRATEGY_ADAPTIVE:  # its budget already counts votes and orders
        return adaptive_budget(candidates, adaptive, options.order == pb.ORDER_BOTH)
    return matches(candidates, strategy) * per_comparison(options)


def compare(req: pb.CompareRequest) -> int:
    return per_comparison(req.options)


def rank(req: pb.RankRequest) -> int:
    strategy = req.strategy or pb.STRATEGY_KNOCKOUT
    return _tournament(len(req.candidates), strategy, req.options, req.adaptive)


def score(req: pb.ScoreRequest) -> int:
    if req.mode == pb.SCORE_MODE_REFERENCE:
        return len(req.candidates) * per_comparison(req.options)
    if req.mode == pb.SCORE_MODE_IN_GROUP_REFERENCE:
        return matches(len(req.candidates), pb.STRATEGY_IN_GROUP_REFERENCE) * per_comparison(
            req.options
        )
    strategy = req.strategy or pb.STRATEGY_ELO
    return _tournament(len(req.candidates), strategy, req.options, req.adaptive)


def check(counts: Iterable[int], field: str, limits: Limits) -> None:
    """INVALID_ARGUMENT on `field`, naming the limit, when the call could need too many."""
    total = sum(counts)
    if total > limits.max_judgments_per_call:
        raise InvalidInput(
            field,
            f"needs up to {total} judgments (items x matches x votes), over the "
            f"{LIMIT_NAME} limit of {limits.max_judgments_per_call}",
        )

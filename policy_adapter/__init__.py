"""The trainer side of rrm-serve: a typed client of the rrm.v1 reward service and its adapters
to OpenRLHF (agent executor, reward function, remote RM endpoint) and best-of-N / DPO data."""

from policy_adapter.channel import TLSConfig
from policy_adapter.client import AsyncRewardClient, RewardClient
from policy_adapter.errors import (
    DeadlineExceeded,
    InvalidArgument,
    JudgmentFailed,
    Overloaded,
    RewardServiceError,
    ServiceUnavailable,
    Unauthenticated,
)
from policy_adapter.results import (
    CandidateScore,
    Comparison,
    ItemError,
    JudgeOptions,
    Limits,
    Match,
    Order,
    PairRequest,
    ParseStatus,
    Ranking,
    RankQuery,
    Scores,
    ServiceInfo,
    Strategy,
    Turn,
    Usage,
    Vote,
    Winner,
)
from policy_adapter.retry import RetryPolicy
from policy_adapter.tournament import AdaptiveOptions, AdaptiveTarget

__all__ = [
    "AdaptiveOptions",
    "AdaptiveTarget",
    "AsyncRewardClient",
    "CandidateScore",
    "Comparison",
    "DeadlineExceeded",
    "InvalidArgument",
    "ItemError",
    "JudgeOptions",
    "JudgmentFailed",
    "Limits",
    "Match",
    "Order",
    "Overloaded",
    "PairRequest",
    "ParseStatus",
    "RankQuery",
    "Ranking",
    "RetryPolicy",
    "RewardClient",
    "RewardServiceError",
    "Scores",
    "ServiceInfo",
    "ServiceUnavailable",
    "Strategy",
    "TLSConfig",
    "Turn",
    "Unauthenticated",
    "Usage",
    "Vote",
    "Winner",
]

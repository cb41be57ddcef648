"""Pure ranking algorithms over pairwise judgments: knockout, Elo, Bradley-Terry, win counts,
Swiss, anchored knockout, in-group reference, adaptive ranking, majority voting, and the reward
mappings built on them. No gRPC, Redis, asyncio or I/O here."""

from reward_service.ranking.adaptive import AdaptiveRanking, comparisons_bound
from reward_service.ranking.anchored import AnchoredKnockout
from reward_service.ranking.bradley_terry import BradleyTerryResult, bradley_terry
from reward_service.ranking.elo import EloResult, elo, expected_score, round_robin_pairs
from reward_service.ranking.knockout import (
    KnockoutBracket,
    KnockoutResult,
    PendingMatch,
    break_tie,
    knockout,
    seeded_layout,
)
from reward_service.ranking.outcome import MatchResult, Outcome, split_matches
from reward_service.ranking.reference import InGroupReference
from reward_service.ranking.rewards import (
    bradley_terry_rewards,
    elo_rewards,
    knockout_rewards,
    rank_rewards,
    win_rate_rewards,
)
from reward_service.ranking.schedule import Schedule, ScheduleResult, points, run_schedule
from reward_service.ranking.swiss import SwissTournament
from reward_service.ranking.voting import MajorityVote, votes_needed
from reward_service.ranking.wins import WinsResult, wins

__all__ = [
    "AdaptiveRanking",
    "AnchoredKnockout",
    "BradleyTerryResult",
    "EloResult",
    "InGroupReference",
    "KnockoutBracket",
    "KnockoutResult",
    "MajorityVote",
    "MatchResult",
    "Outcome",
    "PendingMatch",
    "Schedule",
    "ScheduleResult",
    "SwissTournament",
    "WinsResult",
    "bradley_terry",
    "bradley_terry_rewards",
    "break_tie",
    "comparisons_bound",
    "elo",
    "elo_rewards",
    "expected_score",
    "knockout",
    "knockout_rewards",
    "points",
    "rank_rewards",
    "round_robin_pairs",
    "run_schedule",
    "seeded_layout",
    "split_matches",
    "votes_needed",
    "win_rate_rewards",
    "wins",
]

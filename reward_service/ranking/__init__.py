"""Pure ranking algorithms over pairwise judgments: knockout, Elo, Bradley-Terry, win counts,
majority voting, and the reward mappings built on them. No gRPC, Redis, asyncio or I/O here."""

from reward_service.ranking.bradley_terry import BradleyTerryResult, bradley_terry
from reward_service.ranking.elo import EloResult, elo, expected_score, round_robin_pairs
from reward_service.ranking.knockout import (
    KnockoutBracket,
    KnockoutResult,
    PendingMatch,
    break_tie,
    knockout,
)
from reward_service.ranking.outcome import MatchResult, Outcome, split_matches
from reward_service.ranking.rewards import (
    bradley_terry_rewards,
    elo_rewards,
    knockout_rewards,
    rank_rewards,
    win_rate_rewards,
)
from reward_service.ranking.voting import MajorityVote, votes_needed
from reward_service.ranking.wins import WinsResult, wins

__all__ = [
    "BradleyTerryResult",
    "EloResult",
    "KnockoutBracket",
    "KnockoutResult",
    "MajorityVote",
    "MatchResult",
    "Outcome",
    "PendingMatch",
    "WinsResult",
    "bradley_terry",
    "bradley_terry_rewards",
    "break_tie",
    "elo",
    "elo_rewards",
    "expected_score",
    "knockout",
    "knockout_rewards",
    "rank_rewards",
    "round_robin_pairs",
    "split_matches",
    "votes_needed",
    "win_rate_rewards",
    "wins",
]

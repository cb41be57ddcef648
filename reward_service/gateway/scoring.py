"""Scalar rewards for RL from tournaments (group mode) or reference comparisons.

Group mode maps a finished ranking to rewards with the strategy's own mapping from
`reward_service.ranking.rewards` (see its docstring for which suits which OpenRLHF advantage
estimator); reference mode rewards each candidate with p(candidate beats the reference).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace

from reward_service.gateway.comparator import Comparator
from reward_service.gateway.planner import ComparisonOutcome
from reward_service.gateway.tournament import Tournament, TournamentResult
from reward_service.gateway.validation import RankSpec
from reward_service.ranking import (
    BradleyTerryResult,
    EloResult,
    KnockoutResult,
    ScheduleResult,
    WinsResult,
    bradley_terry_rewards,
    elo_rewards,
    knockout_rewards,
    win_rate_rewards,
)


@dataclass(frozen=True, slots=True)
class Scores:
    rewards: tuple[float, ...]
    raw: tuple[float, ...]
    tournament: TournamentResult | None
    comparisons: tuple[ComparisonOutcome, ...]


def group_rewards(result: TournamentResult) -> tuple[float, ...]:
    detail = result.detail
    if isinstance(detail, EloResult):
        return elo_rewards(detail)
    if isinstance(detail, BradleyTerryResult):
        return bradley_terry_rewards(detail)
    if isinstance(detail, KnockoutResult):
        return knockout_rewards(detail)
    if isinstance(detail, WinsResult):
        return win_rate_rewards(detail)
    if isinstance(detail, ScheduleResult):  # Swiss, anchored, in-group reference, adaptive
        return detail.rewards
    raise TypeError(f"no reward mapping for {type(detail).__name__}")


async def score_group(
    tournament: Tournament, spec: RankSpec, request_id: str, deadline: float
) -> Scores:
    result = await tournament.run(spec, request_id, deadline)
    raw = tuple(s.score for s in result.stats)
    return Scores(group_rewards(result), raw, result, tuple(m.outcome for m in result.matches))


async def score_reference(
    comparator: Comparator, spec: RankSpec, reference: str, request_id: str, deadline: float
) -> Scores:
    """reward_i = p(candidate i beats the reference); any failed comparison fails the call."""

    async def one(i: int) -> ComparisonOutcome:
        comparison = replace(spec.template, response_a=spec.candidates[i], response_b=reference)
        return await comparator.compare(comparison, f"{request_id}/ref-{i}", deadline)

    outcomes = await asyncio.gather(*(one(i) for i in range(spec.n)))
    probs = tuple(o.p_a for o in outcomes)
    return Scores(probs, probs, None, tuple(outcomes))

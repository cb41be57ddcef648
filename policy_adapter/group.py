"""What each rewarded sample gets back: the reward, a score in [0, 1] and numeric extra_logs
(OpenRLHF turns every extra_logs value into a tensor and logs it per sample)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from policy_adapter.results import Scores

# Every sample of one mode carries the same keys (OpenRLHF concatenates them across a batch).
GROUP_LOG_KEYS = (
    "rrm_rating",
    "rrm_wins",
    "rrm_losses",
    "rrm_votes",
    "rrm_reasoning_tokens",
    "rrm_group_size",
)
REFERENCE_LOG_KEYS = ("rrm_p_win", "rrm_votes", "rrm_reasoning_tokens")


@dataclass(frozen=True, slots=True)
class SampleReward:
    reward: float
    # Group mode: the win rate in the group (0.5 when nothing was played). Reference mode:
    # p(sample beats the reference). OpenRLHF reads it for --algo.dynamic_filtering_enable.
    score: float
    extra_logs: dict[str, float] = field(default_factory=dict)


def group_sample_rewards(scores: Scores, members: Sequence[int]) -> list[SampleReward]:
    """One reward per group member; `members[k]` is the candidate index member k was judged as
    (identical responses are judged once and share their reward)."""
    if scores.ranking is None:
        raise ValueError("group rewards need the ranking of a group-mode Score answer")
    ranking = scores.ranking
    n = len(scores.rewards)
    votes, reasoning = [0] * n, [0] * n
    for match in ranking.matches:
        for player in (match.a, match.b):
            votes[player] += len(match.votes)
            reasoning[player] += sum(v.reasoning_tokens for v in match.votes)
    out = []
    for index in members:
        stats = ranking.score_of(index)
        played = stats.wins + stats.losses
        out.append(
            SampleReward(
                reward=float(scores.rewards[index]),
                score=stats.wins / played if played else 0.5,
                extra_logs={
                    "rrm_rating": float(scores.raw_scores[index]),
                    "rrm_wins": float(stats.wins),
                    "rrm_losses": float(stats.losses),
                    "rrm_votes": float(votes[index]),
                    "rrm_reasoning_tokens": float(reasoning[index]),
                    "rrm_group_size": float(len(members)),
                },
            )
        )
    return out


def reference_sample_rewards(scores: Scores) -> list[SampleReward]:
    """Reference mode: reward = score = p(sample beats the reference). The answer reports usage
    for the whole call only, so votes and reasoning tokens are split evenly over the samples."""
    n = len(scores.rewards)
    return [
        SampleReward(
            reward=float(p),
            score=float(p),
            extra_logs={
                "rrm_p_win": float(p),
                "rrm_votes": scores.usage.judgments / n,
                "rrm_reasoning_tokens": scores.usage.completion_tokens / n,
            },
        )
        for p in scores.rewards
    ]


def openrlhf_payload(samples: Sequence[SampleReward]) -> dict[str, object]:
    """The JSON answer of a reward function / remote RM: lists aligned with the queries."""
    keys = list(samples[0].extra_logs) if samples else []
    return {
        "rewards": [s.reward for s in samples],
        "scores": [s.score for s in samples],
        "extra_logs": {k: [s.extra_logs[k] for s in samples] for k in keys},
    }

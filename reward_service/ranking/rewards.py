"""From a group's ranking to one scalar reward per candidate, for RL on the policy side.

Which mapping suits which OpenRLHF `--advantage_estimator`:

- `group_norm` (GRPO): rewards are replaced by `(r - mean) / std` within the group, so only the
  order and relative spacing matter; any mapping works, and Elo's fine spacing is kept. A group
  whose rewards are all equal (every match undecided) gives zero advantage, as it should.
- `rloo` / `reinforce_baseline`: a (leave-one-out) group mean is subtracted but the scale is kept,
  and it competes with the KL penalty folded into the reward. Use a mapping with unit spread:
  `win_rate_rewards`, `rank_rewards`, `knockout_rewards`, `bradley_terry_rewards`.
  `elo_rewards` with K = 4 spreads over roughly +-K(n-1)/2 / 400 (e.g. +-0.035 for n = 8), which
  the KL term can swamp.
- `gae` (PPO with a critic) and plain `reinforce`: the raw value is the learning target, so a
  bounded, centred reward in [-1, 1] is best: `knockout_rewards`, `rank_rewards`, or
  `win_rate_rewards` (in [-0.5, 0.5]).

All mappings return a reward per candidate in candidate order, centred or symmetric around 0, and
are deterministic functions of a finished ranking result: a failed ranking has no rewards.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from reward_service.ranking.bradley_terry import BradleyTerryResult
from reward_service.ranking.elo import EloResult
from reward_service.ranking.knockout import KnockoutResult
from reward_service.ranking.wins import WinsResult


def elo_rewards(result: EloResult, *, scale: float | None = None) -> tuple[float, ...]:
    """`(rating - mean rating) / scale`, `scale` defaulting to the Elo scale (400): the
    rating advantage over the group average, in units of "10x the odds"."""
    if not result.scores:
        return ()
    divisor = result.scale if scale is None else scale
    mean = math.fsum(result.scores) / len(result.scores)
    return tuple((r - mean) / divisor for r in result.scores)


def win_rate_rewards(result: WinsResult) -> tuple[float, ...]:
    """`win rate - 0.5`, in [-0.5, 0.5]: 0 for a candidate as good as the field (or unplayed)."""
    return tuple(rate - 0.5 for rate in result.scores)


def bradley_terry_rewards(result: BradleyTerryResult) -> tuple[float, ...]:
    """The fitted probability of beating a random other group member, minus 0.5, in
    (-0.5, 0.5): a win rate smoothed by the model, which also fills in unplayed pairs."""
    n = result.n
    if n < 2:
        return (0.0,) * n
    return tuple(
        sum(result.probability(i, j) for j in range(n) if j != i) / (n - 1) - 0.5 for i in range(n)
    )


def knockout_rewards(result: KnockoutResult) -> tuple[float, ...]:
    """Rounds survived scaled to [-1, 1]: -1 for a first-round loser, +1 for the winner.
    A bye counts as a round survived. One candidate alone gets 0 (nothing was compared)."""
    if result.rounds == 0:
        return (0.0,) * result.n
    return tuple(2.0 * (r - 1) / result.rounds - 1.0 for r in result.rounds_reached)


def rank_rewards(ranking: Sequence[int]) -> tuple[float, ...]:
    """Evenly spaced by rank position, +1 for the best to -1 for the worst (any strategy's
    `ranking`); 0 for a lone candidate. Ignores how far apart candidates are."""
    n = len(ranking)
    if sorted(ranking) != list(range(n)):
        raise ValueError(f"ranking must be a permutation of 0..{n - 1}")
    rewards = [0.0] * n
    for position, candidate in enumerate(ranking):
        rewards[candidate] = 1.0 - 2.0 * position / (n - 1) if n > 1 else 0.0
    return tuple(rewards)

"""Majority voting over k samples of one comparison, stopping as soon as the outcome is settled.

The paper votes over 5 or 16 reasoning samples per pair; each sample is a full reasoning run, so
every vote not drawn once the majority is out of reach is compute saved. `votes_needed` tells an
async scheduler how many votes to launch in parallel next: fewer could never settle the outcome.
"""

from __future__ import annotations

import math

from reward_service.ranking.outcome import Outcome


def votes_needed(k: int, a_votes: int, b_votes: int, undecided: int = 0) -> int:
    """The fewest further votes after which the outcome *could* be settled (if all of them go to
    the leader, or to A when level); 0 once it is settled or all k votes are in.

    Settled means the trailing side cannot even draw level: margin > votes remaining. A possible
    draw is not settled, because a draw is broken by the summed probabilities still to come.
    """
    if min(k, a_votes, b_votes, undecided) < 0:
        raise ValueError("k and vote counts must be >= 0")
    remaining = k - a_votes - b_votes - undecided
    if remaining < 0:
        raise ValueError(f"{a_votes + b_votes + undecided} votes exceed k={k}")
    margin = abs(a_votes - b_votes)
    if margin > remaining:
        return 0
    # After x more votes for the leader: margin + x > remaining - x.
    return min(remaining, (remaining - margin) // 2 + 1)


class MajorityVote:
    """The running tally of up to `k` votes on one pair (a small pure state machine).

    Undecided votes (Outcome.TIE: unparseable verdicts) use up a draw but count for neither side.
    Failed judgments (no verdict at all) are not votes: do not `add` them; retry or report them.
    """

    def __init__(self, k: int) -> None:
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.k = k
        self.a_votes = 0
        self.b_votes = 0
        self.undecided = 0
        # Summed evidence for the draw-breaker: sum of p_a and of 1 - p_a over votes with a p.
        self.p_a_sum = 0.0
        self.p_b_sum = 0.0

    @property
    def votes_used(self) -> int:
        return self.a_votes + self.b_votes + self.undecided

    @property
    def votes_needed(self) -> int:
        """How many more votes to launch now (see the module function)."""
        return votes_needed(self.k, self.a_votes, self.b_votes, self.undecided)

    @property
    def decided(self) -> bool:
        """True once further votes cannot change `winner`, or all k are in: stop drawing."""
        return self.votes_used == self.k or self.votes_needed == 0

    def add(self, verdict: Outcome, p_a: float | None = None) -> None:
        """Count one vote. Votes still arriving after `decided` (launched in parallel) are
        accepted up to k; they cannot change a settled winner."""
        if self.votes_used >= self.k:
            raise ValueError(f"all {self.k} votes are already in")
        if p_a is not None and not (math.isfinite(p_a) and 0.0 <= p_a <= 1.0):
            raise ValueError(f"p_a must be a probability, got {p_a}")
        verdict = Outcome(verdict)
        if verdict is Outcome.A_WINS:
            self.a_votes += 1
        elif verdict is Outcome.B_WINS:
            self.b_votes += 1
        else:
            self.undecided += 1
        if p_a is not None:
            self.p_a_sum += p_a
            self.p_b_sum += 1.0 - p_a

    @property
    def winner(self) -> Outcome:
        """The majority; a level count goes to the side with the larger summed probability, and
        TIE only when that is level too (or no vote decided anything)."""
        if self.a_votes != self.b_votes:
            return Outcome.A_WINS if self.a_votes > self.b_votes else Outcome.B_WINS
        if self.p_a_sum != self.p_b_sum:
            return Outcome.A_WINS if self.p_a_sum > self.p_b_sum else Outcome.B_WINS
        return Outcome.TIE

    @property
    def p_a(self) -> float | None:
        """Mean judge probability that A is better, over votes that gave one."""
        total = self.p_a_sum + self.p_b_sum
        return self.p_a_sum / total if total else None

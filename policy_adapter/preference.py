"""From a ranking of N responses to DPO pairs, and the judge-agreement numbers of a run. Pure."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from policy_adapter.results import Match, ParseStatus, Ranking, Winner


class PairMode(StrEnum):
    BEST_WORST = "best-worst"  # one pair per prompt: the winner against the last-ranked
    ADJACENT = "adjacent"  # every neighbouring pair of the ranking: N-1 pairs


@dataclass(frozen=True, slots=True)
class PreferencePair:
    chosen: int  # candidate indices
    rejected: int
    # The judge's p(chosen beats rejected): from their own match when they played one, else
    # from the match the rejected one lost (a knockout: the winner beat whoever beat it).
    # None when no decided match speaks to the pair.
    p: float | None


def decided(match: Match) -> bool:
    """A verdict was made: a knockout also names a winner for an undecided match (a tie-break
    to fill its bracket), but no vote of such a match took a side."""
    if match.winner is None:
        return False
    return not match.votes or any(v.verdict is not Winner.UNDECIDED for v in match.votes)


def pair_confidence(ranking: Ranking, chosen: int, rejected: int) -> float | None:
    match = ranking.match_between(chosen, rejected)
    if match is not None:
        return match.p_beats(chosen, rejected) if decided(match) else None
    losses = [
        m.p_beats(m.winner, rejected)
        for m in ranking.matches
        if m.winner is not None and decided(m) and m.winner != rejected and rejected in (m.a, m.b)
    ]
    return min(losses) if losses else None


def select_pairs(
    ranking: Ranking, mode: PairMode, min_confidence: float = 0.0
) -> list[PreferencePair]:
    """Pairs whose confidence reaches `min_confidence` (0 keeps every pair, even unsupported)."""
    order = ranking.ranking
    if len(order) < 2:
        return []
    if mode is PairMode.BEST_WORST:
        candidates = [(order[0], order[-1])]
    else:
        candidates = list(itertools.pairwise(order))
    pairs = [PreferencePair(c, r, pair_confidence(ranking, c, r)) for c, r in candidates]
    if min_confidence <= 0.0:
        return pairs
    return [p for p in pairs if p.p is not None and p.p >= min_confidence]


@dataclass
class Agreement:
    """How sure and how consistent the judge was over a run's matches."""

    matches: int = 0
    decided: int = 0
    confidence_sum: float = 0.0  # of max(p, 1 - p) over decided matches
    votes: int = 0
    agreeing_votes: int = 0  # votes whose verdict is the match's winner
    budget_forced: int = 0
    unparseable: int = 0

    def add(self, rankings: Iterable[Ranking]) -> None:
        for ranking in rankings:
            for m in ranking.matches:
                self.matches += 1
                for v in m.votes:
                    self.votes += 1
                    self.budget_forced += v.parse_status is ParseStatus.BUDGET_FORCED
                    self.unparseable += v.parse_status is ParseStatus.UNPARSEABLE
                if m.winner is None or not decided(m):
                    continue
                self.decided += 1
                self.confidence_sum += max(m.p_a, 1.0 - m.p_a)
                winner_is_a = m.winner == m.a
                self.agreeing_votes += sum(
                    (v.verdict is Winner.A) == winner_is_a
                    for v in m.votes
                    if v.verdict is not Winner.UNDECIDED
                )

    @property
    def decided_rate(self) -> float:
        return self.decided / self.matches if self.matches else 0.0

    @property
    def mean_confidence(self) -> float:
        return self.confidence_sum / self.decided if self.decided else 0.0

    @property
    def vote_agreement(self) -> float:
        return self.agreeing_votes / self.votes if self.votes else 0.0

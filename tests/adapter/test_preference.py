"""DPO pair selection and agreement numbers from a ranking (pure)."""

from __future__ import annotations

import pytest

from policy_adapter.preference import Agreement, PairMode, decided, pair_confidence, select_pairs
from policy_adapter.results import (
    CandidateScore,
    Match,
    ParseStatus,
    Ranking,
    Strategy,
    Usage,
    Vote,
    Winner,
)


def vote(verdict: Winner, status: ParseStatus = ParseStatus.OK) -> Vote:
    return Vote(True, verdict, 0.5, 3, status, "", "", 0)


def knockout_of_four() -> Ranking:
    """Round 1: 0 beats 1 (p 0.8), 2-3 undecided (tie-break sends 3 on); final: 0 beats 3."""
    matches = (
        Match(0, 1, 0, 0.8, 1, (vote(Winner.A),)),
        Match(2, 3, 3, 0.5, 1, (vote(Winner.UNDECIDED, ParseStatus.UNPARSEABLE),)),
        Match(0, 3, 0, 0.7, 2, (vote(Winner.A), vote(Winner.B))),
    )
    scores = tuple(CandidateScore(i, 0.0, 0, 0, 0.0, 0.0) for i in range(4))
    return Ranking(
        (0, 3, 1, 2), scores, 0, matches, 3, 2, Usage(), "m", "t", Strategy.KNOCKOUT, "r"
    )


def test_confidence_comes_from_the_pairs_match_or_the_rejected_ones_loss() -> None:
    ranking = knockout_of_four()
    assert pair_confidence(ranking, 0, 3) == pytest.approx(0.7)  # they met in the final
    assert pair_confidence(ranking, 3, 0) == pytest.approx(0.3)
    assert pair_confidence(ranking, 0, 1) == pytest.approx(0.8)
    assert pair_confidence(ranking, 3, 1) == pytest.approx(0.8)  # 1 lost to 0 with p 0.8
    assert pair_confidence(ranking, 0, 2) is None  # 2 went out on a tie-break: no evidence
    assert not decided(ranking.matches[1]) and decided(ranking.matches[0])


def test_pairs_by_mode_and_confidence() -> None:
    ranking = knockout_of_four()
    [best_worst] = select_pairs(ranking, PairMode.BEST_WORST)
    assert (best_worst.chosen, best_worst.rejected, best_worst.p) == (0, 2, None)
    assert select_pairs(ranking, PairMode.BEST_WORST, min_confidence=0.6) == []
    adjacent = select_pairs(ranking, PairMode.ADJACENT, min_confidence=0.6)
    assert [(p.chosen, p.rejected) for p in adjacent] == [(0, 3), (3, 1)]


def test_agreement_counts_only_real_verdicts() -> None:
    agreement = Agreement()
    agreement.add([knockout_of_four()])
    assert (agreement.matches, agreement.decided) == (3, 2)
    assert agreement.votes == 4 and agreement.agreeing_votes == 2  # the final split 1-1
    assert agreement.unparseable == 1
    assert agreement.mean_confidence == pytest.approx((0.8 + 0.7) / 2)

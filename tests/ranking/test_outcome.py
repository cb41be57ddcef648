"""The shared vocabulary: outcome numbering and match-list validation."""

from __future__ import annotations

import evalica
import pytest

from reward_service.domain import Verdict
from reward_service.ranking import MatchResult, Outcome, split_matches
from reward_service.ranking.outcome import ranking_from_scores, validate_matches


def test_outcomes_share_numbering_with_evalica_and_verdicts() -> None:
    assert [int(o) for o in (Outcome.TIE, Outcome.A_WINS, Outcome.B_WINS)] == [
        int(evalica.Winner.Draw),
        int(evalica.Winner.X),
        int(evalica.Winner.Y),
    ]
    # A verdict in caller order converts directly; UNDECIDED becomes a tie.
    assert Outcome(int(Verdict.FIRST)) is Outcome.A_WINS
    assert Outcome(int(Verdict.SECOND)) is Outcome.B_WINS
    assert Outcome(int(Verdict.UNDECIDED)) is Outcome.TIE


def test_match_result_winner_and_split() -> None:
    records = [MatchResult(0, 1, Outcome.B_WINS, 0.2), MatchResult(2, 0, Outcome.TIE)]
    assert [r.winner for r in records] == [1, None]
    assert split_matches(records) == ([0, 2], [1, 0], [Outcome.B_WINS, Outcome.TIE])


def test_validation() -> None:
    assert validate_matches([0, 3], [1, 2], [1, 0], None) == (4, [Outcome.A_WINS, Outcome.TIE])
    assert validate_matches([], [], [], 5) == (5, [])
    for xs, ys, outcomes, n in (
        ([0], [1], [], None),
        ([0], [0], [1], None),
        ([0], [5], [1], 3),
        ([-1], [0], [1], 3),
        ([], [], [], -1),
        ([0], [1], [3], None),
    ):
        with pytest.raises(ValueError):
            validate_matches(xs, ys, outcomes, n)


def test_ranking_from_scores_is_stable_on_ties() -> None:
    assert ranking_from_scores([1.0, 3.0, 1.0, 3.0]) == (1, 3, 0, 2)
    assert ranking_from_scores([]) == ()


def test_ranking_imports_no_transport_or_runtime() -> None:
    """Ranking stays pure: importing it pulls in no gRPC, Redis, asyncio, pandas or scipy."""
    import subprocess
    import sys

    code = (
        "import sys, reward_service.ranking; "
        "print(sorted(m for m in ('grpc', 'redis', 'asyncio', 'pandas', 'scipy') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

"""The incremental strategies beside the knockout (Swiss, anchored knockout, in-group reference,
adaptive): properties over random judges, recording in any order, and their promises."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reward_service.ranking import (
    AdaptiveRanking,
    AnchoredKnockout,
    InGroupReference,
    Outcome,
    PendingMatch,
    Schedule,
    SwissTournament,
    comparisons_bound,
    run_schedule,
    seeded_layout,
)
from reward_service.ranking.swiss import default_rounds

from .strategies import seeds

KINDS = ("swiss", "anchored", "reference", "adaptive-top1", "adaptive-top3", "adaptive-full")


def make(kind: str, n: int, seed: int, budget_extra: int = 20) -> Schedule:
    if kind == "swiss":
        return SwissTournament(n, seed)
    if kind == "anchored":
        return AnchoredKnockout(n, seed)
    if kind == "reference":
        return InGroupReference(n, seed)
    k = {"adaptive-top1": 1, "adaptive-top3": min(3, n), "adaptive-full": n}[kind]
    return AdaptiveRanking(n, comparisons_bound(n, k) + budget_extra, k=k, seed=seed)


def noisy_judge(quality: list[int], accuracy: float, rng: random.Random, with_p: bool):
    """Right with probability `accuracy`; undecided now and then; p(A) when `with_p`."""

    def judge(a: int, b: int) -> tuple[Outcome, float | None]:
        if rng.random() < 0.05:
            return Outcome.TIE, 0.5 if with_p else None
        a_wins = (quality[a] > quality[b]) == (rng.random() < accuracy)
        p = rng.uniform(0.5, 1.0)
        return (Outcome.A_WINS if a_wins else Outcome.B_WINS), (
            (p if a_wins else 1.0 - p) if with_p else None
        )

    return judge


def drive_shuffled(schedule: Schedule, judge, rng: random.Random) -> None:
    """Like a service: several judgments in flight, results recorded in a random order."""
    in_flight: list[PendingMatch] = []
    while not schedule.done:
        in_flight += schedule.take_ready()
        if not in_flight:
            assert schedule.done, "nothing offered, nothing in flight, not done"
            break
        rng.shuffle(in_flight)
        for m in in_flight[: rng.randint(1, len(in_flight))]:
            in_flight.remove(m)
            schedule.record(m.match_id, *judge(m.a, m.b))
    assert not in_flight


@settings(max_examples=60, deadline=None)
@given(
    kind=st.sampled_from(KINDS),
    n=st.integers(1, 24),
    seed=seeds,
    accuracy=st.floats(0.5, 1.0),
    with_p=st.booleans(),
)
def test_every_candidate_is_ranked_once(
    kind: str, n: int, seed: int, accuracy: float, with_p: bool
) -> None:
    rng = random.Random(seed)
    quality = list(range(n))
    rng.shuffle(quality)
    schedule = make(kind, n, seed)
    drive_shuffled(schedule, noisy_judge(quality, accuracy, rng, with_p), rng)
    result = schedule.result()
    assert sorted(result.ranking) == list(range(n))
    assert len(result.scores) == len(result.rewards) == n
    assert sum(result.wins) <= len(result.matches) and sum(result.losses) == sum(result.wins)
    for m in result.matches:
        assert m.a != m.b and 0 <= m.a < n and 0 <= m.b < n


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(2, 40),
    seed=seeds,
    accuracy=st.floats(0.5, 1.0),
    with_p=st.booleans(),
    pipelined=st.booleans(),
)
def test_swiss_never_rematches_and_everyone_plays_each_round(
    n: int, seed: int, accuracy: float, with_p: bool, pipelined: bool
) -> None:
    """Results in a random order (as a service sees them), pipelined or round by round."""
    rng = random.Random(seed)
    quality = list(range(n))
    rng.shuffle(quality)
    swiss = SwissTournament(n, seed, pipelined=pipelined)
    judge = noisy_judge(quality, accuracy, rng, with_p)
    rounds: dict[int, list[PendingMatch]] = {}
    in_flight: list[PendingMatch] = []
    while not swiss.done:
        ready = swiss.take_ready()
        for m in ready:
            rounds.setdefault(m.round, []).append(m)
        in_flight += ready
        # at most two rounds in flight, and a round only after the one before was fully paired
        assert len({m.round for m in in_flight}) <= 2
        assert {m.round for m in in_flight} <= {swiss.rounds - 1, swiss.rounds}
        assert swiss.rounds_complete <= swiss.rounds
        if not pipelined:
            assert len({m.round for m in in_flight}) <= 1
        m = in_flight.pop(rng.randrange(len(in_flight)))
        swiss.record(m.match_id, *judge(m.a, m.b))
    assert not in_flight and swiss.rounds_complete == swiss.rounds == len(rounds)
    pairs = [frozenset((m.a, m.b)) for ms in rounds.values() for m in ms]
    assert len(pairs) == len(set(pairs)), "a rematch"
    for ms in rounds.values():
        players = [c for m in ms for c in (m.a, m.b)]
        assert len(players) == len(set(players)) == n - n % 2
    assert len(rounds) <= default_rounds(n)
    assert len(pairs) <= n // 2 * default_rounds(n)
    assert sorted(swiss.result().ranking) == list(range(n))


@pytest.mark.parametrize("n", [4, 8, 16, 32, 64])
def test_swiss_plays_its_rounds_in_n_log_n(n: int) -> None:
    quality = list(range(n))
    result = run_schedule(
        SwissTournament(n, 7),
        lambda a, b: (Outcome.A_WINS if quality[a] > quality[b] else Outcome.B_WINS, None),
    )
    assert result.rounds == default_rounds(n)
    assert len(result.matches) == n // 2 * default_rounds(n)
    assert result.ranking[0] == n - 1  # a perfect judge: the best on top


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 40), seed=seeds, reference=st.integers(0, 39))
def test_in_group_reference_makes_n_minus_1_judgments_against_it(
    n: int, seed: int, reference: int
) -> None:
    reference %= n
    rng = random.Random(seed)
    schedule = InGroupReference(n, seed, reference=reference)
    p_of = {c: rng.random() for c in range(n)}
    result = run_schedule(
        schedule,
        lambda a, b: (Outcome.A_WINS if p_of[a] > 0.5 else Outcome.B_WINS, p_of[a]),
    )
    assert len(result.matches) == n - 1
    assert all(m.b == reference and m.a != reference for m in result.matches)
    assert sorted(m.a for m in result.matches) == [c for c in range(n) if c != reference]
    for c in range(n):  # the reward is p(beats the reference) - 0.5, the reference's own 0
        assert result.rewards[c] == pytest.approx(0.0 if c == reference else p_of[c] - 0.5)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 33),
    seed=seeds,
    k=st.integers(1, 33),
    extra=st.integers(0, 200),
    accuracy=st.floats(0.5, 1.0),
    with_p=st.booleans(),
)
def test_adaptive_never_exceeds_its_budget(
    n: int, seed: int, k: int, extra: int, accuracy: float, with_p: bool
) -> None:
    k = min(k, n)
    budget = comparisons_bound(n, k) + extra
    rng = random.Random(seed)
    quality = list(range(n))
    rng.shuffle(quality)
    schedule = AdaptiveRanking(n, budget, k=k, seed=seed, max_votes_per_pair=9)
    drive_shuffled(schedule, noisy_judge(quality, accuracy, rng, with_p), rng)
    result = schedule.result()
    assert len(result.matches) <= budget
    assert sorted(result.ranking) == list(range(n))
    votes: dict[frozenset[int], int] = {}
    for m in result.matches:
        votes[frozenset((m.a, m.b))] = votes.get(frozenset((m.a, m.b)), 0) + 1
    assert max(votes.values(), default=0) <= 9


def test_adaptive_spends_extra_votes_only_on_close_pairs() -> None:
    """A judge sure of itself (p 0.999) settles each pair in one judgment; an unsure one
    (p 0.6) gets more votes, up to the cap."""
    n = 16
    quality = list(range(n))

    def sure(a: int, b: int) -> tuple[Outcome, float]:
        return (Outcome.A_WINS, 0.999) if quality[a] > quality[b] else (Outcome.B_WINS, 0.001)

    def unsure(a: int, b: int) -> tuple[Outcome, float]:
        return (Outcome.A_WINS, 0.6) if quality[a] > quality[b] else (Outcome.B_WINS, 0.4)

    clear = run_schedule(AdaptiveRanking(n, 200, seed=1, max_vote_confidence=0.999), sure)
    close = run_schedule(AdaptiveRanking(n, 200, seed=1, max_votes_per_pair=5), unsure)
    assert len(clear.matches) == n - 1 and clear.winner == n - 1
    assert len(close.matches) == 5 * (n - 1) and close.winner == n - 1


def test_adaptive_top1_is_a_knockout_with_a_tight_budget() -> None:
    n = 16
    result = run_schedule(
        AdaptiveRanking(n, n - 1, seed=3),
        lambda a, b: (Outcome.A_WINS if a > b else Outcome.B_WINS, 0.55 if a > b else 0.45),
    )
    assert len(result.matches) == n - 1 and result.winner == n - 1


def test_adaptive_rejects_a_budget_below_its_comparisons() -> None:
    with pytest.raises(ValueError, match="budget"):
        AdaptiveRanking(8, 6)
    assert comparisons_bound(8, 1) == 7
    assert comparisons_bound(4, 4) == 2 + 1 + 1 + 4


@pytest.mark.parametrize("n", [2, 3, 5, 8, 13, 16])
def test_anchored_knockout_seeds_by_the_anchor_pass(n: int) -> None:
    """A perfect judge whose p(A) grows with the quality gap: the anchor pass orders the field,
    the top two seeds meet only in the final, the best wins, and the judgments are n - 1 (pass)
    plus at most n - 1 (bracket; none again with the anchor)."""
    schedule = AnchoredKnockout(n, seed=5)
    result = run_schedule(
        schedule,
        lambda a, b: (Outcome.A_WINS if a > b else Outcome.B_WINS, 0.5 + (a - b) / (2 * n)),
    )
    assert result.winner == n - 1
    assert n - 1 <= len(result.matches) <= 2 * (n - 1)
    first_pass = result.matches[: n - 1]
    assert all(m.b == schedule.anchor for m in first_pass)
    pairs = [frozenset((m.a, m.b)) for m in result.matches]
    assert len(pairs) == len(set(pairs)), "a bracket match with the anchor was judged again"
    if n >= 4:  # the best two, seeded 1 and 2, meet in the final (unless it was a rematch)
        final = result.matches[-1]
        assert {final.a, final.b} == {n - 1, n - 2} or schedule.anchor in (n - 1, n - 2)


def test_seeded_layout_keeps_the_top_seeds_apart() -> None:
    assert seeded_layout([10, 11, 12, 13, 14, 15, 16, 17]) == [10, 17, 13, 14, 11, 16, 12, 15]
    assert seeded_layout([0, 1, 2]) == [0, None, 1, 2]  # the bye goes to the top seed


def test_adaptive_keeps_extra_judgments_for_the_deciding_comparisons() -> None:
    """With every pair close (p 0.6) and 10 judgments to spare, the 8 first-round comparisons
    must not spend them all: the final (round 4) gets extra votes too."""
    n = 16
    result = run_schedule(
        AdaptiveRanking(n, n - 1 + 10, seed=2),
        lambda a, b: (Outcome.A_WINS, 0.6) if a > b else (Outcome.B_WINS, 0.4),
    )
    assert len(result.matches) <= n - 1 + 10
    final = result.matches[-1]
    final_votes = [m for m in result.matches if {m.a, m.b} == {final.a, final.b}]
    assert len(final_votes) >= 2

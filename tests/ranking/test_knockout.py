"""Knockout: bracket shape for every n, incremental scheduling, results, tie-breaking."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reward_service.ranking import KnockoutBracket, Outcome, break_tie, knockout

from .strategies import seeds


def expected_rounds(n: int) -> int:
    return math.ceil(math.log2(n)) if n > 1 else 0


@pytest.mark.parametrize("n", range(1, 66))
def test_bracket_shape_for_every_n(n: int) -> None:
    for seed in range(4):
        bracket = KnockoutBracket(n, seed)
        rounds, size = expected_rounds(n), 1 << expected_rounds(n)
        assert (bracket.rounds, bracket.size) == (rounds, size)
        assert sorted(c for c in bracket.slots if c is not None) == list(range(n))
        # Byes: size - n of them, never two in one first-round pair, in the first pairs.
        pairs = [bracket.slots[i : i + 2] for i in range(0, len(bracket.slots), 2)]
        byes = [i for i, p in enumerate(pairs) if None in p] if n > 1 else []
        assert byes == list(range(size - n))
        assert all(p[0] is not None for p in pairs)

        result = knockout(n, max, seed=seed)  # any judge: here the higher index wins
        per_round = [0] * (rounds + 1)
        for match in _played_rounds(n, seed):
            per_round[match] += 1
        assert len(result.matches) == n - 1 == sum(per_round)
        expected = [0] + [n - size // 2] + [size >> r for r in range(2, rounds + 1)]
        assert per_round == expected[: rounds + 1]
        assert result.rounds == rounds
        assert result.winner == n - 1
        assert result.rounds_reached[result.winner] == rounds + 1
        assert sum(result.wins) == sum(result.losses) == n - 1
        assert all(loss <= 1 for loss in result.losses)
        # Bye holders enter round 2 without playing, so they play one match fewer to win.
        assert max(result.wins) in (rounds, rounds - 1)


def _played_rounds(n: int, seed: int) -> list[int]:
    bracket = KnockoutBracket(n, seed)
    rounds = []
    while not bracket.done:
        for match in bracket.take_ready():
            rounds.append(match.round)
            bracket.record(match.match_id, max(match.a, match.b))
    return rounds


def test_single_candidate_wins_without_a_match() -> None:
    bracket = KnockoutBracket(1, seed=3)
    assert bracket.done and bracket.winner == 0 and bracket.ready_matches() == []
    result = bracket.result()
    assert (result.rounds, result.matches, result.ranking) == (0, (), (0,))
    assert result.rounds_reached == (1,)
    with pytest.raises(ValueError):
        KnockoutBracket(0)


@given(n=st.integers(1, 65), seed=seeds, data=st.data())
@settings(deadline=None)
def test_perfect_judge_crowns_the_best(n: int, seed: int, data: st.DataObject) -> None:
    quality = data.draw(st.permutations(range(n)))
    result = knockout(n, lambda a, b: a if quality[a] > quality[b] else b, seed=seed)
    best = max(range(n), key=lambda c: quality[c])
    assert result.winner == best == result.ranking[0]
    for m in result.matches:
        assert m.winner == (m.a if quality[m.a] > quality[m.b] else m.b)


@given(n=st.integers(1, 65), seed=seeds, data=st.data())
@settings(deadline=None)
def test_relabelling_with_a_perfect_judge_moves_only_the_labels(
    n: int, seed: int, data: st.DataObject
) -> None:
    """Relabelling candidates changes where they sit in the bracket, so the matches differ, but
    with a perfect judge the champion is the same response under its new label."""
    quality = list(data.draw(st.permutations(range(n))))
    perm = data.draw(st.permutations(range(n)))
    moved_quality = [0] * n
    for c in range(n):
        moved_quality[perm[c]] = quality[c]
    base = knockout(n, lambda a, b: a if quality[a] > quality[b] else b, seed=seed)
    moved = knockout(n, lambda a, b: a if moved_quality[a] > moved_quality[b] else b, seed=seed)
    assert moved.winner == perm[base.winner]


@given(n=st.integers(1, 65), seed=seeds, order_seed=seeds)
@settings(deadline=None)
def test_incremental_scheduling_in_any_completion_order(n: int, seed: int, order_seed: int) -> None:
    """Results come back in a random order; every offered match has both entrants decided,
    every match is offered exactly once, and the bracket ends with n - 1 matches."""
    bracket = KnockoutBracket(n, seed)
    rng = random.Random(order_seed)
    known = {c for c in bracket.slots if c is not None}  # candidates still in contention
    winners_of: dict[tuple[int, int], int] = {}  # (round, position) -> winner
    offered: set[int] = set()
    in_flight: list = []
    while not bracket.done:
        for match in bracket.take_ready():
            assert match.match_id not in offered
            offered.add(match.match_id)
            assert match.a in known and match.b in known
            if match.round > 1:  # entrants come from the two feeding positions, or a bye
                for side, entrant in ((0, match.a), (1, match.b)):
                    feeder = (match.round - 1, 2 * match.position + side)
                    if feeder in winners_of:
                        assert winners_of[feeder] == entrant
                    else:
                        assert match.round == 2 and bracket.slots[2 * feeder[1] + 1] is None
                        assert bracket.slots[2 * feeder[1]] == entrant
            in_flight.append(match)
        assert bracket.in_flight == {m.match_id for m in in_flight}
        assert in_flight, "a bracket that is not done must have work in flight"
        # A round is complete exactly when none of its matches is outstanding.
        outstanding = {m.round for m in in_flight}
        assert bracket.rounds_complete == min(outstanding, default=bracket.rounds + 1) - 1
        match = in_flight.pop(rng.randrange(len(in_flight)))
        winner = rng.choice([match.a, match.b])
        bracket.record(match.match_id, winner)
        known.discard(match.b if winner == match.a else match.a)
        winners_of[(match.round, match.position)] = winner
    assert len(offered) == bracket.matches_played == n - 1
    assert known == {bracket.winner}
    assert bracket.rounds_complete == bracket.rounds


@given(n=st.integers(5, 65), seed=seeds)
@settings(deadline=None)
def test_later_rounds_start_while_first_round_matches_are_pending(n: int, seed: int) -> None:
    """No round barrier. From n = 5 on, either two bye-holders meet in round 2 at once, or the
    last two first-round matches feed a round-2 match that is offered as soon as both are in,
    while other first-round matches are still being judged."""
    bracket = KnockoutBracket(n, seed)
    started = bracket.take_ready()
    first_round = [m for m in started if m.round == 1]
    if not any(m.round == 2 for m in started):
        last_pairs = {bracket.size // 2 - 2, bracket.size // 2 - 1}
        feeders = [m for m in first_round if m.position in last_pairs]
        assert len(feeders) == 2
        for m in feeders:
            bracket.record(m.match_id, m.b)
        offered = bracket.ready_matches()
        assert [(m.round, m.position) for m in offered] == [(2, bracket.size // 4 - 1)]
    pending_first_round = bracket.in_flight & {m.match_id for m in first_round}
    assert pending_first_round


def test_two_bye_holders_meet_at_once() -> None:
    bracket = KnockoutBracket(5, seed=1)
    ready = bracket.ready_matches()
    assert [(m.round, m.position) for m in ready] == [(1, 3), (2, 0)]
    bracket.start(ready[1].match_id)
    assert [m.round for m in bracket.ready_matches()] == [1]


def test_record_is_idempotent_and_validated() -> None:
    bracket = KnockoutBracket(4, seed=0)
    first, second = bracket.take_ready()
    bracket.record(first.match_id, first.a, p_a=0.9)
    bracket.record(first.match_id, first.a)  # a retried job: no-op
    with pytest.raises(ValueError):
        bracket.record(first.match_id, first.b)
    with pytest.raises(ValueError):
        bracket.record(second.match_id, first.a)  # not in that match
    with pytest.raises(ValueError):
        bracket.record(99, 0)
    final_id = bracket.size - 2  # P - P // 2 + 0
    with pytest.raises(ValueError):
        bracket.record(final_id, first.a)  # the final's entrants are not known yet
    with pytest.raises(ValueError):
        bracket.start(first.match_id)
    with pytest.raises(ValueError):
        bracket.result()
    bracket.record(second.match_id, second.b)
    (final,) = bracket.take_ready()
    assert (final.round, final.match_id) == (2, final_id)
    bracket.record(final.match_id, final.a)
    result = bracket.result()
    assert result.matches[0].p_a == 0.9 and result.matches[0].outcome is Outcome.A_WINS
    assert bracket.ready_matches() == [] and bracket.in_flight == frozenset()


def test_replaying_recorded_winners_rebuilds_the_same_result() -> None:
    """What a service does after a crash: rebuild from (n, seed) and replay stored winners."""
    rng = random.Random(4)
    original = knockout(23, lambda a, b: rng.choice([a, b]), seed=9)
    winner_of = {(m.a, m.b): m.winner for m in original.matches}
    replay = KnockoutBracket(23, seed=9)
    assert replay.slots == original.slots
    while not replay.done:
        for match in replay.ready_matches():
            winner = winner_of[(match.a, match.b)]
            assert winner is not None
            replay.record(match.match_id, winner)
    assert replay.result() == original


@given(n=st.integers(1, 65), seed=seeds, judge_seed=seeds)
@settings(deadline=None)
def test_ranking_orders_by_round_then_by_eliminator_then_slot(
    n: int, seed: int, judge_seed: int
) -> None:
    rng = random.Random(judge_seed)
    result = knockout(n, lambda a, b: rng.choice([a, b]), seed=seed)
    reached = result.rounds_reached
    eliminator = {}
    for m in result.matches:
        assert m.winner is not None
        eliminator[m.b if m.winner == m.a else m.a] = m.winner
    slot = {c: i for i, c in enumerate(result.slots) if c is not None}

    def key(c: int) -> tuple[int, int, int]:
        by = eliminator.get(c)
        return (-reached[c], -reached[by] if by is not None else 0, slot[c])

    assert list(result.ranking) == sorted(range(n), key=key)
    assert result.ranking[0] == result.winner
    # Each match eliminates one candidate in its round; the champion reaches rounds + 1.
    size, rounds = 1 << result.rounds, result.rounds
    eliminated = [n - size // 2] + [size >> r for r in range(2, rounds + 1)] if n > 1 else []
    assert [reached.count(r) for r in range(1, rounds + 2)] == [*eliminated, 1]
    assert result.scores == tuple(float(r) for r in reached)


def test_knockout_rejects_a_judge_naming_a_stranger() -> None:
    with pytest.raises(ValueError):
        knockout(4, lambda a, b: 99, seed=0)


@given(a=st.integers(0, 63), b=st.integers(0, 63), seed=seeds, salt=st.integers(0, 10_000))
def test_break_tie(a: int, b: int, seed: int, salt: int) -> None:
    if a == b:
        return
    assert break_tie(a, b, 0.7, seed=seed) == a
    assert break_tie(a, b, 0.2, seed=seed) == b
    coin = break_tie(a, b, None, seed=seed, salt=salt)
    assert coin in (a, b)
    assert break_tie(b, a, 0.5, seed=seed, salt=salt) == coin  # shown order does not matter
    assert break_tie(a, b, float("nan"), seed=seed, salt=salt) == coin


def test_break_tie_coin_is_fair_across_matches() -> None:
    heads = sum(break_tie(0, 1, None, seed=5, salt=s) == 0 for s in range(2000))
    assert 900 < heads < 1100

"""Swiss through the real gRPC gateway is pipelined: the tournament driver starts a next-round
match as soon as the strategy proposes it, while a slow match of the round before still runs.
The scripted judge (a TEST DOUBLE for the engine) prefers the longer response; every judgment
involving the shortest candidate "s" takes 1 s, every other one 0.05 s."""

from __future__ import annotations

from rrm.v1 import reward_pb2 as pb

from reward_service.domain import VoteTask
from reward_service.ranking.swiss import default_rounds
from tests.gateway.conftest import close_stack, make_stack

CANDIDATES = ["s", "bb", "ccc", "dddd", "eeeee", "ffffff", "ggggggg", "hhhhhhhh"]
SLOW = 0


def latency(task: VoteTask) -> float:
    return 1.0 if CANDIDATES[SLOW] in (task.pair.first, task.pair.second) else 0.05


async def test_swiss_starts_next_round_matches_before_the_round_ends() -> None:
    """ "s" loses every game, so in round 2 it plays in the 0-point group, slowly. The two
    candidates at 2 points cannot meet anyone still playing on equal points, so their round-3
    game is paired and judged while "s"'s round-2 game still runs: it reaches the stream first.
    A round barrier would hold every round-3 game until that slow game ends."""
    s = await make_stack(latency_s=latency)
    try:
        request = pb.RankRequest(query="q", candidates=CANDIDATES, strategy=pb.STRATEGY_SWISS)
        events = [e async for e in s.stub.RankStream(request)]
    finally:
        await close_stack(s)
    matches = [e.match for e in events if e.WhichOneof("event") == "match"]
    slow_round_2 = next(i for i, m in enumerate(matches) if m.round == 2 and SLOW in (m.a, m.b))
    assert any(m.round == 3 for m in matches[:slow_round_2])
    # ... and it is still a complete Swiss tournament: every round, no rematch, the best first
    result = events[-1].result
    assert result.rounds == default_rounds(len(CANDIDATES))
    pairs = [frozenset((m.a, m.b)) for m in matches]
    assert len(pairs) == len(set(pairs)) == len(CANDIDATES) // 2 * result.rounds
    assert result.winner == len(CANDIDATES) - 1 and result.ranking[-1] == SLOW
    rounds = [e.round_finished for e in events if e.WhichOneof("event") == "round_finished"]
    assert rounds == list(range(1, result.rounds + 1))

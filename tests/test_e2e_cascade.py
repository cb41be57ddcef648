"""The budget cascade on the real thing: `rrm serve` on the CPU judge (the session's shared
engine), a real channel, real HH-RLHF pairs. The cascade's logic case by case is tested with the
scripted judge in tests/gateway/test_budget_cascade.py; here the stages run on vLLM."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest
from rrm.v1 import reward_pb2 as pb
from rrm.v1 import reward_pb2_grpc as pb_grpc

from reward_service.testing.serve_process import RunningService
from tests.test_e2e_service import request as pair_request

SHORT, FULL = 8, 48
DECIDED = (pb.PARSE_STATUS_OK, pb.PARSE_STATUS_BUDGET_FORCED)


@pytest.fixture(scope="module")
def stub(cpu_service: RunningService) -> Iterator[pb_grpc.RewardServiceStub]:
    with grpc.insecure_channel(cpu_service.address) as channel:
        yield pb_grpc.RewardServiceStub(channel)


def request(i: int, threshold: float) -> pb.CompareRequest:
    cascade = pb.CascadeOptions(short_reasoning_tokens=SHORT, threshold=threshold)
    return pair_request(i, budget=FULL, seed=7, cascade=cascade)


def test_an_uncertain_short_stage_is_rejudged_at_the_full_budget(
    stub: pb_grpc.RewardServiceStub,
) -> None:
    """Threshold 0.5: every short verdict short of certainty (p(A) strictly inside (0, 1))
    escalates; the answer holds both stages' votes and is the full stage's."""
    reply = stub.Compare(request(0, 0.5), timeout=300)
    short = [v for v in reply.votes if v.stage == pb.CASCADE_STAGE_SHORT]
    full = [v for v in reply.votes if v.stage == pb.CASCADE_STAGE_FULL]
    assert len(short) == 1 and 0 < short[0].reasoning_tokens <= SHORT
    assert 0.0 < short[0].p_a < 1.0 or short[0].parse_status not in DECIDED
    assert reply.decided_by == pb.CASCADE_STAGE_FULL
    assert len(full) == 1 and full[0].reasoning_tokens <= FULL
    assert full[0].parse_status in DECIDED, pb.ParseStatus.Name(full[0].parse_status)
    assert reply.winner == full[0].verdict and reply.p_a == pytest.approx(full[0].p_a)
    assert reply.usage.judgments == 2


def test_a_decided_short_stage_stands_at_threshold_zero(stub: pb_grpc.RewardServiceStub) -> None:
    """Threshold 0: only an undecided short vote escalates; a decided one is the answer, with
    no full-budget judgment made."""
    for i in range(1, 5):
        reply = stub.Compare(request(i, 0.0), timeout=300)
        (first, *rest) = reply.votes
        assert first.stage == pb.CASCADE_STAGE_SHORT and first.reasoning_tokens <= SHORT
        if first.verdict != pb.WINNER_UNDECIDED:
            assert reply.decided_by == pb.CASCADE_STAGE_SHORT and not rest
            assert reply.winner == first.verdict and reply.usage.judgments == 1
            return
        assert reply.decided_by == pb.CASCADE_STAGE_FULL
    pytest.fail("no short-budget verdict was decided on any pair")

"""Verdicts within the caller's deadline on the real thing: `rrm serve` on the CPU judge cuts a
long reasoning before the call's deadline and answers with forced verdicts, in time."""

from __future__ import annotations

import time

import grpc
import pytest
from rrm.v1 import reward_pb2 as pb
from rrm.v1 import reward_pb2_grpc as pb_grpc

from reward_service.testing.serve_process import RunningService

pytestmark = pytest.mark.engine


def test_a_long_judgment_is_answered_before_the_deadline(cpu_service: RunningService) -> None:
    """A 1500-token budget takes the CPU judge far longer than the 12 s the caller gives."""
    request = pb.CompareRequest(
        request_id=f"deadline-{time.time_ns()}",
        query="Write a very long, detailed essay about the history of lighthouses.",
        response_a="Lighthouses guided ships for centuries, from Pharos to LED beacons.",
        response_b="idk",
        options=pb.JudgeOptions(max_reasoning_tokens=1500, votes=2, order=pb.ORDER_AS_GIVEN),
    )
    with grpc.insecure_channel(cpu_service.address) as channel:
        started = time.monotonic()
        reply = pb_grpc.RewardServiceStub(channel).Compare(request, timeout=12.0)
        elapsed = time.monotonic() - started
    assert elapsed < 12.0
    statuses = [v.parse_status for v in reply.votes]
    assert pb.PARSE_STATUS_DEADLINE_FORCED in statuses, statuses
    assert reply.winner in (pb.WINNER_A, pb.WINNER_B)
    for vote in reply.votes:
        if vote.parse_status == pb.PARSE_STATUS_DEADLINE_FORCED:
            assert 0.0 < vote.p_a < 1.0
            # cut near (deadline - margin): it reasoned for a while, not to its budget
            assert 0 < vote.reasoning_tokens < 1500

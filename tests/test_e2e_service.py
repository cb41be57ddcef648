"""The real thing end to end: `rrm serve` (gRPC gateway, embedded queue, worker, vLLM engine on
the CPU judge) on 127.0.0.1, called through a real channel with real HH-RLHF pairs."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from rrm.v1 import reward_pb2 as pb
from rrm.v1 import reward_pb2_grpc as pb_grpc

from policy_adapter.hh_rlhf import load_pairs
from reward_service.testing.serve_process import RunningService

PAIRS = list(load_pairs(Path(__file__).parents[1] / "examples" / "hh-rlhf-harmless-256.jsonl", 8))
DECIDED = (pb.PARSE_STATUS_OK, pb.PARSE_STATUS_BUDGET_FORCED)


@pytest.fixture(scope="module")
def stub(cpu_service: RunningService) -> Iterator[pb_grpc.RewardServiceStub]:
    with grpc.insecure_channel(cpu_service.address) as channel:
        yield pb_grpc.RewardServiceStub(channel)


def request(i: int, budget: int = 32, **options: object) -> pb.CompareRequest:
    pair = PAIRS[i]
    return pb.CompareRequest(
        request_id=f"e2e-{i}-{budget}-{sorted(options.items())}",
        query=pair.query,
        history=[pb.Message(role=r, content=c) for r, c in pair.history],
        response_a=pair.chosen,
        response_b=pair.rejected,
        options=pb.JudgeOptions(max_reasoning_tokens=budget, **options),  # type: ignore[arg-type]
    )


def test_health_is_serving_after_warm_up(cpu_service: RunningService) -> None:
    with grpc.insecure_channel(cpu_service.address) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="rrm.v1.RewardService")
        )
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_get_info_reports_the_cpu_judge(stub: pb_grpc.RewardServiceStub) -> None:
    info = stub.GetInfo(pb.GetInfoRequest())
    assert info.model == "SmolLM2-135M-Instruct"
    assert info.judge_profile == "generic"
    assert info.template_version.startswith("generic/")
    assert info.limits.max_votes > 0


def test_compare_a_real_pair(stub: pb_grpc.RewardServiceStub) -> None:
    reply = stub.Compare(request(0, return_reasoning=True), timeout=120)
    assert reply.winner in (pb.WINNER_A, pb.WINNER_B)
    assert 0.0 <= reply.p_a <= 1.0
    (vote,) = reply.votes
    assert vote.parse_status in DECIDED
    assert 0 < vote.reasoning_tokens <= 32
    assert vote.reasoning.strip()
    # the vote's probability agrees with its hard verdict
    assert (vote.p_a >= 0.5) == (vote.verdict == pb.WINNER_A)
    assert reply.usage.prompt_tokens > 100 and reply.usage.judgments == 1


def test_order_both_and_votes(stub: pb_grpc.RewardServiceStub) -> None:
    reply = stub.Compare(request(1, votes=3, order=pb.ORDER_BOTH), timeout=300)
    assert len(reply.votes) in (4, 6)  # 2 or 3 vote indices, each in both orders
    assert {v.shown_order for v in reply.votes} == {pb.SHOWN_ORDER_A_FIRST, pb.SHOWN_ORDER_B_FIRST}
    statuses = [pb.ParseStatus.Name(v.parse_status) for v in reply.votes]
    assert all(v.parse_status in DECIDED for v in reply.votes), statuses
    assert reply.agreeing_votes >= len(reply.votes) // 2


def test_compare_batch_of_real_pairs(stub: pb_grpc.RewardServiceStub) -> None:
    """Every pair is answered; a judgment is decided unless the sampled judge left no verdict
    (seen in CI: 1 of 8 stopped after 13 of its 16 tokens), which must come back undecided,
    never as a default winner."""
    batch = pb.CompareBatchRequest(pairs=[request(i, budget=16) for i in range(8)])
    reply = stub.CompareBatch(batch, timeout=300)
    assert len(reply.results) == 8
    decided = 0
    for result in reply.results:
        assert result.WhichOneof("outcome") == "response"
        (vote,) = result.response.votes
        if vote.parse_status in (pb.PARSE_STATUS_OK, pb.PARSE_STATUS_BUDGET_FORCED):
            assert result.response.winner in (pb.WINNER_A, pb.WINNER_B)
            decided += 1
        else:
            assert vote.parse_status == pb.PARSE_STATUS_UNPARSEABLE, vote
            assert result.response.winner == pb.WINNER_UNDECIDED
    assert decided >= 5


def test_retry_with_same_request_id_does_no_new_engine_work(
    stub: pb_grpc.RewardServiceStub,
) -> None:
    first = stub.Compare(request(2, budget=24), timeout=120)
    started = time.monotonic()
    again = stub.Compare(request(2, budget=24), timeout=120)
    assert again.votes == first.votes and again.p_a == first.p_a
    assert time.monotonic() - started < 1.0


def test_rank_knockout_on_the_real_judge(stub: pb_grpc.RewardServiceStub) -> None:
    pair = PAIRS[3]
    cands = [pair.chosen, pair.rejected, "I don't know.", "Sure, here is a long answer. " * 3]
    reply = stub.Rank(
        pb.RankRequest(
            query=pair.query,
            candidates=cands,
            strategy=pb.STRATEGY_KNOCKOUT,
            options=pb.JudgeOptions(max_reasoning_tokens=16),
        ),
        timeout=300,
    )
    assert reply.comparisons == 3 and reply.rounds == 2
    assert sorted(reply.ranking) == [0, 1, 2, 3] and reply.winner == reply.ranking[0]


def test_deadline_is_honoured_and_the_service_stays_healthy(
    stub: pb_grpc.RewardServiceStub,
) -> None:
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as err:
        # opted out of deadline forcing (a 0.5 s call would otherwise get a forced verdict)
        stub.Compare(request(4, budget=1024, votes=5, no_deadline_forcing=True), timeout=0.5)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 5
    reply = stub.Compare(request(5, budget=8), timeout=120)
    assert reply.winner in (pb.WINNER_A, pb.WINNER_B)


def test_bad_input_names_the_field(stub: pb_grpc.RewardServiceStub) -> None:
    with pytest.raises(grpc.RpcError) as err:
        stub.Compare(pb.CompareRequest(query="q", response_a="a", response_b=""), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "response_b" in err.value.details()

"""The production `rrm` profile on a real engine: `rrm serve` with RRM_JUDGE__PROFILE=rrm serving
the tiny trained RRM (`make rrm-model`: the DeepSeek-R1-Distill template and Qwen vocabulary,
trained to judge by `rrm_synthetic`'s rule) by vLLM, called through a real gRPC channel.

One service for the module. The model is built here if missing (the make target's code path,
cached in .cache/models/tiny-rrm, a few minutes on CPU)."""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from rrm.v1 import reward_pb2 as pb
from rrm.v1 import reward_pb2_grpc as pb_grpc

from bench.side_by_side import engine_requests
from reward_service.domain import Pair, Verdict
from reward_service.testing.rrm_synthetic import answer, make_judgment, rule_verdict
from reward_service.testing.serve_process import free_port, rrm_serve
from reward_service.testing.tiny_rrm import build_trained_rrm_model
from tests.engine.support import CACHE_DIR

# Setup may build the model (a few minutes) and loads an engine (slow on a busy machine).
pytestmark = [pytest.mark.engine, pytest.mark.timeout(1800)]

RRM_DIR = CACHE_DIR / "models" / "tiny-rrm"
NATURAL_BUDGET = 64  # a short judgment writes ~30 tokens; a long one never closes its reasoning
WINNER = {Verdict.FIRST: pb.WINNER_A, Verdict.SECOND: pb.WINNER_B}
# Pairs the agreement is measured on: unseen by training (other seeds than the build's).
AGREEMENT_PAIRS = 160  # ~120 natural
LONG_FRACTION = 0.25


@dataclass
class Service:
    stub: pb_grpc.RewardServiceStub
    metrics_url: str


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    model = build_trained_rrm_model(RRM_DIR)
    metrics_port = free_port()
    log_dir = Path(tmp_path_factory.mktemp("rrm-profile"))
    with (
        rrm_serve(
            log_dir,
            timeout_s=1500,
            RRM_ENGINE__MODEL=str(model),
            RRM_JUDGE__PROFILE="rrm",
            RRM_ENGINE__CPU_KVCACHE_GIB="1",
            RRM_GATEWAY__METRICS_PORT=str(metrics_port),
        ) as running,
        grpc.insecure_channel(running.address) as channel,
    ):
        yield Service(
            pb_grpc.RewardServiceStub(channel), f"http://127.0.0.1:{metrics_port}/metrics"
        )


def compare(
    pair: Pair, request_id: str, budget: int = NATURAL_BUDGET, **options: object
) -> pb.CompareRequest:
    return pb.CompareRequest(
        request_id=request_id,
        query=pair.query,
        response_a=pair.first,
        response_b=pair.second,
        options=pb.JudgeOptions(max_reasoning_tokens=budget, return_reasoning=True, **options),  # type: ignore[arg-type]
    )


def pairs(seed: int, n: int, *, long: bool) -> list[Pair]:
    rng = random.Random(seed)
    return [make_judgment(rng, long=long).pair for _ in range(n)]


def test_get_info_reports_the_rrm_profile(service: Service) -> None:
    info = service.stub.GetInfo(pb.GetInfoRequest())
    assert info.model == "tiny-rrm"
    assert info.judge_profile == "rrm"
    assert info.template_version.startswith("rrm/")


def test_natural_verdicts_are_parsed_after_the_reasoning(service: Service) -> None:
    for i, pair in enumerate(pairs(101, 6, long=False)):
        reply = service.stub.Compare(
            compare(pair, f"natural-{i}", order=pb.ORDER_AS_GIVEN), timeout=120
        )
        (vote,) = reply.votes
        assert vote.parse_status == pb.PARSE_STATUS_OK, vote
        # the reasoning is the text before `</think>`: the evidence and the conclusion
        expected = 1 if rule_verdict(pair) is Verdict.FIRST else 2
        assert f"So Assistant {expected} is better." in vote.reasoning, vote.reasoning
        assert "</think>" not in vote.reasoning and "boxed" not in vote.reasoning
        assert vote.reasoning_tokens < NATURAL_BUDGET
        assert reply.winner == WINNER[rule_verdict(pair)]
        # p(A) from the engine's logprobs at the verdict token: a probability agreeing with it
        assert 0.0 < vote.p_a < 1.0 and (vote.p_a > 0.5) == (vote.verdict == pb.WINNER_A), vote


def test_a_judge_past_its_budget_gets_a_forced_verdict(service: Service) -> None:
    budget = 40
    for i, pair in enumerate(pairs(102, 6, long=True)):
        reply = service.stub.Compare(
            compare(pair, f"forced-{i}", budget, order=pb.ORDER_AS_GIVEN), timeout=120
        )
        (vote,) = reply.votes
        assert vote.parse_status == pb.PARSE_STATUS_BUDGET_FORCED, vote
        assert vote.reasoning_tokens == budget and "Let me check again." in vote.reasoning
        # (a forced verdict follows the rule only by chance on this build: not asserted)
        assert 0.0 < vote.p_a < 1.0 and (vote.p_a > 0.5) == (vote.verdict == pb.WINNER_A), vote


def test_order_both_maps_the_shown_order_back_to_a_and_b(service: Service) -> None:
    pair = Pair(
        query="Which answer about math is right?",
        first=answer("Tom", True),
        second=answer("Anna", False),
    )
    reply = service.stub.Compare(
        compare(pair, "order-both", votes=3, order=pb.ORDER_BOTH), timeout=120
    )
    # 2 or 3 vote indices (a third only when the first two disagree), each in both orders
    assert len(reply.votes) in (4, 6) and reply.winner == pb.WINNER_A
    for vote in reply.votes:
        # B shown first: the judge saw the correct answer as Assistant 2 and said so
        shown = 1 if vote.shown_order == pb.SHOWN_ORDER_A_FIRST else 2
        assert f"So Assistant {shown} is better." in vote.reasoning, vote.reasoning
        assert vote.verdict == pb.WINNER_A and vote.p_a > 0.5
    assert {v.shown_order for v in reply.votes} == {pb.SHOWN_ORDER_A_FIRST, pb.SHOWN_ORDER_B_FIRST}
    assert reply.agreeing_votes == len(reply.votes) and reply.p_a > 0.5


def test_knockout_ranks_the_correct_candidate_first(service: Service) -> None:
    """Five knockouts of three votes per match (the correct answer in every seat of the
    bracket, other seeds): the sampled judge leaves 2-4% of its judgments undecided (it goes on
    reasoning and never boxes a verdict), so the correct answer must win at least 4."""
    subjects = ["Paris", "London", "Rome", "Tokyo"]
    won, lost = 0, []
    for k in range(5):
        seats = subjects[k % 4 :] + subjects[: k % 4]
        reply = service.stub.Rank(
            pb.RankRequest(
                request_id=f"knockout-{k}",
                query="Which answer about travel is right?",
                candidates=[answer(s, s == "Rome") for s in seats],
                strategy=pb.STRATEGY_KNOCKOUT,
                options=pb.JudgeOptions(
                    max_reasoning_tokens=NATURAL_BUDGET, votes=3, return_reasoning=True
                ),
            ),
            timeout=300,
        )
        assert reply.comparisons == 3 and reply.rounds == 2
        assert reply.ranking[0] == reply.winner
        if seats[reply.winner] == "Rome":
            won += 1
        else:
            lost.append(
                [(m.a, m.b, m.winner, [v.reasoning for v in m.votes]) for m in reply.matches]
            )
    assert won >= 4, lost


def test_agreement_with_the_rule_and_one_engine_request_per_natural_verdict(
    service: Service,
) -> None:
    rng = random.Random(2024)
    batch = [
        make_judgment(rng, long=rng.random() < LONG_FRACTION).pair for _ in range(AGREEMENT_PAIRS)
    ]
    before = engine_requests(service.metrics_url)
    reply = service.stub.CompareBatch(
        pb.CompareBatchRequest(pairs=[compare(p, f"agree-{i}") for i, p in enumerate(batch)]),
        timeout=600,
    )
    after = engine_requests(service.metrics_url)
    votes = [r.response.votes[0] for r in reply.results]
    assert len(votes) == AGREEMENT_PAIRS
    outcomes = [
        (v.parse_status, r.response.winner == WINNER[rule_verdict(p)])
        for v, r, p in zip(votes, reply.results, batch, strict=True)
    ]
    natural = [ok for status, ok in outcomes if status == pb.PARSE_STATUS_OK]
    forced = sum(status == pb.PARSE_STATUS_BUDGET_FORCED for status, _ in outcomes)
    # the rest are UNPARSEABLE: stopped without a verdict (no read), or cut at the budget with
    # neither verdict token in the forced read's top-k (read, nothing found)
    undecided = AGREEMENT_PAIRS - len(natural) - forced
    unread = sum(
        v.parse_status == pb.PARSE_STATUS_UNPARSEABLE and v.reasoning_tokens == NATURAL_BUDGET
        for v in votes
    )
    forced_agree = sum(ok for status, ok in outcomes if status == pb.PARSE_STATUS_BUDGET_FORCED)
    print(
        f"natural agreement {sum(natural)}/{len(natural)} (95% lower bound "
        f"{wilson_lower_bound(sum(natural), len(natural)):.3f}), forced {forced}/{AGREEMENT_PAIRS}"
        f" agreeing {forced_agree}/{forced}, undecided {undecided} ({unread} after a forced read)"
    )
    # natural and forced verdicts follow the rule (a forced one looks back past the cut to the
    # reasoning's conclusion; docs/benchmarks.md section 11)
    assert len(natural) >= 100 and sum(natural) / len(natural) >= 0.95
    assert forced >= 20 and forced_agree / forced >= 0.9
    assert (sum(natural) + forced_agree) / AGREEMENT_PAIRS >= 0.95
    # the rrm profile reads a natural verdict's p(A) in the reasoning call: requests per
    # judgment = 1 + the fraction cut at the budget (each needs its forced read)
    requests = {k: v - before.get(k, 0.0) for k, v in after.items()}
    assert requests.get("reasoning") == AGREEMENT_PAIRS
    assert requests.get("verdict_read", 0.0) == 0
    assert requests.get("forced_read") == forced + unread
    assert sum(requests.values()) / AGREEMENT_PAIRS == 1 + (forced + unread) / AGREEMENT_PAIRS


def wilson_lower_bound(successes: int, n: int, z: float = 1.645) -> float:
    """One-sided 95% lower confidence bound of a proportion (Wilson score)."""
    p = successes / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - spread) / (1 + z * z / n)

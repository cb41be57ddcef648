"""The client side of (4): the same judgments as gRPC calls to rrm-serve (`rrm serve` or an
`rrm gateway`), and the prefix-cache probe (an 8-candidate round robin through `Rank`)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import grpc
from rrm.v1 import reward_pb2 as pb
from rrm.v1 import reward_pb2_grpc as pb_grpc

from bench.common import Latencies
from policy_adapter.hh_rlhf import PreferencePair


def options(budget: int) -> pb.JudgeOptions:
    """One vote, order as given (chosen = Assistant 1), fresh engine work (no verdict cache)."""
    return pb.JudgeOptions(
        votes=1,
        order=pb.ORDER_AS_GIVEN,
        max_reasoning_tokens=budget,
        temperature=0.6,
        no_cache=True,
    )


def compare_request(p: PreferencePair, budget: int, tag: str) -> pb.CompareRequest:
    return pb.CompareRequest(
        request_id=f"{tag}-{uuid.uuid4().hex}",
        query=p.query,
        history=[pb.Message(role=r, content=c) for r, c in p.history],
        response_a=p.chosen,
        response_b=p.rejected,
        options=options(budget),
    )


@dataclass
class Answered:
    judgments: int
    seconds: float
    latencies: Latencies
    gen_tokens: int
    prompt_tokens: int
    cached_prompt_tokens: int

    def as_row(self) -> dict[str, float]:
        return {
            "judgments": self.judgments,
            "seconds": self.seconds,
            "judgments_per_s": self.judgments / self.seconds,
            "p50_s": self.latencies.p50,
            "p99_s": self.latencies.p99,
            "gen_tokens": self.gen_tokens,
            "prompt_tokens": self.prompt_tokens,
            "cached_prompt_tokens": self.cached_prompt_tokens,
        }


async def compare_all(address: str, pairs: Sequence[PreferencePair], budget: int) -> Answered:
    """Every pair as its own Compare call, all in flight at once (as an RL batch would)."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.RewardServiceStub(channel)
        latencies = Latencies()

        async def one(p: PreferencePair) -> pb.CompareResponse:
            started = time.perf_counter()
            reply = await stub.Compare(compare_request(p, budget, "bench"), timeout=900)
            latencies.add(time.perf_counter() - started)
            return reply

        started = time.perf_counter()
        replies = await asyncio.gather(*(one(p) for p in pairs))
        elapsed = time.perf_counter() - started
    return Answered(
        len(pairs),
        elapsed,
        latencies,
        sum(v.reasoning_tokens for r in replies for v in r.votes),
        sum(r.usage.prompt_tokens for r in replies),
        sum(r.usage.cached_prompt_tokens for r in replies),
    )


async def compare_batch(address: str, pairs: Sequence[PreferencePair], budget: int) -> Answered:
    """All pairs in one CompareBatch call."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.RewardServiceStub(channel)
        request = pb.CompareBatchRequest(pairs=[compare_request(p, budget, "batch") for p in pairs])
        started = time.perf_counter()
        reply = await stub.CompareBatch(request, timeout=900)
        elapsed = time.perf_counter() - started
    results = [r.response for r in reply.results if r.HasField("response")]
    latencies = Latencies([elapsed])
    return Answered(
        len(pairs),
        elapsed,
        latencies,
        sum(v.reasoning_tokens for r in results for v in r.votes),
        sum(r.usage.prompt_tokens for r in results),
        sum(r.usage.cached_prompt_tokens for r in results),
    )


async def round_robin_prefix(
    address: str, pairs: Sequence[PreferencePair], queries: int, candidates: int, budget: int
) -> dict[str, float]:
    """Rank `candidates` responses per query with a round robin (Elo: n(n-1)/2 matches), one
    query at a time; the engine's prefix-cache hits over all prompt tokens (reasoning prompts and
    verdict reads) as the service reports them in usage, and the part the shared prefix explains.
    """
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.RewardServiceStub(channel)
        replies = []
        started = time.perf_counter()
        for i, p in enumerate(pairs[:queries]):
            others = [q.chosen for q in [*pairs[i + 1 :], *pairs[:i]]]
            pool = [p.chosen, p.rejected, *others][:candidates]
            request = pb.RankRequest(
                request_id=f"rr-{uuid.uuid4().hex}",
                query=p.query,
                history=[pb.Message(role=r, content=c) for r, c in p.history],
                candidates=pool,
                strategy=pb.STRATEGY_ELO,
                options=pb.JudgeOptions(
                    votes=1, max_reasoning_tokens=budget, temperature=0.6, no_cache=True
                ),
            )
            replies.append((request, await stub.Rank(request, timeout=900)))
        elapsed = time.perf_counter() - started
    prompt = sum(r.usage.prompt_tokens for _, r in replies)
    cached = sum(r.usage.cached_prompt_tokens for _, r in replies)
    return {
        "queries": queries,
        "candidates": candidates,
        "judgments": sum(r.usage.judgments for _, r in replies),
        "prompt_tokens": prompt,
        "cached_prompt_tokens": cached,
        "hit_rate": cached / prompt if prompt else float("nan"),
        "seconds": elapsed,
        **prefix_breakdown(replies),
    }


def prefix_breakdown(replies: list[tuple[pb.RankRequest, pb.RankResponse]]) -> dict[str, float]:
    """The ideal hits, for comparison: recomputed locally with the judge from each match's
    reasoning prompt as shown (order from its vote) and each verdict read (prompt + reasoning).

    vLLM caches whole blocks (128 tokens on CPU) chained by prefix: ideally each distinct block
    is computed once and every later use is a hit. Reads repeat their prompt and reasoning, so
    ideally all their whole blocks hit. (Reads are re-encoded text: approximate.)
    """
    from bench.common import model_dir
    from reward_service.app import load_judge
    from reward_service.domain import Pair, Turn
    from reward_service.settings import Settings

    settings = Settings()
    settings.engine.model = model_dir()
    judge = load_judge(settings)
    block = 128
    prompts: list[list[int]] = []
    reads = ideal_reads = 0
    for request, reply in replies:
        history = tuple(Turn(m.role, m.content) for m in request.history)
        for match in reply.matches:
            for vote in match.votes:
                a, b = request.candidates[match.a], request.candidates[match.b]
                first, second = (a, b) if vote.shown_order == pb.SHOWN_ORDER_A_FIRST else (b, a)
                ids = judge.render(Pair(request.query, first, second, history))
                prompts.append(ids)
                if vote.parse_status in (pb.PARSE_STATUS_OK, pb.PARSE_STATUS_BUDGET_FORCED):
                    read = len(ids) + vote.reasoning_tokens
                    reads += read
                    ideal_reads += read // block * block
    whole = sum(len(ids) // block for ids in prompts)
    distinct = {tuple(ids[: block * (k + 1)]) for ids in prompts for k in range(len(ids) // block)}
    return {
        "reasoning_prompt_tokens": sum(map(len, prompts)),
        "ideal_reasoning_cached": block * (whole - len(distinct)),
        "read_prompt_tokens_approx": reads,
        "ideal_read_cached_approx": ideal_reads,
        "block_size": block,
    }

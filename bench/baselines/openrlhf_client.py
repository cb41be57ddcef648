"""The client side of (2): OpenRLHF 0.11.2's own remote-RM code, driven the way its trainer does.

In OpenRLHF every rollout sample is rewarded by its own HTTP call:
`SingleTurnAgentExecutor.execute` posts `[query], [prompt], [label]` through
`_fetch_rewards_via_http` (a new aiohttp session per call, 180 s timeout, 5 tries), and
`LLMRayActor.generate_responses` runs the n samples of a prompt with `asyncio.gather` while the
trainer dispatches every prompt of the rollout batch at once (`_dispatch_prompts_to_vllm`). So a
rollout batch of B samples has up to B reward calls in flight: here all samples concurrently
through `asyncio.gather`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from bench.common import Latencies
from policy_adapter.hh_rlhf import PreferencePair


async def reward_all(url: str, samples: Sequence[tuple[str, str, str]]) -> tuple[list, Latencies]:
    """One OpenRLHF reward call per (query, prompt, label), all in flight at once."""
    from openrlhf.utils.agent import SingleTurnAgentExecutor

    executor = SingleTurnAgentExecutor(remote_rm_url=url)
    latencies = Latencies()

    async def one(query: str, prompt: str, label: str) -> dict:
        started = time.perf_counter()
        [info] = await executor._fetch_rewards_via_http([query], [prompt], [label])
        latencies.add(time.perf_counter() - started)
        return info

    results = await asyncio.gather(*(one(*s) for s in samples))
    return list(results), latencies


def warm(url: str, pairs: Sequence[PreferencePair], budget: int) -> None:
    """Unmeasured warm-up burst with a short reasoning budget (a field only this server reads)."""
    import aiohttp

    from bench.baselines.http_rm import encode_sample

    async def all_at_once() -> None:
        async with aiohttp.ClientSession() as session:

            async def one(p: PreferencePair) -> None:
                query, prompt, label = encode_sample(p)
                body = {"query": [query], "prompts": [prompt], "labels": [label], "budget": budget}
                async with session.post(url, json=body) as reply:
                    reply.raise_for_status()

            await asyncio.gather(*(one(p) for p in pairs))

    asyncio.run(all_at_once())


def burst(url: str, pairs: Sequence[PreferencePair]) -> dict[str, float]:
    """Every pair as one OpenRLHF reward call, all at once; throughput and latency."""
    from bench.baselines.http_rm import encode_sample

    started = time.perf_counter()
    results, latencies = asyncio.run(reward_all(url, [encode_sample(p) for p in pairs]))
    elapsed = time.perf_counter() - started
    return {
        "judgments": len(pairs),
        "seconds": elapsed,
        "judgments_per_s": len(pairs) / elapsed,
        "p50_s": latencies.p50,
        "p99_s": latencies.p99,
        "gen_tokens": sum(r["extra_logs"]["gen_tokens"][0] for r in results),
    }

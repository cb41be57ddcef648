"""The gateway's event loop keeps answering while CPU-heavy work for one call runs.

One process serves every call on one event loop; a Bradley-Terry bootstrap over a large round
robin, or tokenising prompts for the context guard, would stall all of them if run inline. The
probes here are a loop-lag timer and GetInfo calls over the real channel, while such work runs.
"""

from __future__ import annotations

import asyncio
import time

from rrm.v1 import reward_pb2 as pb

from reward_service.domain import Limits
from reward_service.gateway.planner import Comparison
from reward_service.ranking import bradley_terry
from tests.gateway.conftest import Stack, close_stack, make_stack


async def worst_getinfo_latency(stack: Stack, heavy: asyncio.Task[object]) -> float:
    worst = 0.0
    while not heavy.done():
        started = time.perf_counter()
        await stack.stub.GetInfo(pb.GetInfoRequest())
        worst = max(worst, time.perf_counter() - started)
        await asyncio.sleep(0.01)
    return worst


async def worst_loop_lag(heavy: asyncio.Task[object]) -> float:
    worst = 0.0
    while not heavy.done():
        started = time.perf_counter()
        await asyncio.sleep(0.005)
        worst = max(worst, time.perf_counter() - started - 0.005)
    return worst


# Candidates of the heavy round robin. Rank's default cap is 32, whose fit takes under 0.12 s
# on a fast machine: too close to scheduling noise to tell a stall. At 64 (2016 matches, the
# cap raised for this stack) the bootstrap takes 2-3x as long: >= 0.3 s on such a machine, about
# 2 s on the loaded 2-core one here.
HEAVY_N = 64


def bootstrap_seconds(n: int) -> float:
    """How long the fit itself takes on this machine now (the faster of two runs)."""
    xs, ys = zip(*[(a, b) for a in range(n) for b in range(a + 1, n)], strict=True)
    times = []
    for _ in range(2):
        started = time.perf_counter()
        bradley_terry(list(xs), list(ys), [1] * len(xs), n=n)
        times.append(time.perf_counter() - started)
    return min(times)


async def test_a_bradley_terry_bootstrap_does_not_block_other_calls() -> None:
    n = HEAVY_N
    fit_s = bootstrap_seconds(n)
    assert fit_s > 0.2, f"the fit of {n} took {fit_s:.3f} s: raise HEAVY_N to tell a stall"
    # Inline, the fit stalls the loop for about fit_s (measured: 1.0-2.0 x fit_s); off the loop,
    # stalls stay well below it (measured 0.05-0.5 x fit_s on a loaded 2-core machine: the fit's
    # thread still holds the GIL between numpy calls).
    stack = await make_stack(limits=Limits(max_text_chars=1000, max_candidates_round_robin=n))
    try:
        candidates = ["x" * (i + 1) for i in range(n)]
        rank = asyncio.ensure_future(
            stack.stub.Rank(
                pb.RankRequest(
                    request_id="big-bt",
                    query="q",
                    candidates=candidates,
                    strategy=pb.STRATEGY_BRADLEY_TERRY,
                ),
                timeout=120,
            )
        )
        lag, getinfo = await asyncio.gather(
            worst_loop_lag(rank), worst_getinfo_latency(stack, rank)
        )
        reply = await rank
    finally:
        await close_stack(stack)
    assert reply.comparisons == n * (n - 1) // 2
    assert all(s.ci_low <= s.score <= s.ci_high for s in reply.scores)
    assert lag < 0.6 * fit_s, f"the event loop stalled {lag:.3f} s during a {fit_s:.3f} s fit"
    assert getinfo < fit_s, f"GetInfo took {getinfo:.3f} s during a {fit_s:.3f} s fit"


class SlowGuard:
    """A context guard that takes 0.5 s of CPU-bound time (blocking), like tokenising a huge
    batch of long prompts."""

    def __init__(self) -> None:
        self.checked = 0

    def check(self, c: Comparison) -> None:
        time.sleep(0.5)
        self.checked += 1


async def test_the_prompt_guard_runs_off_the_event_loop() -> None:
    s = await make_stack()
    guard = SlowGuard()
    s.comparator.guard = guard
    try:
        call = asyncio.ensure_future(
            s.stub.Compare(pb.CompareRequest(query="q", response_a="aa", response_b="b"))
        )
        lag, getinfo = await asyncio.gather(worst_loop_lag(call), worst_getinfo_latency(s, call))
        assert (await call).winner == pb.WINNER_A
    finally:
        await close_stack(s)
    assert guard.checked == 1
    assert getinfo < 0.25 and lag < 0.25, (getinfo, lag)  # the check blocks for 0.5 s

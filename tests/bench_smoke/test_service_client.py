"""The benchmark's rrm-serve client and prefix-cache probe, on the session's real CPU service."""

from __future__ import annotations

import pytest

from bench.common import bench_pairs
from bench.service_client import compare_all, round_robin_prefix
from reward_service.testing.serve_process import RunningService

pytestmark = pytest.mark.engine


async def test_concurrent_compares_report_throughput_latency_and_tokens(
    cpu_service: RunningService,
) -> None:
    answered = await compare_all(cpu_service.address, bench_pairs(3), budget=8)
    row = answered.as_row()
    assert row["judgments"] == 3 and row["judgments_per_s"] > 0
    assert 0 < row["p50_s"] <= row["p99_s"] <= row["seconds"] + 0.1
    assert 0 < row["gen_tokens"] <= 3 * 8


async def test_round_robin_rank_reports_prefix_cache_hits(cpu_service: RunningService) -> None:
    probe = await round_robin_prefix(
        cpu_service.address, bench_pairs(4, 40), queries=1, candidates=4, budget=8
    )
    assert probe["judgments"] == 6, "4 candidates: 6 round-robin matches"
    # Six prompts share the system prompt and query; every verdict read repeats its prompt.
    assert probe["cached_prompt_tokens"] > 0.3 * probe["prompt_tokens"], probe
    assert probe["reasoning_prompt_tokens"] < probe["prompt_tokens"]

"""Prefix-cache hits of a round robin through Rank, alone: `rrm serve` on the CPU judge, then
8 candidates per query ranked with Elo (28 matches per query, one vote each), one query at a
time; the hits the engine reports (RankResponse usage) beside the ideal for the same prompts.
It needs a fresh service: after a benchmark burst the same pairs would all be cached already.

    python -m bench.prefix_cache --queries 4 --candidates 8 --budget 128
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

from bench import procs
from bench.common import OUT_DIR, bench_pairs, console, save_json
from bench.service_client import round_robin_prefix


def describe(p: dict[str, float]) -> str:
    ideal = p["ideal_reasoning_cached"] + p["ideal_read_cached_approx"]
    return (
        f"{p['queries']} queries x {p['candidates']} candidates, {p['judgments']} judgments: "
        f"{p['cached_prompt_tokens']:,} of {p['prompt_tokens']:,} prompt tokens from the prefix "
        f"cache ({p['hit_rate']:.1%}); ideal ~{ideal:,.0f} ({ideal / p['prompt_tokens']:.1%}: "
        f"reasoning prompts {p['ideal_reasoning_cached']:,} of {p['reasoning_prompt_tokens']:,}, "
        f"verdict reads ~{p['ideal_read_cached_approx']:,} of ~{p['read_prompt_tokens_approx']:,})"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--queries", type=int, default=4)
    ap.add_argument("--candidates", type=int, default=8)
    ap.add_argument("--budget", type=int, default=128)
    ap.add_argument("--out", type=Path, default=OUT_DIR / "prefix_cache.json")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="rrm-prefix-") as tmp:
        proc = procs.rrm_serve(Path(tmp))
        with procs.running(proc):
            with console.status("starting rrm serve"):
                procs.wait_grpc(proc)
            with console.status("ranking"):
                probe = asyncio.run(
                    round_robin_prefix(
                        f"127.0.0.1:{proc.port}",
                        bench_pairs(args.queries + args.candidates, 200),
                        args.queries,
                        args.candidates,
                        args.budget,
                    )
                )
    console.print(describe(probe))
    save_json(args.out, probe)


if __name__ == "__main__":
    main()

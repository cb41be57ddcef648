"""Every ranking strategy on the real CPU judge through the real service: wall time, matches
and judgments for n = 8 candidates of one HH-RLHF prompt (the chosen reply, the rejected reply
and six other prompts' replies as distractors), a few prompts in a row; ratios against the
knockout, the baseline.

    .venv/bin/python bench/rank_real_judge.py --prompts 4 --max-reasoning-tokens 64
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import grpc
from rich.console import Console
from rich.table import Table
from rrm.v1 import reward_pb2 as pb
from rrm.v1 import reward_pb2_grpc as pb_grpc

from policy_adapter.hh_rlhf import load_pairs
from reward_service.testing.serve_process import rrm_serve

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--candidates", type=int, default=8)
    ap.add_argument("--max-reasoning-tokens", type=int, default=64)
    ap.add_argument(
        "--strategies",
        default="knockout,elo,swiss,anchored_knockout,in_group_reference,adaptive",
        help="comma-separated Strategy names without the STRATEGY_ prefix; the first is the "
        "baseline of the ratios",
    )
    args = ap.parse_args()
    names = [name.strip().upper() for name in args.strategies.split(",")]
    strategies = [pb.Strategy.Value(f"STRATEGY_{name}") for name in names]
    pairs = list(load_pairs(ROOT / "examples" / "hh-rlhf-harmless-256.jsonl", 64))
    console = Console(width=120)
    rows = []
    with (
        tempfile.TemporaryDirectory() as logs,
        rrm_serve(Path(logs)) as service,
        grpc.insecure_channel(service.address) as channel,
    ):
        stub = pb_grpc.RewardServiceStub(channel)
        for strategy in strategies:
            wall, comparisons, judgments, chosen_top = 0.0, 0, 0, 0
            for p in range(args.prompts):
                pair = pairs[p]
                others = [q.chosen for q in pairs[10 + p * 8 : 10 + p * 8 + args.candidates - 2]]
                cands = [pair.chosen, pair.rejected, *others]
                started = time.perf_counter()
                reply = stub.Rank(
                    pb.RankRequest(
                        request_id=f"rank-real-{strategy}-{p}-{time.time_ns()}",
                        query=pair.query,
                        history=[pb.Message(role=r, content=c) for r, c in pair.history],
                        candidates=cands,
                        strategy=strategy,
                        options=pb.JudgeOptions(
                            max_reasoning_tokens=args.max_reasoning_tokens, no_cache=True
                        ),
                    ),
                    timeout=1800,
                )
                wall += time.perf_counter() - started
                comparisons += reply.comparisons
                judgments += reply.usage.judgments
                chosen_top += list(reply.ranking).index(0) < list(reply.ranking).index(1)
                console.print(
                    f"{pb.Strategy.Name(strategy)} prompt {p}: {reply.comparisons} matches,"
                    f" {reply.usage.judgments} judgments, {reply.rounds} rounds,"
                    f" winner {reply.winner}"
                )
            rows.append(
                (
                    pb.Strategy.Name(strategy),
                    wall / args.prompts,
                    comparisons / args.prompts,
                    judgments / args.prompts,
                    chosen_top,
                )
            )
    table = Table(
        title=f"n = {args.candidates}, real CPU judge, budget {args.max_reasoning_tokens}"
    )
    for col in (
        "strategy",
        "wall s / prompt",
        "matches / prompt",
        "judgments / prompt",
        "wall, judgments vs baseline",
        f"chosen ranked above rejected (of {args.prompts})",
    ):
        table.add_column(col)
    base_wall, base_judgments = rows[0][1], rows[0][3]
    for name, wall, comps, judged, top in rows:
        ratio = f"{wall / base_wall:.2f}x, {judged / max(base_judgments, 1e-9):.2f}x"
        table.add_row(name, f"{wall:.1f}", f"{comps:.0f}", f"{judged:.0f}", ratio, str(top))
    console.print(table)


if __name__ == "__main__":
    main()

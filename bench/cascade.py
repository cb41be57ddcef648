"""Budget cascade on the CPU judge, side by side in one run: full budget only vs the cascade
(JudgeOptions.cascade) at several thresholds, over the same real HH-RLHF pairs, one `rrm serve`.

Reported per variant: the fraction of comparisons escalated to the full budget, reasoning tokens
per comparison (both stages counted) and their ratio to the full-budget-only run, and agreement of
the winner with the full-budget-only winner. The noise floor, against the same reference: the
full budget with another seed (sampling noise: the agreement two full-budget judgments of the
same pair reach at all).

Method. Each pair is shown as given, the chosen response first on even pairs and second on odd
ones (so position bias cannot pass for agreement, and a seed changes the sampling only); one vote;
temperature 0.6; seed fixed per pair. The reference run stores its verdicts in the service's
verdict cache, so a cascade's full stage, which is by design the very job a plain full-budget
request makes, is answered from it (`--same-seed-floor` adds an uncached rerun with the
reference's seed: how reproducible one seeded judgment is on this engine), and the short stage
is judged once and shared by all thresholds (the same job again). Tokens are the votes' own
`reasoning_tokens`, which a cached answer keeps, so each variant costs what it would cost alone.

    nice -n 10 python -m bench.cascade --pairs 64 --full 128 --short 32

`--synthetic`: the tiny RRM (`make rrm-model`, rrm profile) on `rrm_synthetic`'s pairs (chosen: the
answer the rule picks; a quarter past any budget), a judge that decides on content, not position.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from rrm.v1 import reward_pb2 as pb
from rrm.v1 import reward_pb2_grpc as pb_grpc

from bench.common import (
    ENGINE,
    OUT_DIR,
    ROOT,
    machine_facts,
    md_table,
    measured_pairs,
    save_json,
)
from policy_adapter.hh_rlhf import PreferencePair
from reward_service.testing.serve_process import rrm_serve

THRESHOLDS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4)
BOTH_ORDERS_THRESHOLDS = (0.0, 0.1, 0.2)
SEED, OTHER_SEED = 1234, 98765
CONCURRENCY = 16


@dataclass(frozen=True)
class Answer:
    winner: int  # 1: chosen, 2: rejected, 0: undecided or failed
    tokens: int  # reasoning tokens of every vote (both stages)
    escalated: bool
    failed: bool
    chosen_first: bool


def request(i: int, p: PreferencePair, args: argparse.Namespace, **kw: Any) -> pb.CompareRequest:
    chosen_first = i % 2 == 0
    a, b = (p.chosen, p.rejected) if chosen_first else (p.rejected, p.chosen)
    options = pb.JudgeOptions(
        votes=1,
        order=pb.ORDER_AS_GIVEN,
        max_reasoning_tokens=args.full,
        temperature=0.6,
        seed=kw.pop("seed", SEED),
        **kw,
    )
    return pb.CompareRequest(
        request_id=f"cascade-{i}-{options.SerializeToString().hex()}",
        query=p.query,
        history=[pb.Message(role=r, content=c) for r, c in p.history],
        response_a=a,
        response_b=b,
        options=options,
    )


def answer(i: int, reply: pb.CompareResponse | None) -> Answer:
    if reply is None:
        return Answer(0, 0, False, True, i % 2 == 0)
    chosen_first = i % 2 == 0
    winner = 0
    if reply.winner != pb.WINNER_UNDECIDED:
        chosen_won = (reply.winner == pb.WINNER_A) == chosen_first
        winner = 1 if chosen_won else 2
    tokens = sum(v.reasoning_tokens for v in reply.votes)
    return Answer(winner, tokens, reply.decided_by == pb.CASCADE_STAGE_FULL, False, chosen_first)


async def run_variant(
    stub: pb_grpc.RewardServiceStub,
    pairs: list[PreferencePair],
    args: argparse.Namespace,
    **kw: Any,
) -> tuple[list[Answer], float]:
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(i: int, p: PreferencePair) -> Answer:
        async with gate:
            try:
                reply = await stub.Compare(request(i, p, args, **dict(kw)), timeout=600)
            except grpc.aio.AioRpcError as exc:
                print(f"pair {i}: {exc.code().name}: {exc.details()}")
                return answer(i, None)
            return answer(i, reply)

    started = time.perf_counter()
    answers = await asyncio.gather(*(one(i, p) for i, p in enumerate(pairs)))
    return list(answers), time.perf_counter() - started


def summary(name: str, answers: list[Answer], ref: list[Answer], seconds: float) -> dict[str, Any]:
    n = len(answers)
    ref_tokens = sum(a.tokens for a in ref)
    tokens = sum(a.tokens for a in answers)
    # An undecided reference cannot be agreed with by a decided answer: agreement is also
    # reported over the pairs the reference decided. First-shown wins shows the position bias
    # (chosen alternates sides, so a judge that always picks "Assistant 1" agrees with itself).
    decided = [(a, r) for a, r in zip(answers, ref, strict=True) if r.winner]
    picked = [a for a in answers if a.winner]
    return {
        "variant": name,
        "pairs": n,
        "escalated": sum(a.escalated for a in answers) / n,
        "tokens_per_judgment": tokens / n,
        "token_ratio": tokens / ref_tokens if ref_tokens else float("nan"),
        "agreement": sum(a.winner == r.winner for a, r in zip(answers, ref, strict=True)) / n,
        "agreement_where_reference_decided": (
            sum(a.winner == r.winner for a, r in decided) / len(decided)
            if decided
            else float("nan")
        ),
        "first_shown_wins": (
            sum((a.winner == 1) == a.chosen_first for a in picked) / len(picked)
            if picked
            else float("nan")
        ),
        "chosen_wins": sum(a.winner == 1 for a in answers) / n,
        "undecided_or_failed": sum(a.winner == 0 for a in answers),
        "seconds": seconds,
    }


def synthetic_pairs(n: int) -> list[PreferencePair]:
    import random

    from reward_service.domain import Verdict
    from reward_service.testing.rrm_synthetic import make_judgment

    rng, out = random.Random(4321), []
    for _ in range(n):
        j = make_judgment(rng, long=rng.random() < 0.25)
        good, bad = (j.pair.first, j.pair.second)[:: 1 if j.verdict is Verdict.FIRST else -1]
        out.append(PreferencePair((), j.pair.query, good, bad))
    return out


async def measure(address: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    pairs = synthetic_pairs(args.pairs) if args.synthetic else measured_pairs(args.pairs)
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.RewardServiceStub(channel)
        ref, secs = await run_variant(stub, pairs, args)
        rows = [summary(f"full {args.full} (reference)", ref, ref, secs)]
        print(rows[-1], flush=True)
        if args.same_seed_floor:
            again, secs = await run_variant(stub, pairs, args, no_cache=True)
            rows.append(summary(f"full {args.full}, same seed again", again, ref, secs))
            print(rows[-1], flush=True)
        for both in (False, True):
            for t in BOTH_ORDERS_THRESHOLDS if both else THRESHOLDS:
                cascade = pb.CascadeOptions(
                    short_reasoning_tokens=args.short, threshold=t, short_both_orders=both
                )
                got, secs = await run_variant(stub, pairs, args, cascade=cascade)
                name = f"cascade {args.short}->{args.full}, t={t}" + (
                    ", both orders" if both else ""
                )
                rows.append(summary(name, got, ref, secs))
                print(rows[-1], flush=True)
        # last: the cascades above need only the short stage beyond the reference
        other, secs = await run_variant(stub, pairs, args, seed=OTHER_SEED, no_cache=True)
        rows.append(summary(f"full {args.full}, another seed", other, ref, secs))
        print(rows[-1], flush=True)
    return rows


def report(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    header = (
        "variant",
        "escalated",
        "reasoning tok/judgment",
        "tokens vs full",
        "agreement with full",
        "where full decided",
        "first shown wins",
        "chosen wins",
        "undecided",
    )
    body = [
        (
            r["variant"],
            f"{r['escalated']:.0%}" if "cascade" in r["variant"] else "-",
            f"{r['tokens_per_judgment']:.1f}",
            f"{r['token_ratio']:.2f}x",
            f"{r['agreement']:.1%}",
            f"{r['agreement_where_reference_decided']:.1%}",
            f"{r['first_shown_wins']:.0%}",
            f"{r['chosen_wins']:.0%}",
            str(r["undecided_or_failed"]),
        )
        for r in rows
    ]
    return md_table(header, body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=64)
    parser.add_argument("--full", type=int, default=128)
    parser.add_argument("--short", type=int, default=32)
    parser.add_argument(
        "--same-seed-floor",
        action="store_true",
        help="also rerun the full budget with the reference's seed, uncached (reproducibility)",
    )
    parser.add_argument("--synthetic", action="store_true", help="the tiny RRM on synthetic pairs")
    args = parser.parse_args()
    log_dir = OUT_DIR / ("cascade-synthetic" if args.synthetic else "cascade")
    log_dir.mkdir(parents=True, exist_ok=True)
    # rrm_serve sets the context length itself (2048, as ENGINE's)
    env = {k: v for k, v in ENGINE.rrm_env().items() if k != "RRM_ENGINE__MAX_MODEL_LEN"}
    env["RRM_GATEWAY__METRICS_PORT"] = "0"
    # At `nice -n 10` on a shared machine the engine core can wait minutes for a CPU: no stall
    # probe, or the worker restarts a starved (not hung) engine mid-run.
    env["RRM_WORKER__ENGINE_STALL_S"] = "3600"
    if args.synthetic:
        from reward_service.testing.tiny_rrm import build_trained_rrm_model

        model = build_trained_rrm_model(ROOT / ".cache" / "models" / "tiny-rrm")
        env |= {"RRM_ENGINE__MODEL": str(model), "RRM_JUDGE__PROFILE": "rrm"}
    with rrm_serve(Path(log_dir), timeout_s=300, **env) as service:
        rows = asyncio.run(measure(service.address, args))
    table = report(rows, args)
    print(table)
    save_json(
        log_dir / "cascade.json", {"args": vars(args), "machine": machine_facts(), "rows": rows}
    )
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()

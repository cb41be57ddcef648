"""The issue-15 Swiss target, checked on its own with more groups: Swiss (ceil(log2 n) + 2
rounds) against the round-robin Bradley-Terry fit on the same groups and judges (the judges of
`simulate_ranking.py`), Kendall tau and the paired difference with its standard error; Swiss
pipelined (results in a random order, as a service sees them) and with a round barrier side by
side, which is what pipelining costs.

    python bench/swiss_target.py --trials 1000 --n 16
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from simulate_ranking import JUDGES, Judge, kendall_tau

from reward_service.ranking import (
    Outcome,
    PendingMatch,
    ScheduleResult,
    SwissTournament,
    bradley_terry,
    round_robin_pairs,
)
from reward_service.ranking.schedule import Judge as JudgeFn


def drive(swiss: SwissTournament, judge: JudgeFn, order: random.Random | None) -> ScheduleResult:
    """Results one at a time: in the order proposed (None), else in a random order."""
    in_flight: list[PendingMatch] = []
    while not swiss.done:
        in_flight += swiss.take_ready()
        m = in_flight.pop(order.randrange(len(in_flight)) if order else 0)
        swiss.record(m.match_id, *judge(m.a, m.b))
    return swiss.result()


def mean_se(xs: list[float]) -> tuple[float, float]:
    m = sum(xs) / len(xs)
    var = sum((x - m) ** 2 for x in xs) / max(len(xs) - 1, 1)
    return m, math.sqrt(var / len(xs))


def diff(taus: dict[str, list[float]], a: str, b: str) -> str:
    """The paired mean difference a - b with its standard error."""
    d, se = mean_se([x - y for x, y in zip(taus[a], taus[b], strict=True)])
    return f"{d:+.3f} +- {se:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--accuracies", default="0.7,0.8,0.9")
    ap.add_argument("--bias", type=float, default=0.05)
    ap.add_argument("--judges", default=",".join(JUDGES))
    args = ap.parse_args()
    n = args.n
    print(f"command: python bench/swiss_target.py {' '.join(sys.argv[1:])}")
    print(
        "| judge | accuracy | BT tau | BT p(A) tau | Swiss tau (pipelined) | Swiss - BT | "
        "Swiss - BT p(A) | Swiss, round barrier | pipelined - barrier | Swiss / BT judgments |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in args.judges.split(","):
        for accuracy in (float(a) for a in args.accuracies.split(",")):
            taus: dict[str, list[float]] = {k: [] for k in ("bt", "soft", "pipe", "barrier")}
            calls = [0, 0]
            for t in range(args.trials):
                rng = random.Random(f"swiss-target:{name}:{accuracy}:{t}")
                quality = list(range(n))
                rng.shuffle(quality)
                judge = Judge(quality, accuracy, args.bias, name, rng)
                order = random.Random(t)
                pipe = drive(SwissTournament(n, t), judge.judge, order)
                calls[0] += judge.calls
                barrier = drive(SwissTournament(n, t, pipelined=False), judge.judge, order)
                judge.calls = 0
                pairs = round_robin_pairs(n, seed=t)
                xs, ys = [a for a, _ in pairs], [b for _, b in pairs]
                judged = [judge.judge(a, b) for a, b in pairs]
                calls[1] += judge.calls
                outcomes = [o for o, _ in judged]
                soft = [p if p is not None else float(o is Outcome.A_WINS) for o, p in judged]
                bt = bradley_terry(xs, ys, outcomes, n=n, n_bootstrap=0)
                bt_soft = bradley_terry(xs, ys, outcomes, n=n, n_bootstrap=0, a_points=soft)
                taus["bt"].append(kendall_tau(bt.ranking, quality))
                taus["soft"].append(kendall_tau(bt_soft.ranking, quality))
                taus["pipe"].append(kendall_tau(pipe.ranking, quality))
                taus["barrier"].append(kendall_tau(barrier.ranking, quality))

            means = {k: mean_se(v) for k, v in taus.items()}
            print(
                f"| {name} | {accuracy:.1f} | {means['bt'][0]:.3f} | {means['soft'][0]:.3f} | "
                f"{means['pipe'][0]:.3f} | {diff(taus, 'pipe', 'bt')} | "
                f"{diff(taus, 'pipe', 'soft')} | "
                f"{means['barrier'][0]:.3f} | {diff(taus, 'pipe', 'barrier')} | "
                f"{calls[0] / calls[1]:.0%} ({calls[0] / args.trials:.0f} / "
                f"{calls[1] / args.trials:.0f}) |",
                flush=True,
            )


if __name__ == "__main__":
    main()

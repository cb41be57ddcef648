"""The issue-15 adaptive target, checked on its own with more groups: adaptive top-1 against
knockout with 5 votes on the same groups (n = 32, accuracy 0.9, the simulated judges of
`simulate_ranking.py`), for several stated confidences; ratios against the knockout side by side.

    python bench/adaptive_target.py --trials 4000 --confidences 0.9,0.92,0.95
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from simulate_ranking import ADAPTIVE_BUDGET_FACTOR, JUDGES, Judge

from reward_service.ranking import (
    AdaptiveRanking,
    comparisons_bound,
    knockout,
    run_schedule,
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=4000)
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--accuracy", type=float, default=0.9)
    ap.add_argument("--bias", type=float, default=0.05)
    ap.add_argument("--confidences", default="0.9,0.92,0.95")
    ap.add_argument("--judges", default=",".join(JUDGES))
    args = ap.parse_args()
    n, confidences = args.n, [float(c) for c in args.confidences.split(",")]
    print(f"command: python bench/adaptive_target.py {' '.join(sys.argv[1:])}")
    print("| judge | strategy | top-1 (+- s.e.) | judgments | judgments vs knockout-5 |")
    print("|---|---|---|---|---|")
    for name in args.judges.split(","):
        hits = {c: 0 for c in ["ko5", *confidences]}
        calls = dict.fromkeys(hits, 0)
        for t in range(args.trials):
            # the constant-noise judges keep the seeds of the earlier two-judge runs
            tag = {"labels": False, "calibrated": True}.get(name, name)
            rng = random.Random(f"target:{tag}:{t}")
            quality = list(range(n))
            rng.shuffle(quality)
            best = quality.index(n - 1)
            judge = Judge(quality, args.accuracy, args.bias, name, rng)
            hits["ko5"] += knockout(n, judge.majority(5), seed=t).winner == best
            calls["ko5"] += judge.calls
            for c in confidences:
                judge.calls = 0
                schedule = AdaptiveRanking(
                    n,
                    ADAPTIVE_BUDGET_FACTOR * comparisons_bound(n, 1),
                    confidence=c,
                    vote_accuracy=min(args.accuracy, 0.99),
                    seed=t,
                )
                hits[c] += run_schedule(schedule, judge.judge).winner == best
                calls[c] += judge.calls
            judge.calls = 0
        base = calls["ko5"] / args.trials
        for key in hits:
            rate = hits[key] / args.trials
            se = math.sqrt(rate * (1 - rate) / args.trials)
            label = "knockout, 5 votes" if key == "ko5" else f"adaptive top-1, confidence {key}"
            mean = calls[key] / args.trials
            ratio = mean / base
            print(f"| {name} | {label} | {rate:.1%} +- {se:.1%} | {mean:.1f} | {ratio:.2f}x |")


if __name__ == "__main__":
    main()

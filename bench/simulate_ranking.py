"""Best-of-n selection with a simulated judge: how often each strategy picks the truly best
candidate, and how many comparisons (judge calls) it spends.

The judge knows a hidden total order. It picks the better response with probability `accuracy`
on average; position bias moves that by +bias when the better one is shown first and -bias when
it is shown second, and every comparison (every vote) is shown in a fresh random order, as the
reference does. Accuracy does not depend on how close the two candidates are: a deliberately
simple, pessimistic model for near-ties and optimistic for far-apart pairs.

Run from the repository root:
    python bench/simulate_ranking.py --trials 2000 --seed 0 \\
        --out docs/ranking-simulation.md --chart docs/img/ranking-simulation.png
"""

from __future__ import annotations

import argparse
import math
import platform
import random
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reward_service.ranking import (
    MajorityVote,
    Outcome,
    bradley_terry,
    elo,
    knockout,
    round_robin_pairs,
    wins,
)

ACCURACIES = (0.7, 0.8, 0.9)
SIZES = (4, 8, 16, 32)
METHODS = ("knockout", "knockout, 3 votes", "knockout, 5 votes", "Elo", "Bradley-Terry", "wins")


@dataclass
class Judge:
    """One simulated RRM: `quality[c]` is the hidden rank (higher is better)."""

    quality: list[int]
    accuracy: float
    bias: float
    rng: random.Random
    calls: int = 0

    def vote(self, a: int, b: int) -> Outcome:
        """One judgment of a against b, shown in a random order; the outcome is in (a, b) order."""
        self.calls += 1
        better_first = self.rng.random() < 0.5  # which of the two is shown as Assistant 1
        p_correct = self.accuracy + (self.bias if better_first else -self.bias)
        a_is_better = self.quality[a] > self.quality[b]
        correct = self.rng.random() < p_correct
        return Outcome.A_WINS if a_is_better == correct else Outcome.B_WINS

    def majority(self, k: int) -> Callable[[int, int], int]:
        """A knockout judge that votes up to k times with early stopping."""

        def decide(a: int, b: int) -> int:
            tally = MajorityVote(k)
            while not tally.decided:
                for _ in range(tally.votes_needed):
                    tally.add(self.vote(a, b))
            return a if tally.winner is Outcome.A_WINS else b

        return decide


def trial(n: int, accuracy: float, bias: float, seed: str) -> dict[str, tuple[bool, int]]:
    """One group of n candidates: per method, (picked the best?, judge calls)."""
    rng = random.Random(seed)
    quality = list(range(n))
    rng.shuffle(quality)
    best = quality.index(n - 1)
    judge = Judge(quality, accuracy, bias, rng)
    out: dict[str, tuple[bool, int]] = {}

    for name, k in (("knockout", 1), ("knockout, 3 votes", 3), ("knockout, 5 votes", 5)):
        judge.calls = 0
        result = knockout(n, judge.majority(k), seed=rng.randrange(2**32))
        out[name] = (result.winner == best, judge.calls)

    judge.calls = 0
    pairs = round_robin_pairs(n, seed=rng.randrange(2**32))
    xs, ys = [a for a, _ in pairs], [b for _, b in pairs]
    outcomes = [judge.vote(a, b) for a, b in pairs]
    calls = judge.calls
    rated = elo(xs, ys, outcomes, n=n, seed=rng.randrange(2**32))
    out["Elo"] = (rated.winner == best, calls)
    fit = bradley_terry(xs, ys, outcomes, n=n, n_bootstrap=0)
    out["Bradley-Terry"] = (fit.ranking[0] == best, calls)
    out["wins"] = (wins(xs, ys, outcomes, n=n).ranking[0] == best, calls)
    return out


Table = dict[tuple[float, int, str], tuple[float, float]]


def simulate(trials: int, bias: float, seed: int) -> Table:
    """(accuracy, n, method) -> (top-1 accuracy, mean judge calls)."""
    table: Table = {}
    for accuracy in ACCURACIES:
        for n in SIZES:
            hits = dict.fromkeys(METHODS, 0)
            calls = dict.fromkeys(METHODS, 0)
            for t in range(trials):
                # String seeds go through SHA-512: the same groups on every Python and platform.
                outcome = trial(n, accuracy, bias, f"{seed}:{accuracy}:{n}:{t}")
                for method, (hit, used) in outcome.items():
                    hits[method] += hit
                    calls[method] += used
            for method in METHODS:
                table[(accuracy, n, method)] = (hits[method] / trials, calls[method] / trials)
    return table


def markdown(table: Table, trials: int, bias: float, command: str, seconds: float) -> str:
    se = 0.5 / math.sqrt(trials)
    lines = [
        "# Best-of-n with a simulated judge",
        "",
        "How often each strategy picks the truly best of n candidates, and how many judge calls",
        "it spends, for a judge that is right with probability `accuracy` on average. Position",
        f"bias: +{bias:.2f} when the better response is shown first, -{bias:.2f} when second; each",
        "comparison and each vote is shown in a fresh random order. The judge's accuracy does",
        "not depend on how close two candidates are. Knockout with k votes stops as soon as the",
        "majority is settled (`MajorityVote`); Elo (K = 4, shuffled), Bradley-Terry (prior = 1)",
        "and wins all use the same round robin of n(n-1)/2 comparisons.",
        "",
        f"{trials} groups per cell; standard error of a top-1 rate at most {se:.1%}.",
        f"Generated in {seconds:.0f} s (Python {platform.python_version()}, numpy {np.__version__})"
        " by:",
        "",
        "```",
        command,
        "```",
        "",
        "![top-1 accuracy and judge calls](img/ranking-simulation.png)",
        "",
        "## Reading it",
        "",
        "- Under this judge, a round robin's extra comparisons buy little top-1 accuracy: when",
        "  accuracy does not grow with the quality gap, the best and the second best differ by",
        "  only 2 * accuracy - 1 expected wins (their own match) against binomial noise from the",
        "  other n - 2 matches, so the round robin's pick degrades with n about as fast as a",
        "  single-vote knockout's, at (n - 1) / 2 times the cost.",
        "- Majority votes per knockout match raise each match's accuracy, and that compounds over",
        "  the ceil(log2 n) matches the best must win: here the most top-1 per judge call.",
        "- Elo, Bradley-Terry and wins agree within noise on the same round robin.",
        "- A real RRM is more reliable on far-apart pairs, which favours the round robin; and Elo",
        "  or Bradley-Terry give every candidate a graded score (a group reward), where a knockout",
        "  only gives the round reached. Choose by what the caller needs, not by top-1 alone.",
        "",
    ]
    for accuracy in ACCURACIES:
        lines += [f"## Judge accuracy {accuracy:.1f}", ""]
        lines.append("| method | " + " | ".join(f"n = {n}" for n in SIZES) + " |")
        lines.append("|---|" + "---|" * len(SIZES))
        for method in METHODS:
            cells = [
                f"{table[(accuracy, n, method)][0]:.1%} ({table[(accuracy, n, method)][1]:.0f})"
                for n in SIZES
            ]
            lines.append(f"| {method} | " + " | ".join(cells) + " |")
        lines += ["", "Cells: top-1 accuracy (mean judge calls per group).", ""]
    return "\n".join(lines)


def chart(table: Table, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(ACCURACIES), figsize=(13, 7), sharex=True)
    for col, accuracy in enumerate(ACCURACIES):
        top, bottom = axes[0][col], axes[1][col]
        for method in METHODS:
            style = "--" if method in ("Bradley-Terry", "wins") else "-"
            top.plot(SIZES, [table[(accuracy, n, method)][0] for n in SIZES], style, marker="o")
            bottom.plot(SIZES, [table[(accuracy, n, method)][1] for n in SIZES], style, marker="o")
        top.set_title(f"judge accuracy {accuracy:.1f}")
        top.set_ylim(0, 1)
        bottom.set_yscale("log")
        bottom.set_xscale("log", base=2)
        bottom.set_xticks(SIZES, [str(n) for n in SIZES])
        bottom.set_xlabel("candidates n")
    axes[0][0].set_ylabel("top-1 accuracy")
    axes[1][0].set_ylabel("judge calls per group")
    fig.legend(METHODS, loc="lower center", ncol=len(METHODS), frameon=False)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--bias", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="markdown report to write")
    parser.add_argument("--chart", type=Path, default=None, help="PNG chart to write")
    args = parser.parse_args()
    command = "python bench/simulate_ranking.py " + shlex.join(sys.argv[1:])
    print(f"command: {command}", flush=True)
    start = time.monotonic()
    table = simulate(args.trials, args.bias, args.seed)
    report = markdown(table, args.trials, args.bias, command, time.monotonic() - start)
    print(report)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(report)
    if args.chart:
        chart(table, args.chart)


if __name__ == "__main__":
    main()

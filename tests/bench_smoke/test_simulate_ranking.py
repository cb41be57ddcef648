"""The ranking simulation's judges mean what the report says, and the script runs end to end."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from bench.simulate_ranking import Judge, gap_scale

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("kind", ["labels", "calibrated", "labels-gap", "calibrated-gap"])
@pytest.mark.parametrize(("n", "accuracy"), [(4, 0.7), (16, 0.9), (32, 0.8)])
def test_every_judge_is_right_with_the_stated_mean_accuracy(
    kind: str, n: int, accuracy: float
) -> None:
    rng = random.Random(f"{kind}:{n}")
    quality = list(range(n))
    judge = Judge(quality, accuracy, 0.05, kind, rng)
    right = total = 0
    for _ in range(40_000 // (n * (n - 1) // 2) + 1):
        for a in range(n):
            for b in range(n):
                if a != b:
                    outcome, p_a = judge.judge(a, b)
                    right += (outcome.name == "A_WINS") == (a > b)
                    total += 1
                    assert (p_a is None) != kind.startswith("calibrated")
    assert right / total == pytest.approx(accuracy, abs=0.01)


def test_the_gap_judge_is_surer_of_far_pairs_and_its_p_is_calibrated() -> None:
    n, rng = 16, random.Random(1)
    judge = Judge(list(range(n)), 0.9, 0.0, "calibrated-gap", rng)
    near = sum(judge.judge(8, 7)[0].name == "A_WINS" for _ in range(4000)) / 4000
    far = sum(judge.judge(15, 0)[0].name == "A_WINS" for _ in range(4000)) / 4000
    assert 0.55 < near < 0.75 and far > 0.99
    # calibration: among judgments reporting p(A) in [0.6, 0.8), a is better ~70% of the time
    hits = []
    for _ in range(20_000):
        a, b = rng.sample(range(n), 2)
        _, p = judge.judge(a, b)
        assert p is not None
        if 0.6 <= p < 0.8:
            hits.append(a > b)
    assert sum(hits) / len(hits) == pytest.approx(0.7, abs=0.05)
    assert gap_scale(16, 0.9, 0.05) > gap_scale(16, 0.8, 0.05) > gap_scale(8, 0.8, 0.05)


def test_the_simulation_runs_and_reloads_its_table(tmp_path: Path) -> None:
    saved, report = tmp_path / "table.json", tmp_path / "report.md"
    run = [sys.executable, "bench/simulate_ranking.py", "--trials", "2", "--sizes", "4,8"]
    subprocess.run([*run, "--save", str(saved)], cwd=ROOT, check=True, capture_output=True)
    rows = json.loads(saved.read_text())["table"]
    assert {tuple(k[:1]) for k, _ in rows} == {
        ("labels",),
        ("calibrated",),
        ("labels-gap",),
        ("calibrated-gap",),
    }
    subprocess.run(
        [*run, "--load", str(saved), "--out", str(report)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    assert "| Swiss |" in report.read_text()

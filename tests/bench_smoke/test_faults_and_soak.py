"""Bounded versions of `make chaos` and `make soak`: real `rrm gateway` processes, worker
processes on the ScriptedRunner test double (no engine), a redis-server per scenario."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bench import chaos, soak

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")


def test_a_worker_killed_mid_load_loses_nothing(tmp_path: Path) -> None:
    [row] = chaos.run(["worker-kill"], 120, root=tmp_path)
    assert (row.sent, row.answered, row.lost) == (120, 120, 0), row
    assert row.different_answer == 0, row
    # At-least-once: only a kill between "judged" and "stored" can run a job again.
    assert row.executed_twice <= 2, row
    assert "re-asked 120: 0 new executions" in row.notes, row


def test_clients_of_a_killed_gateway_retry_on_the_other_and_nothing_runs_twice(
    tmp_path: Path,
) -> None:
    [row] = chaos.run(["gateway-kill"], 120, root=tmp_path)
    assert (row.sent, row.lost, row.different_answer) == (120, 0, 0), row
    assert row.answered + row.answered_on_retry == 120, "every call answered, some on retry"
    # The retried copies park on the runs already going: no judgment runs twice.
    assert row.executed_twice == 0, row


def test_a_full_queue_answers_resource_exhausted_with_a_retry_delay(tmp_path: Path) -> None:
    [row] = chaos.run(["queue-full"], 120, root=tmp_path)
    assert row.lost == 0 and row.answered_twice == 0, row
    assert row.answered >= 50 and row.failed_cleanly == 120 - row.answered, row
    assert any("all with RetryInfo" in note for note in row.notes), row


def test_soak_plumbing_with_the_scripted_judge(tmp_path: Path) -> None:
    res = soak.run(soak.Load(rate=40.0), 0.15, 3.0, 1.0, 16, scripted=True, log_dir=tmp_path)
    soak.analyse(res, slope_limit=50.0)
    assert res.sent >= 300 and res.answered == res.sent and not res.errors, res
    assert set(res.slopes_mib_per_min) == {"gateway", "worker", "redis"}
    assert res.passed
    soak.plot(res, tmp_path / "soak.png")
    assert (tmp_path / "soak.png").stat().st_size > 10_000

"""Bounded versions of `make chaos` and `make soak`: real `rrm gateway` processes, worker
processes on the ScriptedRunner test double (no engine) that draws every verdict and p at random,
a redis-server (or a Sentinel setup) per scenario. The engine rows of `make chaos` are covered by
tests/engine/test_engine_outage_real.py."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from bench import chaos, soak

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")


def test_a_worker_killed_mid_load_loses_nothing(tmp_path: Path) -> None:
    [row] = chaos.run(["worker-kill"], 120, root=tmp_path)
    assert (row.calls, row.answered, row.lost) == (120, 120, 0), row
    assert row.answered_twice == 0 and row.dead_letters == 0, row
    # At-least-once: only a kill between "judged" and "stored" can run a job again.
    assert row.ran_twice is not None and row.ran_twice <= 2, row
    assert "re-asked 120: 0 new executions" in row.notes, row


def test_clients_of_a_killed_gateway_retry_on_the_other_and_nothing_runs_twice(
    tmp_path: Path,
) -> None:
    [row] = chaos.run(["gateway-kill"], 120, root=tmp_path)
    assert (row.calls, row.lost, row.answered_twice) == (120, 0, 0), row
    assert row.answered + row.answered_on_retry == 120, "every call answered, some on retry"
    # The retried copies park on the runs already going: no judgment runs twice.
    assert row.ran_twice == 0, row


def test_a_full_queue_answers_resource_exhausted_with_a_retry_delay(tmp_path: Path) -> None:
    [row] = chaos.run(["queue-full"], 120, root=tmp_path)
    assert row.lost == 0 and row.answered_twice == 0, row
    assert row.answered >= 50 and row.clean_errors == 120 - row.answered, row
    assert any("all with RetryInfo" in note for note in row.notes), row


def test_a_killed_redis_primary_loses_no_call_and_answers_each_request_once(
    tmp_path: Path,
) -> None:
    """Sentinel failover under load; clients retry clean errors by request_id."""
    [row] = chaos.run(["redis-primary-kill"], 60, root=tmp_path)
    assert (row.calls, row.lost, row.answered_twice, row.dead_letters) == (60, 0, 0, 0), row
    assert row.answered + row.answered_on_retry == 60, row
    assert any(note.startswith("failover ") for note in row.notes), row


def test_a_full_redis_refuses_with_a_retry_delay_and_answers_what_it_accepted(
    tmp_path: Path,
) -> None:
    [row] = chaos.run(["redis-oom"], 60, root=tmp_path)
    assert (row.calls, row.answered, row.lost, row.answered_twice) == (60, 60, 0, 0), row
    assert row.dead_letters == 0, row
    [refused] = [m for note in row.notes if (m := re.match(r"(\d+) calls saw .* all with", note))]
    assert int(refused[1]) > 0, "the flood met the full Redis"


def test_soak_plumbing_with_the_scripted_judge(tmp_path: Path) -> None:
    res = soak.run(soak.Load(rate=40.0), 0.15, 3.0, 1.0, 16, scripted=True, log_dir=tmp_path)
    soak.analyse(res, slope_limit=50.0)
    assert res.sent >= 300 and res.answered == res.sent and not res.errors, res
    assert set(res.slopes_mib_per_min) == {"gateway", "worker", "redis"}
    assert res.passed
    soak.plot(res, tmp_path / "soak.png")
    assert (tmp_path / "soak.png").stat().st_size > 10_000

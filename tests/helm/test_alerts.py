"""The chart's PrometheusRule, checked by Prometheus' own promtool: `promtool check rules` on the
rendered groups, and `promtool test rules` with series that make every alert fire and series that
must not."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helm.rendering import Rendered

PROMTOOL = shutil.which("promtool")


@pytest.fixture(autouse=True)
def promtool_installed() -> None:
    """Not skipped when missing: .ci/run installs it (apt package prometheus)."""
    if PROMTOOL is None:
        pytest.fail("promtool is not installed: apt-get install -y prometheus (.ci/run does)")


NS, GW, WK, RD = "judge", "rrm-serve-gateway", "rrm-serve-worker", "rrm-serve-redis"
GIB = 1 << 30


def labels(job: str, **extra: str) -> str:
    pairs = {"namespace": NS, "job": job, **extra}
    return "{" + ", ".join(f'{k}="{v}"' for k, v in pairs.items()) + "}"


def bucket_series(latency_s: float) -> list[dict[str, str]]:
    """rrm_rpc_latency_seconds for Compare, every call taking `latency_s`: 1 call/s."""
    out = []
    for le in ("1", "10", "60", "300", "600", "+Inf"):
        step = 60 if le == "+Inf" or latency_s <= float(le) else 0
        series = f"rrm_rpc_latency_seconds_bucket{labels(GW, method='Compare', le=le)}"
        out.append({"series": series, "values": f"0+{step}x60"})
    return out


# alert -> (input series, eval time, labels of the firing alert; None: must not fire)
CASES: dict[str, list[tuple[list[dict[str, str]], str, list[dict[str, str]]]]] = {
    "RRMEngineDown": [
        (
            [{"series": f"rrm_engine_up{labels(WK, pod='w1')}", "values": "1 1 0x10"}],
            "10m",
            [{"namespace": NS, "pod": "w1", "severity": "critical"}],
        ),
        # down for 3 minutes, then back: an outage the worker rode out
        ([{"series": f"rrm_engine_up{labels(WK, pod='w1')}", "values": "1 0 0 0 1x10"}], "10m", []),
    ],
    "RRMEngineRestarting": [
        (
            [{"series": f"rrm_engine_restarts_total{labels(WK, pod='w1')}", "values": "0+1x30"}],
            "30m",
            [{"namespace": NS, "job": WK, "pod": "w1", "severity": "warning"}],
        ),
        (
            [
                {
                    "series": f"rrm_engine_restarts_total{labels(WK, pod='w1')}",
                    "values": "0 1 2 2x30",
                }
            ],
            "30m",
            [],
        ),
    ],
    "RRMNoGatewayReady": [
        (  # gateways up, none ready (waiting for a worker) for longer than the budget
            [
                {"series": f"rrm_ready{labels(GW, pod='g1')}", "values": "0x30"},
                {"series": f"rrm_ready{labels(GW, pod='g2')}", "values": "0x30"},
            ],
            "25m",
            [{"namespace": NS, "severity": "critical"}],
        ),
        ([], "25m", [{"severity": "critical"}]),  # no gateway scraped at all
        (  # one of two ready is enough; a cold start within the budget is fine
            [
                {"series": f"rrm_ready{labels(GW, pod='g1')}", "values": "0x30"},
                {"series": f"rrm_ready{labels(GW, pod='g2')}", "values": "0x10 1x20"},
            ],
            "25m",
            [],
        ),
    ],
    "RRMDeadLetters": [
        (
            [{"series": f"rrm_dead_letters_total{labels(WK, pod='w1')}", "values": "0x10 1x10"}],
            "15m",
            [{"namespace": NS, "severity": "warning"}],
        ),
        (
            [{"series": f"rrm_dead_letters_total{labels(WK, pod='w1')}", "values": "0x30"}],
            "15m",
            [],
        ),
    ],
    "RRMSlowRPCs": [
        (
            bucket_series(450),
            "40m",
            [{"namespace": NS, "method": "Compare", "severity": "warning"}],
        ),
        (bucket_series(5), "40m", []),
    ],
    "RRMQueueBacklog": [
        (
            [{"series": f"rrm_queue_depth{labels(GW, pod='g1')}", "values": "5000x40"}],
            "35m",
            [{"namespace": NS, "severity": "warning"}],
        ),
        (  # a burst that drains
            [{"series": f"rrm_queue_depth{labels(GW, pod='g1')}", "values": "5000x20 100x20"}],
            "35m",
            [],
        ),
        (  # every gateway reports the same queue: three of them are not three times the backlog
            [
                {"series": f"rrm_queue_depth{labels(GW, pod=g)}", "values": "2000x40"}
                for g in ("g1", "g2", "g3")
            ],
            "35m",
            [],
        ),
    ],
    "RRMRedisMemoryHigh": [
        (  # 1.4 of 1.5 GiB for 15 minutes
            [
                {
                    "series": f"redis_memory_used_bytes{labels(RD)}",
                    "values": f"{int(1.4 * GIB)}x20",
                },
                {"series": f"redis_memory_max_bytes{labels(RD)}", "values": f"{int(1.5 * GIB)}x20"},
            ],
            "15m",
            [{"namespace": NS, "severity": "warning"}],
        ),
        (  # half full; and no maxmemory at all (0) is not "above the limit"
            [
                {"series": f"redis_memory_used_bytes{labels(RD)}", "values": f"{GIB // 2}x20"},
                {"series": f"redis_memory_max_bytes{labels(RD)}", "values": f"{GIB}x20"},
                {
                    "series": f"redis_memory_used_bytes{labels(RD, pod='other')}",
                    "values": f"{GIB}x20",
                },
                {"series": f"redis_memory_max_bytes{labels(RD, pod='other')}", "values": "0x20"},
            ],
            "15m",
            [],
        ),
    ],
}


@pytest.fixture(scope="module")
def rules(render_values: Callable[[dict[str, Any]], Rendered]) -> dict[str, Any]:
    values = {"prometheusRule": {"enabled": True}, "redis": {"metrics": {"enabled": True}}}
    rule = render_values(values).one("PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    return {"groups": rule["spec"]["groups"]}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=120)


def test_rules_pass_promtool_check(rules: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(rules))
    done = promtool("check", "rules", str(path))
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_fires_and_stays_quiet_when_it_should(
    rules: dict[str, Any], tmp_path: Path
) -> None:
    alerts = {r["alert"]: r for g in rules["groups"] for r in g["rules"]}
    assert set(alerts) == set(CASES), "every alert needs firing and quiet cases"
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules))
    tests = []
    for name, cases in CASES.items():
        assert any(c[2] for c in cases) and any(not c[2] for c in cases), name
        for series, at, firing in cases:
            expected = [
                {"exp_labels": lbl, "exp_annotations": alerts[name]["annotations"]}
                for lbl in firing
            ]
            tests.append(
                {
                    "interval": "1m",
                    "input_series": series,
                    "alert_rule_test": [
                        {"eval_time": at, "alertname": name, "exp_alerts": expected}
                    ],
                }
            )
    spec = {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": tests}
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump(spec))
    done = promtool("test", "rules", str(tmp_path / "tests.yaml"))
    assert done.returncode == 0, done.stdout + done.stderr

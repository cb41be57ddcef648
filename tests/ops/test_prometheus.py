"""The chart's Grafana dashboard and PrometheusRule against a real Prometheus: it scrapes a real
`rrm gateway` and a worker (scripted engine) under traffic that makes every counter move, and
every dashboard query returns data, the panels show that traffic, and every metric the alerts
read exists under the job names the chart's ServiceMonitors produce (no typo'd names, no metric
that is declared but never set)."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest

from tests.helm.rendering import CHART, NAMESPACE, RELEASE, objects_of
from tests.ops.dashboard_snapshot import draw
from tests.ops.stack import GATEWAY_JOB, WORKER_JOB, Stack, drive_traffic, monitored_stack

pytestmark = pytest.mark.timeout(600)

RATE_INTERVAL = "15s"  # Grafana's $__rate_interval for a 1 s scrape interval


def chart_objects() -> list[dict[str, Any]]:
    values = {
        "grafanaDashboard": {"enabled": True},
        "prometheusRule": {"enabled": True},
        "redis": {"metrics": {"enabled": True}},
    }
    with helm.Chart.load(str(CHART)) as chart:
        return objects_of(chart.render(values, name=RELEASE, namespace=NAMESPACE))


def dashboard_of(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (config_map,) = [o for o in objects if o["metadata"]["name"].endswith("-dashboard")]
    (text,) = config_map["data"].values()
    dashboard: dict[str, Any] = json.loads(text)
    return dashboard


def dashboard_queries(
    objects: list[dict[str, Any]], rate_interval: str = RATE_INTERVAL
) -> list[tuple[str, str, str]]:
    """(panel title, legend, PromQL) of every dashboard query, Grafana's variables filled in."""
    return [
        (panel["title"], t["legendFormat"], t["expr"].replace("$__rate_interval", rate_interval))
        for panel in dashboard_of(objects)["panels"]
        for t in panel["targets"]
    ]


def alert_rules(objects: list[dict[str, Any]]) -> dict[str, str]:
    (rule,) = [o for o in objects if o["kind"] == "PrometheusRule"]
    return {r["alert"]: r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]}


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, float, float]]:
    """The stack after 12 s of traffic: (stack, traffic start, end) as Unix times."""
    with monitored_stack(Path(tmp_path_factory.mktemp("observed"))) as stack:
        start = time.time()
        asyncio.run(drive_traffic(stack.address, 12))
        time.sleep(3)  # a few more scrapes
        yield stack, start, time.time()


def values(result: list[dict[str, Any]]) -> dict[str, float]:
    return {json.dumps(r["metric"], sort_keys=True): float(r["value"][1]) for r in result}


def test_every_dashboard_query_returns_data(observed: tuple[Stack, float, float]) -> None:
    stack, _, end = observed
    queries = dashboard_queries(chart_objects())
    assert len(queries) >= 15
    empty = [(t, e) for t, _, e in queries if not stack.prometheus.query(e, at=end)]
    assert not empty, f"queries without data: {empty}"


def test_the_panels_show_the_traffic(observed: tuple[Stack, float, float]) -> None:
    stack, start, end = observed
    # Rates over the whole traffic window, read at its end: whatever happened during it counts.
    window = f"{int(end - start) + 1}s"
    by_title: dict[str, list[list[dict[str, Any]]]] = {}
    for title, _, expr in dashboard_queries(chart_objects(), window):
        by_title.setdefault(title, []).append(stack.prometheus.query(expr, at=end))

    def labelled(title: str, label: str, index: int = 0) -> dict[str, float]:
        return {r["metric"][label]: float(r["value"][1]) for r in by_title[title][index]}

    def single(title: str, index: int = 0) -> float:
        (value,) = values(by_title[title][index]).values()
        return value

    judged = labelled("Judgments/s by parse status", "status")
    assert set(judged) == {"ok", "budget_forced", "unparseable"}
    assert min(judged.values()) > 0
    shares = labelled("Budget-forced and unparseable share", "status")
    assert set(shares) == {"budget_forced", "unparseable"}
    assert all(0 < v < 1 for v in shares.values())
    p99 = labelled("RPC latency p50 / p99", "method", index=1)
    assert {"Compare", "Rank"} <= set(p99) and min(p99.values()) > 0
    assert single("Engine tokens/s") > 0
    assert 0 < single("Verdict cache hit rate") < 1
    assert single("Workers ready") == 1 and single("Gateways ready") == 1
    assert single("Engine up") == 1
    assert single("Dead letters (1h)") >= 1  # the [fail] judgment
    # the gateway's depth gauge moved during the run (it is refreshed every 5 s)
    depth = f'max_over_time(rrm_queue_depth{{namespace="{NAMESPACE}", job="{GATEWAY_JOB}"}}[5m])'
    assert float(stack.prometheus.query(depth, at=end)[0]["value"][1]) > 0
    codes = stack.prometheus.query(f'rrm_rpcs_total{{job="{GATEWAY_JOB}"}}', at=end)
    assert {"OK", "INVALID_ARGUMENT", "ABORTED"} <= {r["metric"]["code"] for r in codes}


def test_every_metric_the_alerts_read_exists(observed: tuple[Stack, float, float]) -> None:
    stack, _, end = observed
    rules = alert_rules(chart_objects())
    assert len(rules) >= 7 and "RRMRedisMemoryHigh" in rules
    for alert, expr in rules.items():
        selectors = re.findall(r"(?:rrm|redis)_\w+\{[^}]*\}", expr)
        assert selectors, alert
        for selector in selectors:
            assert stack.prometheus.query(selector, at=end), f"{alert}: {selector} has no series"
    # On this healthy stack with one dead-lettered job, exactly the dead-letter alert is true.
    firing = {alert for alert, expr in rules.items() if stack.prometheus.query(expr, at=end)}
    assert firing == {"RRMDeadLetters"}
    assert WORKER_JOB in rules["RRMDeadLetters"]


def test_the_snapshot_draws_every_query(
    observed: tuple[Stack, float, float], tmp_path: Path
) -> None:
    """The drawing behind docs/img/dashboard.png: a series (or a stat) for every query."""
    stack, start, end = observed
    objects = chart_objects()
    out = tmp_path / "dashboard.png"
    drawn = draw(dashboard_of(objects), stack.prometheus, start, end, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert drawn >= len(dashboard_queries(objects))

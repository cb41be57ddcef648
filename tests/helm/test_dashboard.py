"""The chart's Grafana dashboard: a ConfigMap the Grafana sidecar loads (value-gated), whose
queries select this release's series, parse as PromQL (promtool) and name only metrics that
reward_service/metrics.py declares. tests/ops/test_prometheus.py runs them on real data."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

from reward_service import metrics
from tests.helm.rendering import NAMESPACE, Rendered

RenderValuesFn = Callable[[dict[str, Any]], Rendered]
PROMTOOL = shutil.which("promtool")


def dashboard_of(rendered: Rendered) -> dict[str, Any]:
    config_map = rendered.one("ConfigMap", "dashboard")
    (text,) = config_map["data"].values()
    dashboard: dict[str, Any] = json.loads(text)
    return dashboard


def expressions(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p["targets"]]


def exported_names() -> set[str]:
    """Every sample name the service's metrics module can export."""
    declared = {v for v in vars(metrics).values() if hasattr(v, "_name")}
    names = set()
    for family in REGISTRY.collect():
        for sample in family.samples:
            names.add(sample.name)
        if any(family.name == m._name.removesuffix("_total") for m in declared):
            for suffix in ("_total", "_bucket", "_sum", "_count"):
                names.add(family.name + suffix)
    return names


def test_off_by_default(render_values: RenderValuesFn) -> None:
    assert render_values({}).maybe("ConfigMap", "dashboard") is None


def test_sidecar_label_and_release_selectors(render_values: RenderValuesFn) -> None:
    rendered = render_values(
        {"grafanaDashboard": {"enabled": True, "annotations": {"grafana_folder": "rrm"}}}
    )
    config_map = rendered.one("ConfigMap", "dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["annotations"] == {"grafana_folder": "rrm"}
    dashboard = dashboard_of(rendered)
    assert "__" not in json.dumps(dashboard).replace("$__rate_interval", "")
    assert len(dashboard["uid"]) <= 40  # Grafana's limit
    gateway_job = rendered.one("Deployment", "gateway")["metadata"]["name"]  # = its Service
    worker_job = rendered.one("Deployment", "worker")["metadata"]["name"]
    for expr in expressions(dashboard):
        for selector in re.findall(r"rrm_\w+\{([^}]*)\}", expr):
            assert f'namespace="{NAMESPACE}"' in selector, expr
            assert f'job="{gateway_job}"' in selector or f'job="{worker_job}"' in selector, expr


def test_panels_cover_what_operators_look_at(render_values: RenderValuesFn) -> None:
    dashboard = dashboard_of(render_values({"grafanaDashboard": {"enabled": True}}))
    text = " ".join(expressions(dashboard))
    for needed in (
        "rrm_judgments_total",  # judgments/s, budget-forced and unparseable shares
        "rrm_queue_depth",  # lag + pending
        "rrm_worker_in_flight",  # pending
        "rrm_rpc_latency_seconds_bucket",  # p50 / p99 per RPC
        "rrm_engine_completion_tokens_total",  # tokens/s
        'result="hit"',  # cache hit rate
        "budget_forced|unparseable",
        "rrm_dead_letters_total",
        "rrm_ready",  # workers ready
        "rrm_engine_up",
    ):
        assert needed in text, needed
    titles = [p["title"] for p in dashboard["panels"]]
    assert len(set(titles)) == len(titles)


def test_every_metric_name_is_one_the_service_exports(render_values: RenderValuesFn) -> None:
    dashboard = dashboard_of(render_values({"grafanaDashboard": {"enabled": True}}))
    used = {n for e in expressions(dashboard) for n in re.findall(r"\b(rrm_\w+)\{", e)}
    assert used and used <= exported_names(), used - exported_names()


def test_every_query_parses_as_promql(render_values: RenderValuesFn, tmp_path: Path) -> None:
    """promtool checks PromQL offline through rules: each query becomes a recording rule."""
    if PROMTOOL is None:
        pytest.fail("promtool is not installed: apt-get install -y prometheus (.ci/run does)")
    dashboard = dashboard_of(render_values({"grafanaDashboard": {"enabled": True}}))
    rules = [
        {"record": f"dashboard:query{i}", "expr": e.replace("$__rate_interval", "1m")}
        for i, e in enumerate(expressions(dashboard))
    ]
    path = tmp_path / "queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = subprocess.run([PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr

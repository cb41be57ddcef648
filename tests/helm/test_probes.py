"""Liveness = the process is alive, readiness = it can serve, the same with and without TLS:
the rendered probes, then a real gateway (no worker anywhere) answering them."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.helm.gateway_process import GatewayProcess, http_status
from tests.helm.rendering import Rendered

RenderValuesFn = Callable[[dict[str, Any]], Rendered]
TLS = {"gateway": {"tls": {"enabled": True, "secretName": "rrm-gateway-tls"}}}
PROBES = ("startupProbe", "livenessProbe", "readinessProbe")


def probes(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: container[name] for name in PROBES}


@pytest.mark.parametrize("values", [{}, TLS], ids=["plaintext", "tls"])
def test_gateway_probes_alive_on_metrics_ready_on_healthz(
    render_values: RenderValuesFn, values: dict[str, Any]
) -> None:
    container = render_values(values).container("Deployment", "gateway")
    got = probes(container)
    for name in ("startupProbe", "livenessProbe"):
        assert got[name]["httpGet"] == {"path": "/metrics", "port": "metrics"}, name
    assert got["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert not any("grpc" in p or "exec" in p or "tcpSocket" in p for p in got.values())
    # Not restarted for slowness: liveness allows a minute of silence, startup ten.
    live = got["livenessProbe"]
    assert live["periodSeconds"] * live["failureThreshold"] >= 60
    startup = got["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 10 * 60


def test_probes_do_not_depend_on_tls(render_values: RenderValuesFn) -> None:
    plain = probes(render_values({}).container("Deployment", "gateway"))
    assert plain == probes(render_values(TLS).container("Deployment", "gateway"))


@pytest.mark.parametrize("model", ["Reward-Reasoning/RRM-7B", "Reward-Reasoning/RRM-32B"])
def test_worker_startup_budget_covers_a_big_model_load(
    render_values: RenderValuesFn, model: str
) -> None:
    values = {"engine": {"model": model, "tensorParallelSize": 4}}
    got = probes(render_values(values).container("Deployment", "worker"))
    for name in ("startupProbe", "livenessProbe"):
        assert got[name]["httpGet"] == {"path": "/metrics", "port": "metrics"}, name
    assert got["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    startup = got["startupProbe"]
    # 32B in bf16 is ~64 GB: download, load and CUDA graph capture take tens of minutes.
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 30 * 60


@pytest.mark.parametrize("mode", ["plaintext", "secured"])
def test_a_gateway_without_workers_is_alive_but_not_ready(
    no_worker_gateways: dict[str, tuple[Rendered, GatewayProcess, Any]], mode: str
) -> None:
    """What the kubelet would see: the probe paths and port the chart renders, asked of a real
    gateway whose warm-up judgment cannot be answered (no worker exists); "secured" serves gRPC
    with TLS, mutual TLS and bearer tokens, which the HTTP probes do not depend on."""
    rendered, gateway, _ = no_worker_gateways[mode]
    container = rendered.container("Deployment", "gateway")
    expected = {"startupProbe": 200, "livenessProbe": 200, "readinessProbe": 503}
    for _ in range(3):
        for name, status in expected.items():
            get = container[name]["httpGet"]
            port = gateway.port_for(container, get["port"])
            assert http_status(port, get["path"]) == status, (name, gateway.log())
        time.sleep(0.5)
    assert gateway.process.poll() is None
    assert "warm-up judgment answered" not in gateway.log()

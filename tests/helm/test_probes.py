"""Liveness = the process is alive, readiness = it can serve, the same with and without TLS:
the rendered probes, then a real gateway (no worker anywhere) answering them."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helm.gateway_process import GatewayProcess, gateway_processes, http_status, plain_env
from tests.helm.rendering import Rendered
from tests.security.certs import make_pki
from tests.support.redis_server import redis_server

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


@pytest.fixture(scope="module")
def no_worker_gateways(
    render_values: RenderValuesFn, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, tuple[dict[str, Any], GatewayProcess]]]:
    """A plaintext and a TLS gateway configured from the rendered containers, on a Redis where
    no worker exists, so their warm-up judgments wait in the queue."""
    containers = {"plaintext": render_values({}), "tls": render_values(TLS)}
    configs = {}
    for mode, rendered in containers.items():
        tmp = Path(tmp_path_factory.mktemp(mode))
        env = plain_env(rendered.container("Deployment", "gateway"))
        if mode == "tls":
            pki = make_pki(tmp)
            env |= {"RRM_GATEWAY__TLS_CERT": str(pki.server_cert)}
            env |= {"RRM_GATEWAY__TLS_KEY": str(pki.server_key)}
        configs[mode] = (tmp, env)
    with redis_server() as redis, gateway_processes(redis.url, configs) as gateways:
        yield {
            mode: (containers[mode].container("Deployment", "gateway"), gateways[mode])
            for mode in configs
        }


@pytest.mark.parametrize("mode", ["plaintext", "tls"])
def test_a_gateway_without_workers_is_alive_but_not_ready(
    no_worker_gateways: dict[str, tuple[dict[str, Any], GatewayProcess]], mode: str
) -> None:
    """What the kubelet would see: the probe paths and port the chart renders, asked of a real
    gateway whose warm-up judgment cannot be answered (no worker exists)."""
    container, gateway = no_worker_gateways[mode]
    expected = {"startupProbe": 200, "livenessProbe": 200, "readinessProbe": 503}
    for _ in range(3):
        for name, status in expected.items():
            get = container[name]["httpGet"]
            port = gateway.port_for(container, get["port"])
            assert http_status(port, get["path"]) == status, (name, gateway.log())
        time.sleep(0.5)
    assert gateway.process.poll() is None
    assert "warm-up judgment answered" not in gateway.log()

"""`helm test`: the chart's test pod runs `rrm check` against the release's gateway: gRPC health
SERVING and GetInfo, over TLS, mutual TLS and a bearer token when the gateway requires them.
Rendered and schema-checked with the other objects (test_manifests); here its command runs, with
the files its volumes would mount, against real gateways: one serving (a worker answered its
warm-up), one whose workers are missing (NOT_SERVING: the test must fail)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helm.conftest import chart_secrets
from tests.helm.gateway_process import (
    GatewayProcess,
    materialise_mounts,
    start_gateway,
    start_scripted_worker,
    stop_gateway,
    wait_ready,
)
from tests.helm.rendering import REPO, SECURED, Rendered
from tests.security.certs import Pki, make_pki
from tests.support.redis_server import redis_server

RenderValuesFn = Callable[[dict[str, Any]], Rendered]
Gateways = dict[str, tuple[Rendered, GatewayProcess, Pki]]


def test_the_test_pod_is_a_helm_test_hook(render_values: RenderValuesFn) -> None:
    for values in ({}, SECURED):
        pod = render_values(values).one("Pod", "check")
        annotations = pod["metadata"]["annotations"]
        assert annotations["helm.sh/hook"] == "test"
        assert "hook-succeeded" in annotations["helm.sh/hook-delete-policy"]
        assert pod["spec"]["restartPolicy"] == "Never"
        (container,) = pod["spec"]["containers"]
        assert container["command"] == ["rrm"] and container["args"][0] == "check"
    assert render_values({"helmTest": {"enabled": False}}).maybe("Pod", "check") is None


def check_command(rendered: Rendered, root: Path, port: int, pki: Pki) -> list[str]:
    """The pod's command with its Secret volumes laid out under `root` (paths moved there) and
    the Service address replaced by the local gateway (`localhost`: the test certificate's name)."""
    pod = rendered.one("Pod", "check")
    (container,) = pod["spec"]["containers"]
    materialise_mounts(pod["spec"], container, chart_secrets(pki), root)
    mounts = [m["mountPath"] for m in container["volumeMounts"]]
    args = list(container["args"])
    target = args.index("--target") + 1
    assert (
        args[target]
        == f"{rendered.one('Deployment', 'gateway')['metadata']['name']}.judge.svc:50051"
    )
    args[target] = f"localhost:{port}"
    args = [
        str(root / a.lstrip("/")) if any(a.startswith(m + "/") for m in mounts) else a for a in args
    ]
    return [sys.executable, "-m", "reward_service.cli", *args]


def run(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def serving_secured_gateway(
    render_values: RenderValuesFn, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Rendered, GatewayProcess, Pki]]:
    """A real gateway with SECURED's env and files, and a worker (scripted engine) behind it."""
    tmp = Path(tmp_path_factory.mktemp("serving"))
    (tmp / "pki").mkdir()
    pki = make_pki(tmp / "pki")
    rendered = render_values(SECURED)
    pod = rendered.one("Deployment", "gateway")["spec"]["template"]["spec"]
    container = rendered.container("Deployment", "gateway")
    env = materialise_mounts(pod, container, chart_secrets(pki), tmp / "gateway-files")
    with redis_server() as redis:
        worker = start_scripted_worker(
            tmp / "worker", {"RRM_QUEUE__KIND": "redis", "RRM_QUEUE__REDIS_URL": redis.url}
        )
        gateway = start_gateway(tmp / "gateway", redis.url, env)
        try:
            wait_ready(gateway, worker)
            yield rendered, gateway, pki
        finally:
            stop_gateway(gateway)
            stop_gateway(worker)


def test_the_check_passes_on_a_serving_secured_release(
    serving_secured_gateway: tuple[Rendered, GatewayProcess, Pki], tmp_path: Path
) -> None:
    rendered, gateway, pki = serving_secured_gateway
    done = run(check_command(rendered, tmp_path, gateway.grpc_port, pki))
    assert done.returncode == 0, done.stderr
    assert '"model": "SmolLM2-135M-Instruct"' in done.stdout


def test_the_check_needs_the_token_and_the_client_certificate(
    serving_secured_gateway: tuple[Rendered, GatewayProcess, Pki], tmp_path: Path
) -> None:
    rendered, gateway, pki = serving_secured_gateway
    command = check_command(rendered, tmp_path, gateway.grpc_port, pki)
    i = command.index("--token-file")
    no_token = run(command[:i] + command[i + 2 :])
    assert no_token.returncode == 1 and "UNAUTHENTICATED" in no_token.stderr, no_token.stderr
    i = command.index("--tls-cert")
    no_client_cert = run(command[:i] + command[i + 4 :])
    assert no_client_cert.returncode == 1 and "UNAVAILABLE" in no_client_cert.stderr


def test_the_check_fails_while_no_worker_is_ready(
    no_worker_gateways: Gateways, tmp_path: Path
) -> None:
    rendered, gateway, pki = no_worker_gateways["secured"]
    done = run(check_command(rendered, tmp_path, gateway.grpc_port, pki))
    assert done.returncode == 1
    assert "NOT_SERVING" in done.stderr, done.stderr

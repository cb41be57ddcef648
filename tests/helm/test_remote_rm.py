"""`rrm remote-rm` next to the gateway (OpenRLHF's --reward.remote_url), and the worker's placement
and image values: rendered, and remote-rm run with the rendered arguments against a real gateway."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest

from reward_service.testing.serve_process import free_port
from tests.helm.conftest import GATEWAY_TOKEN
from tests.helm.gateway_process import GatewayProcess, http_status
from tests.helm.rendering import DIGEST, REPO, VALUE_SETS, Rendered, env_of
from tests.security.certs import Pki

RenderFn = Callable[[str], Rendered]
RenderValuesFn = Callable[[dict[str, Any]], Rendered]


def remote_rm(rendered: Rendered) -> tuple[dict[str, Any], dict[str, Any]]:
    deployment = rendered.one("Deployment", "remote-rm")
    return deployment, rendered.container("Deployment", "remote-rm")


def flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def test_remote_rm_is_off_by_default(render: RenderFn) -> None:
    for name in ("defaults", "secured"):
        objects = render(name).objects
        component = [o["metadata"]["labels"]["app.kubernetes.io/component"] for o in objects]
        assert "remote-rm" not in component


def test_remote_rm_calls_this_releases_gateway_as_the_chart_secures_it(render: RenderFn) -> None:
    rendered = render("remote-rm")
    deployment, container = remote_rm(rendered)
    args = container["args"]
    assert container["command"] == ["rrm"] and args[0] == "remote-rm"
    (gateway_service,) = [
        s
        for s in rendered.kinds("Service")
        if s["metadata"]["labels"]["app.kubernetes.io/component"] == "gateway"
        and s["spec"].get("clusterIP") != "None"
    ]
    port = gateway_service["spec"]["ports"][0]["port"]
    assert flag(args, "--target") == f"{gateway_service['metadata']['name']}.judge.svc:{port}"
    assert int(flag(args, "--n")) == 8 and flag(args, "--mode") == "group"
    # group mode buffers cohorts in one process: one replica, never two during a rollout
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    # TLS to the gateway: its CA, a client certificate for mTLS, the token from a Secret
    pod = deployment["spec"]["template"]["spec"]
    volumes = {v["name"]: v["secret"] for v in pod["volumes"] if "secret" in v}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    ca = Path(flag(args, "--tls-ca"))
    assert volumes[mounts[str(ca.parent)]]["secretName"] == "rrm-gateway-ca"
    cert = Path(flag(args, "--tls-cert"))
    assert volumes[mounts[str(cert.parent)]]["secretName"] == "rrm-remote-rm-client"
    token = env_of(container)["RRM_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert token == {"name": "rrm-gateway-tokens", "key": "tokens"}
    # probes: alive = the port accepts; ready = /health, which asks the gateway
    assert container["livenessProbe"]["tcpSocket"] == {"port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    service = rendered.one("Service", "remote-rm")
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    assert (
        service["spec"]["selector"].items() <= deployment["spec"]["selector"]["matchLabels"].items()
    )


def test_remote_rm_network_policies(render: RenderFn) -> None:
    rendered = render("remote-rm")
    (own,) = [
        p
        for p in rendered.kinds("NetworkPolicy")
        if p["metadata"]["labels"]["app.kubernetes.io/component"] == "remote-rm"
    ]
    assert own["spec"]["ingress"][0]["from"] == VALUE_SETS["remote-rm"]["remoteRM"]["clients"]
    gateway = rendered.one("NetworkPolicy", "gateway")
    peers = gateway["spec"]["ingress"][0]["from"]
    labels = rendered.one("Deployment", "remote-rm")["spec"]["template"]["metadata"]["labels"]
    assert any(
        p.get("podSelector", {}).get("matchLabels", {}).items() <= labels.items() for p in peers
    )


def test_group_mode_refuses_several_replicas(render_values: RenderValuesFn) -> None:
    with pytest.raises(helm.HelmError, match="replicaCount"):
        render_values({"remoteRM": {"enabled": True, "replicaCount": 2}})
    rendered = render_values(
        {"remoteRM": {"enabled": True, "replicaCount": 2, "mode": "reference"}}
    )
    assert remote_rm(rendered)[0]["spec"]["replicas"] == 2


def test_worker_placement_gpu_resource_and_image_values(render: RenderFn) -> None:
    rendered = render("mirror-and-placement")
    worker = rendered.one("Deployment", "worker")["spec"]["template"]["spec"]
    (container,) = worker["containers"]
    assert container["resources"]["limits"]["amd.com/gpu"] == 1
    assert "nvidia.com/gpu" not in container["resources"]["limits"]
    assert worker["priorityClassName"] == "judges"
    spread = worker["topologySpreadConstraints"]
    assert spread == VALUE_SETS["mirror-and-placement"]["worker"]["topologySpreadConstraints"]
    assert container["image"] == f"mirror.example.com:5000/rrm/rrm-serve/worker@{DIGEST}"
    gateway = rendered.container("Deployment", "gateway")
    assert gateway["image"] == f"mirror.example.com:5000/rrm/rrm-serve/gateway@{DIGEST}"
    redis = rendered.container("StatefulSet", "redis")
    assert redis["image"].startswith("mirror.example.com:5000/rrm/library/redis:")
    defaults = render("defaults")
    assert defaults.container("Deployment", "worker")["image"].startswith("ghcr.io/rrm-serve/")


def test_training_pull_secrets_take_the_charts_shape(render_values: RenderValuesFn) -> None:
    from tests.helm.test_training_hooks import training_values

    for secrets in ([{"name": "ghcr-pull"}], ["ghcr-pull"]):
        values = training_values()
        values["training"]["imagePullSecrets"] = secrets
        job = render_values(values).one("Job")
        assert job["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": "ghcr-pull"}]


# ---- remote-rm, run as the chart runs it ----


def test_remote_rm_is_ready_through_the_secured_gateway(
    render: RenderFn,
    no_worker_gateways: dict[str, tuple[Rendered, GatewayProcess, Pki]],
    tmp_path: Path,
) -> None:
    """The rendered arguments (TLS CA, client certificate) and token, files laid out where the
    chart mounts them, against the real TLS + mTLS + token gateway: /health answers 200; the
    same process with no token is not ready."""
    _, gateway, pki = no_worker_gateways["secured"]
    _, container = remote_rm(render("remote-rm"))
    files = {
        "--tls-ca": pki.ca,
        "--tls-cert": pki.client_cert,
        "--tls-key": pki.client_key,
    }
    args = list(container["args"])
    for name, source in files.items():
        target = tmp_path / flag(args, name).lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source.read_bytes())
        args[args.index(name) + 1] = str(target)
    port = free_port()
    args[args.index("--port") + 1] = str(port)
    args[args.index("--host") + 1] = "127.0.0.1"
    # the gateway's certificate names localhost, not the in-cluster Service name
    args[args.index("--target") + 1] = f"localhost:{gateway.grpc_port}"

    def readiness(token: str | None, within_s: float) -> int:
        """Poll the readiness path like the kubelet until 200 or `within_s`; the last status."""
        env = dict(os.environ, PYTHONPATH=str(REPO))
        env.pop("RRM_TOKEN", None)
        if token:
            env["RRM_TOKEN"] = token
        log_path = tmp_path / f"remote-rm-{bool(token)}.log"
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "reward_service.cli", *args],  # `rrm` + the args
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        status = 0
        try:
            deadline = time.monotonic() + within_s
            while time.monotonic() < deadline and status != 200:
                assert proc.poll() is None, log_path.read_text()
                with contextlib.suppress(OSError):
                    status = http_status(port, container["readinessProbe"]["httpGet"]["path"])
                time.sleep(0.5)
            return status
        finally:
            proc.terminate()
            proc.wait(timeout=30)

    assert readiness(GATEWAY_TOKEN, within_s=60) == 200
    assert readiness(None, within_s=10) not in (0, 200)  # up, but the gateway refuses it

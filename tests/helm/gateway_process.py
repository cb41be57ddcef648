"""A real `rrm gateway` process configured the way the chart configures it, for tests that check
what the rendered probes and security settings do to the running program (no Kubernetes here)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reward_service.testing.serve_process import free_port
from tests.helm.rendering import REPO, env_of


@dataclass
class GatewayProcess:
    process: subprocess.Popen[bytes]
    grpc_port: int
    metrics_port: int
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def port_for(self, container: dict[str, Any], name: str) -> int:
        """The local port standing in for the container port called `name`."""
        numbers = {p["name"]: p["containerPort"] for p in container["ports"]}
        local = {"grpc": self.grpc_port, "metrics": self.metrics_port}
        assert name in numbers, f"the container has no port {name}"
        return local[name]


def plain_env(container: dict[str, Any]) -> dict[str, str]:
    """The container's literal RRM_ settings (those not taken from a Secret or a field)."""
    return {
        name: e["value"]
        for name, e in env_of(container).items()
        if name.startswith("RRM_") and "value" in e and "$(" not in e["value"]
    }


def queue_env(container: dict[str, Any], secrets: dict[str, dict[str, bytes]]) -> dict[str, str]:
    """The container's RRM_QUEUE__ settings as the kubelet hands them to the process: Secret keys
    read from `secrets`, $(VAR) references to earlier variables expanded."""
    seen: dict[str, str] = {}
    for var in container.get("env", []):
        if "value" in var:
            value = var["value"]
            for name, earlier in seen.items():
                value = value.replace(f"$({name})", earlier)
        elif "secretKeyRef" in var.get("valueFrom", {}):
            ref = var["valueFrom"]["secretKeyRef"]
            value = secrets[ref["name"]][ref["key"]].decode()
        else:
            continue
        seen[var["name"]] = value
    return {k: v for k, v in seen.items() if k.startswith("RRM_QUEUE__")}


def start_scripted_worker(tmp: Path, env: dict[str, str]) -> GatewayProcess:
    """tests.ops.scripted_worker (`app.run_worker` with a scripted engine) with `env` on top of
    the test's environment; its metrics port is `metrics_port` (it has no gRPC port)."""
    metrics_port = free_port()
    full = dict(os.environ)
    full.setdefault("RRM_CACHE_DIR", str(REPO / ".cache"))
    full |= {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(REPO)}
    full |= env | {
        "RRM_WORKER__METRICS_HOST": "127.0.0.1",
        "RRM_WORKER__METRICS_PORT": str(metrics_port),
    }
    tmp.mkdir(parents=True, exist_ok=True)
    log_path = tmp / "worker.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.ops.scripted_worker"],
            cwd=REPO,
            env=full,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return GatewayProcess(process, 0, metrics_port, log_path)


def http_status(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3) as reply:
            return int(reply.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


def start_gateway(tmp: Path, redis_url: str, env: dict[str, str]) -> GatewayProcess:
    """Start `python -m reward_service.cli gateway` on loopback with `env` on top of the test's
    environment (logs in `tmp`)."""
    grpc_port, metrics_port = free_port(), free_port()
    full = dict(os.environ)
    full.setdefault("RRM_CACHE_DIR", str(REPO / ".cache"))  # the CPU judge's tokenizer
    full |= {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", **env}
    full |= {
        "RRM_QUEUE__KIND": "redis",
        "RRM_QUEUE__REDIS_URL": redis_url,
        "RRM_GATEWAY__HOST": "127.0.0.1",
        "RRM_GATEWAY__PORT": str(grpc_port),
        "RRM_GATEWAY__METRICS_HOST": "127.0.0.1",
        "RRM_GATEWAY__METRICS_PORT": str(metrics_port),
        "PYTHONPATH": str(REPO),
    }
    full.pop("RRM_ENGINE__MODEL", None)  # the chart's hub model id: use the local CPU judge
    tmp.mkdir(parents=True, exist_ok=True)
    log_path = tmp / "gateway.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "reward_service.cli", "gateway"],
            cwd=REPO,
            env=full,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return GatewayProcess(process, grpc_port, metrics_port, log_path)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def wait_alive(gateway: GatewayProcess, timeout_s: float = 180) -> None:
    """Until /metrics answers and the gRPC port listens (it opens after the tokenizer loads)."""
    deadline = time.monotonic() + timeout_s
    while True:
        if gateway.process.poll() is not None:
            code = gateway.process.returncode
            raise RuntimeError(f"gateway exited with {code}:\n{gateway.log()}")
        with contextlib.suppress(OSError):
            if (
                _listening(gateway.grpc_port)
                and http_status(gateway.metrics_port, "/metrics") == 200
            ):
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"gateway metrics port silent:\n{gateway.log()}")
        time.sleep(0.2)


def wait_ready(gateway: GatewayProcess, worker: GatewayProcess, timeout_s: float = 180) -> None:
    """Until the gateway's /healthz says 200: its warm-up judgment crossed the queue to the
    worker and back."""
    wait_alive(gateway)
    deadline = time.monotonic() + timeout_s
    while http_status(gateway.metrics_port, "/healthz") != 200:
        if time.monotonic() > deadline or worker.process.poll() is not None:
            raise RuntimeError(f"gateway not ready:\n{gateway.log()}\n{worker.log()}")
        time.sleep(0.5)


def stop_process(process: subprocess.Popen[bytes]) -> int:
    """SIGTERM (an orderly shutdown), SIGKILL after 30 s; the exit status."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def stop_gateway(gateway: GatewayProcess) -> int:
    return stop_process(gateway.process)


@contextlib.contextmanager
def gateway_processes(
    redis_url: str, configs: dict[str, tuple[Path, dict[str, str]]]
) -> Iterator[dict[str, GatewayProcess]]:
    """Several gateways started at once (each takes ~15 s to import and load its tokenizer on a
    busy 2-core machine), yielded once all answer /metrics; SIGTERM on exit."""
    started: dict[str, GatewayProcess] = {}
    try:
        for name, (tmp, env) in configs.items():
            started[name] = start_gateway(tmp, redis_url, env)
        for gateway in started.values():
            wait_alive(gateway)
        yield started
    finally:
        for gateway in started.values():
            stop_gateway(gateway)


def materialise_mounts(
    pod: dict[str, Any], container: dict[str, Any], secrets: dict[str, dict[str, bytes]], root: Path
) -> dict[str, str]:
    """Lay out under `root` the files the kubelet would mount from Secret volumes (honouring each
    volume's `items`), and return the container's literal RRM_ settings with paths inside those
    mounts moved under `root`: the env and files the chart gives the process."""
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts: list[str] = []
    for mount in container.get("volumeMounts", []):
        secret = volumes[mount["name"]].get("secret")
        if secret is None:
            continue
        data = secrets[secret["secretName"]]
        target = root / mount["mountPath"].lstrip("/")
        target.mkdir(parents=True, exist_ok=True)
        items = secret.get("items") or [{"key": k, "path": k} for k in data]
        for item in items:
            (target / item["path"]).write_bytes(data[item["key"]])
        mounts.append(mount["mountPath"])
    env = plain_env(container)
    for name, value in env.items():
        if any(value.startswith(m.rstrip("/") + "/") for m in mounts):
            env[name] = str(root / value.lstrip("/"))
    return env

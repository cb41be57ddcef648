"""Start the real `rrm serve` (gateway + embedded queue + worker + vLLM) as a subprocess on a free
port, exactly as a user runs it, and wait for its health check. Used by tests and benchmarks."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RunningService:
    address: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def wait_serving(address: str, process: subprocess.Popen[bytes], timeout_s: float) -> None:
    started = time.monotonic()
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() - started < timeout_s:
            if process.poll() is not None:
                raise RuntimeError(f"rrm serve exited early with code {process.returncode}")
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=2)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            time.sleep(0.5)
    raise TimeoutError(f"rrm serve at {address} not SERVING after {timeout_s} s")


@contextmanager
def rrm_serve(
    log_dir: Path, *, timeout_s: float = 300, **env_overrides: str
) -> Iterator[RunningService]:
    """Settings come from the environment (RRM_*), then `env_overrides`; the port is chosen here."""
    port = free_port()
    env = dict(os.environ, RRM_ENGINE__MAX_MODEL_LEN="2048", **env_overrides)
    env["RRM_GATEWAY__PORT"] = str(port)
    log_path = log_dir / f"rrm-serve-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "reward_service.cli", "serve"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    service = RunningService(f"127.0.0.1:{port}", process, log_path)
    try:
        wait_serving(service.address, process, timeout_s=timeout_s)
        yield service
    except BaseException:
        sys.stderr.write(service.log()[-5000:])
        raise
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=90)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

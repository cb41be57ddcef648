"""Starting and stopping the processes a benchmark measures: `rrm gateway` / `rrm worker` on a
Redis the benchmark starts, a vLLM api_server, the HTTP reward server; readiness checks."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.common import ROOT, child_env
from reward_service.testing.serve_process import free_port, wait_serving


@dataclass
class Proc:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    port: int = 0

    @property
    def pid(self) -> int:
        return self.process.pid

    def tail(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


def spawn(
    name: str, args: list[str], log_dir: Path, port: int = 0, env: dict[str, str] | None = None
) -> Proc:
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, *args],
            cwd=ROOT,
            env=child_env(**(env or {})),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return Proc(name, process, log_path, port)


def stop(proc: Proc, timeout_s: float = 60) -> int:
    """SIGTERM (orderly shutdown), then SIGKILL if it does not exit in time."""
    if proc.process.poll() is None:
        proc.process.send_signal(signal.SIGTERM)
        try:
            proc.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.process.kill()
            proc.process.wait()
    return proc.process.returncode


@contextlib.contextmanager
def running(*procs: Proc) -> Iterator[tuple[Proc, ...]]:
    try:
        yield procs
    except BaseException:
        for p in procs:
            sys.stderr.write(f"--- {p.name} log tail ---\n{p.tail()}\n")
        raise
    finally:
        for p in reversed(procs):
            stop(p)


def wait_http(url: str, proc: Proc, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.process.poll() is not None:
            raise RuntimeError(f"{proc.name} exited with {proc.process.returncode}:\n{proc.tail()}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as reply:
            if reply.status == 200:
                return
        time.sleep(0.5)
    raise TimeoutError(f"{proc.name}: {url} not ready after {timeout_s} s")


def wait_grpc(proc: Proc, timeout_s: float = 300) -> None:
    try:
        wait_serving(f"127.0.0.1:{proc.port}", proc.process, timeout_s)
    except (RuntimeError, TimeoutError) as exc:
        raise RuntimeError(f"{proc.name}: {exc}\n{proc.tail()}") from exc


def rrm_env(
    redis_url: str = "", port: int = 0, extra: dict[str, str] | None = None
) -> dict[str, str]:
    from bench.common import ENGINE

    env = {**ENGINE.rrm_env(), "RRM_GATEWAY__PORT": str(port), **(extra or {})}
    if redis_url:
        env |= {"RRM_QUEUE__KIND": "redis", "RRM_QUEUE__REDIS_URL": redis_url}
    return env


def rrm_serve(log_dir: Path, env: dict[str, str] | None = None) -> Proc:
    port = free_port()
    args = ["-m", "reward_service.cli", "serve"]
    return spawn("rrm-serve", args, log_dir, port, rrm_env("", port, env))


def rrm_gateway(
    log_dir: Path, redis_url: str, name: str = "gateway", env: dict[str, str] | None = None
) -> Proc:
    port = free_port()
    args = ["-m", "reward_service.cli", "gateway"]
    return spawn(name, args, log_dir, port, rrm_env(redis_url, port, env))


def rrm_worker(
    log_dir: Path, redis_url: str, name: str = "worker", env: dict[str, str] | None = None
) -> Proc:
    args = ["-m", "reward_service.cli", "worker"]
    return spawn(
        name, args, log_dir, 0, rrm_env(redis_url, 0, {"RRM_WORKER__NAME": name, **(env or {})})
    )


def api_server(log_dir: Path, model: str) -> Proc:
    from bench.common import ENGINE

    port = free_port()
    args = [
        *("-m", "vllm.entrypoints.openai.api_server", "--model", model),
        *("--host", "127.0.0.1", "--port", str(port), *ENGINE.api_server_flags()),
    ]
    return spawn("vllm-api-server", args, log_dir, port)


def http_rm(log_dir: Path, budget: int) -> Proc:
    port = free_port()
    args = ["-m", "bench.baselines.http_rm", "--port", str(port), "--budget", str(budget)]
    return spawn("http-rm", args, log_dir, port)


def api_server_session(log_dir: Path, model: str, port: int = 0) -> Proc:
    """A vLLM api_server in its own session (process group), so `kill_session` takes its engine
    processes down with it, as a crash of the server's pod would; `port` lets a restarted server
    come back where its clients expect it. The log is appended to across restarts."""
    from bench.common import ENGINE

    port = port or free_port()
    args = [
        *("-m", "vllm.entrypoints.openai.api_server", "--model", model),
        *("--host", "127.0.0.1", "--port", str(port), *ENGINE.api_server_flags()),
        "--enable-prompt-tokens-details",
    ]
    log_path = log_dir / "vllm-api-server.log"
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [sys.executable, *args],
            cwd=ROOT,
            env=child_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Proc("vllm-api-server", process, log_path, port)


def kill_session(proc: Proc, sig: int = signal.SIGKILL) -> None:
    """Signal the process group `proc` leads and wait for `proc` to exit."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
    try:
        proc.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.process.wait()

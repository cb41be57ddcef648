"""A process that is still loading stays live: `rrm worker` and `rrm gateway` answer /metrics
(their liveness probe) while the judge's tokenizer loads, instead of blocking their event loop
for the whole load (~16 s for the CPU judge, minutes for a hub download), and exit at once on
SIGTERM during it.

The load is held open for as long as the test wants: the tokenizer comes from a "hub" on
loopback (HF_ENDPOINT) that accepts the download request and answers only when released. While
that request hangs the load is certainly in progress, so no timing is involved."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from reward_service.testing.serve_process import free_port
from tests.helm.gateway_process import http_status, stop_process
from tests.helm.rendering import REPO


class StalledHub:
    """Accepts HTTP requests and answers none (then 404) until `release()`."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.requested = threading.Event()
        self.released = threading.Event()
        self._held: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.released.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self._held.append(conn)
            self.requested.set()

    def release(self) -> None:
        self.released.set()
        for conn in self._held:
            with contextlib.suppress(OSError):
                conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            conn.close()
        self.sock.close()


@pytest.fixture
def hub() -> Iterator[StalledHub]:
    stalled = StalledHub()
    yield stalled
    stalled.release()


@pytest.mark.parametrize("command", ["worker", "gateway"])
def test_metrics_answer_while_the_judge_loads(
    command: str, hub: StalledHub, tmp_path: Path
) -> None:
    metrics_port = free_port()
    prefix = "RRM_WORKER__" if command == "worker" else "RRM_GATEWAY__"
    env = dict(os.environ) | {
        "PYTHONPATH": str(REPO),
        "HF_HUB_OFFLINE": "0",
        "TRANSFORMERS_OFFLINE": "0",
        "HF_ENDPOINT": f"http://127.0.0.1:{hub.port}",
        "HF_HUB_ETAG_TIMEOUT": "600",
        "HF_HUB_DOWNLOAD_TIMEOUT": "600",
        "HF_HOME": str(tmp_path / "hf"),
        "RRM_ENGINE__MODEL": "rrm-test/stalled-judge",  # fetched from the stalled hub
        "RRM_QUEUE__KIND": "redis",
        "RRM_QUEUE__REDIS_URL": "redis://127.0.0.1:1/0",  # never reached: the load comes first
        f"{prefix}METRICS_HOST": "127.0.0.1",
        f"{prefix}METRICS_PORT": str(metrics_port),
        f"{prefix}PORT": str(free_port()),
    }
    log_path = tmp_path / f"{command}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "reward_service.cli", command],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        assert hub.requested.wait(timeout=240), log_path.read_text()[-3000:]
        # The tokenizer download hangs: the judge is loading right now.
        assert http_status(metrics_port, "/metrics") == 200, log_path.read_text()[-3000:]
        assert http_status(metrics_port, "/healthz") == 503  # alive, not ready
        assert process.poll() is None
        # Told to stop while still loading (Kubernetes does not wait for a pod to be ready), it
        # exits cleanly, not SIGKILLed at the end of the 30 s grace (stop_process: -9).
        assert stop_process(process) == 0, log_path.read_text()[-3000:]
        assert "stop requested while loading" in log_path.read_text()
    finally:
        hub.release()
        stop_process(process)

"""A real `redis-server` for tests: own port, own tmp dir, optional AOF, kill/restart on demand.

Redis cannot bind port 0, so we pick a free port ourselves and retry on the rare collision.
The server daemonizes with a pid file, so `kill()` can SIGKILL exactly that process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import pytest

REDIS_SERVER = "redis-server"
REDIS_CLI = "redis-cli"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


class RedisServer:
    """One redis-server process. `restart()` keeps the port and dir (and so the AOF, if on).
    `args` are passed on as they are, e.g. ("--maxmemory", "2mb") or ("--replicaof", ...)."""

    def __init__(
        self,
        directory: Path,
        *,
        appendonly: bool = False,
        port: int = 0,
        args: tuple[str, ...] = (),
    ) -> None:
        self.dir = Path(directory)
        self.appendonly = appendonly
        self.port = port or free_port()
        self.args = args
        self.pid: int | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pidfile(self) -> Path:
        return self.dir / f"redis-{self.port}.pid"

    def start(self, timeout_s: float = 10.0) -> RedisServer:
        self.dir.mkdir(parents=True, exist_ok=True)
        for attempt in range(5):
            try:
                self._launch(timeout_s)
                return self
            except RuntimeError:
                if attempt == 4 or self.pid is not None:
                    raise
                self.port = free_port()  # someone took the port between probe and bind
        return self

    def _launch(self, timeout_s: float) -> None:
        self.pidfile.unlink(missing_ok=True)
        args = [
            REDIS_SERVER,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--appendfsync", "everysec",
            "--daemonize", "yes",
            "--pidfile", str(self.pidfile),
            "--dir", str(self.dir),
            "--logfile", str(self.dir / f"redis-{self.port}.log"),
            *self.args,
        ]  # fmt: skip
        subprocess.run(args, check=True, capture_output=True, timeout=timeout_s)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.pidfile.exists() and self._ping():
                self.pid = int(self.pidfile.read_text().strip())
                return
            time.sleep(0.01)
        raise RuntimeError(f"redis-server on port {self.port} did not start; see {self.dir}")

    def _ping(self) -> bool:
        out = subprocess.run(
            [REDIS_CLI, "-p", str(self.port), "ping"], capture_output=True, text=True, timeout=5
        )
        return out.stdout.strip() == "PONG"

    def stop(self) -> None:
        """Orderly shutdown (with AOF on, the AOF is fsynced first)."""
        if self.pid is None:
            return
        flag = [] if self.appendonly else ["nosave"]
        subprocess.run(
            [REDIS_CLI, "-p", str(self.port), "shutdown", *flag], capture_output=True, timeout=10
        )
        self._wait_gone()

    def kill(self) -> None:
        """SIGKILL: a crash. With AOF `everysec`, up to the last second of writes is lost."""
        if self.pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        self._wait_gone()

    def restart(self, *, crash: bool = False) -> None:
        self.kill() if crash else self.stop()
        self.start()

    def _wait_gone(self, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            alive = self.pid is not None and _pid_alive(self.pid)
            if not alive and not _port_open(self.port):
                self.pid = None
                return
            time.sleep(0.01)
        raise RuntimeError(f"redis-server on port {self.port} did not go away")

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.kill()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A daemonized redis is not our child, but reap it in case it is (zombies look alive).
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


@contextlib.contextmanager
def redis_server(
    *, appendonly: bool = False, directory: Path | None = None, args: tuple[str, ...] = ()
) -> Iterator[RedisServer]:
    """A started server in `directory` (default: a fresh temp dir), killed on exit."""
    with contextlib.ExitStack() as stack:
        if directory is None:
            directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rrm-redis-")))
        with RedisServer(directory, appendonly=appendonly, args=args) as server:
            yield server


@pytest.fixture(scope="session")
def redis_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One plain server for the session; tests isolate themselves with a unique key prefix."""
    with redis_server(directory=tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def redis_own(tmp_path: Path) -> Iterator[RedisServer]:
    """A server this test may kill or restart (no AOF)."""
    with redis_server(directory=tmp_path / "redis") as server:
        yield server


@pytest.fixture
def redis_aof(tmp_path: Path) -> Iterator[RedisServer]:
    """A server with AOF on (appendfsync everysec) that this test may restart."""
    with redis_server(appendonly=True, directory=tmp_path / "redis") as server:
        yield server

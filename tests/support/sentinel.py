"""A real Sentinel deployment on loopback for failover tests: a primary, a replica and three
`redis-sentinel` processes (quorum 2), with timings short enough that a kill -9 of the primary
is followed by a promoted replica within a few seconds.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from tests.support.redis_server import REDIS_CLI, RedisServer, _pid_alive, free_port

MASTER = "mymaster"
DOWN_AFTER_MS = 1000  # the primary counts as down after this long without answering
FAILOVER_TIMEOUT_MS = 3000


class SentinelProcess:
    """One redis-sentinel, daemonized with a pid file (its config file is its own: Sentinel
    rewrites it as it learns the topology)."""

    def __init__(self, directory: Path, primary_port: int) -> None:
        self.dir = directory
        self.port = free_port()
        self.primary_port = primary_port
        self.pid: int | None = None

    def start(self, timeout_s: float = 10.0) -> SentinelProcess:
        self.dir.mkdir(parents=True, exist_ok=True)
        conf = self.dir / f"sentinel-{self.port}.conf"
        pidfile = self.dir / f"sentinel-{self.port}.pid"
        conf.write_text(
            f"port {self.port}\n"
            "bind 127.0.0.1\n"
            "daemonize yes\n"
            f"pidfile {pidfile}\n"
            f"logfile {self.dir / f'sentinel-{self.port}.log'}\n"
            f"dir {self.dir}\n"
            f"sentinel monitor {MASTER} 127.0.0.1 {self.primary_port} 2\n"
            f"sentinel down-after-milliseconds {MASTER} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {MASTER} {FAILOVER_TIMEOUT_MS}\n"
            f"sentinel parallel-syncs {MASTER} 1\n"
        )
        subprocess.run(["redis-sentinel", str(conf)], check=True, capture_output=True, timeout=10)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if pidfile.exists() and cli(self.port, "ping") == "PONG":
                self.pid = int(pidfile.read_text().strip())
                return self
            time.sleep(0.02)
        raise RuntimeError(f"redis-sentinel on port {self.port} did not start; see {self.dir}")

    def kill(self) -> None:
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while _pid_alive(self.pid) and time.monotonic() < deadline:
                time.sleep(0.01)
            self.pid = None


def cli(port: int, *args: str) -> str:
    out = subprocess.run(
        [REDIS_CLI, "-p", str(port), *args], capture_output=True, text=True, timeout=5
    )
    return out.stdout.strip()


class SentinelSetup:
    def __init__(self, directory: Path) -> None:
        self.primary = RedisServer(directory / "primary")
        self.replica: RedisServer | None = None
        self.sentinels: list[SentinelProcess] = []
        self.dir = directory

    @property
    def addresses(self) -> str:
        """As RRM_QUEUE__REDIS_SENTINELS takes them."""
        return ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)

    def start(self) -> SentinelSetup:
        self.primary.start()
        replica_of = ("--replicaof", "127.0.0.1", str(self.primary.port))
        self.replica = RedisServer(self.dir / "replica", args=replica_of).start()
        for i in range(3):
            self.sentinels.append(SentinelProcess(self.dir / f"s{i}", self.primary.port).start())
        self._wait_ready()
        return self

    def primary_port(self) -> int:
        """The primary as the sentinels see it now."""
        out = cli(self.sentinels[0].port, "sentinel", "get-master-addr-by-name", MASTER).split()
        return int(out[1])

    def sentinel_failover(self) -> None:
        """A manual failover: the replica is promoted, the live primary demoted to a replica."""
        reply = cli(self.sentinels[0].port, "sentinel", "failover", MASTER)
        if reply != "OK":
            raise RuntimeError(f"SENTINEL FAILOVER refused: {reply}")

    def _wait_ready(self, timeout_s: float = 20.0) -> None:
        """Until the replica is in sync and every sentinel knows the replica and the others:
        before that, a failover could not happen."""
        assert self.replica is not None
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            synced = "master_link_status:up" in cli(self.replica.port, "info", "replication")
            known = all(
                _field(cli(s.port, "sentinel", "master", MASTER), "num-other-sentinels") == "2"
                and str(self.replica.port) in cli(s.port, "sentinel", "replicas", MASTER)
                for s in self.sentinels
            )
            if synced and known:
                return
            time.sleep(0.1)
        raise RuntimeError(f"Sentinel setup not ready in {timeout_s} s; see {self.dir}")

    def wait_failover(self, old_port: int, timeout_s: float = 30.0) -> float:
        """Seconds until the sentinels name a new primary that takes writes."""
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            port = self.primary_port()
            if port != old_port and "role:master" in cli(port, "info", "replication"):
                return time.monotonic() - started
            time.sleep(0.05)
        raise RuntimeError(f"no failover within {timeout_s} s; see {self.dir}")

    def close(self) -> None:
        for s in self.sentinels:
            s.kill()
        if self.replica is not None:
            self.replica.kill()
        self.primary.kill()


def _field(flat: str, name: str) -> str:
    """A value of redis-cli's one-per-line field/value listing (SENTINEL MASTER)."""
    lines = flat.splitlines()
    for key, value in zip(lines[::2], lines[1::2], strict=False):
        if key == name:
            return value
    return ""


@contextlib.contextmanager
def sentinel_setup(directory: Path) -> Iterator[SentinelSetup]:
    setup = SentinelSetup(directory)
    try:
        yield setup.start()
    finally:
        setup.close()

"""The built-in Redis, run for real: the chart's redis.conf and start script on a local
redis-server (7.0+). Checks what a manifest cannot show: the password is required but absent
from the command line, the append-only file is on, eviction is off, the group lag KEDA reads."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helm.rendering import Rendered, env_of

REDIS_SERVER = shutil.which("redis-server")
REDIS_CLI = shutil.which("redis-cli")
pytestmark = pytest.mark.skipif(
    not (REDIS_SERVER and REDIS_CLI), reason="redis-server/redis-cli not installed"
)
PASSWORD = "k8sTestPassw0rd"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cli(port: int, *args: str, password: str | None = PASSWORD) -> str:
    env = {k: v for k, v in os.environ.items() if k != "REDISCLI_AUTH"}
    if password is not None:
        env["REDISCLI_AUTH"] = password
    done = subprocess.run(
        [str(REDIS_CLI), "-p", str(port), *args],
        capture_output=True,
        text=True,
        timeout=10,
        env=env,
        check=False,
    )
    return done.stdout.strip()


@pytest.fixture(scope="module")
def chart_redis(
    render: Callable[[str], Rendered], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    rendered = render("defaults")
    conf = rendered.one("ConfigMap", "redis")["data"]["redis.conf"]
    container = rendered.container("StatefulSet", "redis")
    assert container["command"][:2] == ["sh", "-c"]
    assert "REDIS_PASSWORD" in env_of(container)
    tmp = tmp_path_factory.mktemp("redis")
    port = free_port()
    # Only the listening address and the data folder differ from the pod.
    local_conf = (
        conf.replace("port 6379", f"port {port}").replace("dir /data", f"dir {tmp}")
        + "bind 127.0.0.1\n"
    )
    conf_path: Path = tmp / "redis.conf"
    conf_path.write_text(local_conf)
    script = container["command"][2].replace("/etc/redis/redis.conf", str(conf_path))
    script = script.replace("exec redis-server", f"exec {REDIS_SERVER}")
    proc = subprocess.Popen(
        ["sh", "-c", script],
        env={"PATH": os.environ.get("PATH", ""), "REDIS_PASSWORD": PASSWORD, "TMPDIR": str(tmp)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while cli(port, "ping") != "PONG":
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            pytest.fail("the chart's Redis did not start")
        time.sleep(0.05)
    try:
        yield port, proc
    finally:
        cli(port, "shutdown", "nosave")
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_password_is_required_and_not_on_the_command_line(
    chart_redis: tuple[int, subprocess.Popen[bytes]],
) -> None:
    port, proc = chart_redis
    assert "NOAUTH" in cli(port, "ping", password=None)
    assert cli(port, "ping", password="wrong") != "PONG"
    cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
    assert PASSWORD.encode() not in cmdline


def test_append_only_capped_and_no_eviction(
    chart_redis: tuple[int, subprocess.Popen[bytes]],
) -> None:
    port, _ = chart_redis
    assert cli(port, "config", "get", "appendonly").splitlines() == ["appendonly", "yes"]
    assert cli(port, "config", "get", "maxmemory-policy").splitlines() == [
        "maxmemory-policy",
        "noeviction",
    ]
    assert cli(port, "config", "get", "maxmemory").splitlines() == ["maxmemory", str(1536 << 20)]


def test_the_group_lag_keda_reads_is_there(
    chart_redis: tuple[int, subprocess.Popen[bytes]],
) -> None:
    from reward_service.queue.names import QueueNames

    port, _ = chart_redis
    names = QueueNames()
    assert cli(port, "xgroup", "create", names.jobs_stream, names.workers_group, "0", "MKSTREAM")
    for _ in range(3):
        cli(port, "xadd", names.jobs_stream, "*", "job", "{}")
    info = cli(port, "xinfo", "groups", names.jobs_stream).splitlines()
    assert info[info.index("lag") + 1] == "3"

"""The built-in Redis, run for real: the chart's redis.conf and start script on a local
redis-server (7.0+). Checks what a manifest cannot show: the password is required but absent
from the command line, the append-only file is on, eviction is off, the group lag KEDA reads;
a gateway and a worker given the chart's queue env (the password beside the URL, with
characters a URL would mangle) connect, and a wrong password stops them with a clear error."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from reward_service.app import build_cache
from reward_service.domain import ParseStatus, Verdict, VoteResult
from reward_service.queue.cache import RedisVerdictCache
from reward_service.queue.redis_client import RedisAuthFailed, RedisTarget, check_server, close
from reward_service.queue.redis_client import connect as redis_connect
from reward_service.settings import QueueSettings, Settings
from tests.helm.gateway_process import (
    http_status,
    queue_env,
    start_gateway,
    start_scripted_worker,
    stop_gateway,
    wait_ready,
)
from tests.helm.rendering import Rendered, env_of

REDIS_SERVER = shutil.which("redis-server")
REDIS_CLI = shutil.which("redis-cli")
pytestmark = pytest.mark.skipif(
    not (REDIS_SERVER and REDIS_CLI), reason="redis-server/redis-cli not installed"
)
# Characters a URL would mangle (userinfo and path delimiters, a fragment, an escape).
PASSWORD = "k8s:p@ss/w0rd#?%"


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


def chart_queue_envs(rendered: Rendered, port: int) -> dict[str, dict[str, str]]:
    """The gateway's and worker's RRM_QUEUE__ env as the kubelet resolves it (the Secret holds
    PASSWORD), the URL's host and port moved to the local Redis."""
    secret = rendered.one("Secret", "redis")
    secrets = {secret["metadata"]["name"]: {key: PASSWORD.encode() for key in secret["data"]}}
    envs = {}
    for component in ("gateway", "worker"):
        env = queue_env(rendered.container("Deployment", component), secrets)
        url = urlsplit(env["RRM_QUEUE__REDIS_URL"])
        assert env["RRM_QUEUE__REDIS_PASSWORD"] == PASSWORD
        assert url.password is None and "$(" not in url.geturl()
        env["RRM_QUEUE__REDIS_URL"] = url._replace(netloc=f"127.0.0.1:{port}").geturl()
        envs[component] = env
    return envs


def test_gateway_and_worker_connect_with_the_chart_env(
    render: Callable[[str], Rendered],
    chart_redis: tuple[int, subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    port, _ = chart_redis
    envs = chart_queue_envs(render("defaults"), port)
    worker = start_scripted_worker(tmp_path / "worker", envs["worker"])
    gateway = start_gateway(
        tmp_path / "gateway", envs["gateway"]["RRM_QUEUE__REDIS_URL"], envs["gateway"]
    )
    try:
        # Ready only once its warm-up judgment crossed Redis to the worker and back: both in.
        wait_ready(gateway, worker, timeout_s=120)
        assert http_status(worker.metrics_port, "/healthz") == 200
    finally:
        stop_gateway(gateway)
        stop_gateway(worker)


def test_a_wrong_password_stops_the_gateway_with_a_clear_error(
    render: Callable[[str], Rendered],
    chart_redis: tuple[int, subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    port, _ = chart_redis
    env = chart_queue_envs(render("defaults"), port)["gateway"]
    env["RRM_QUEUE__REDIS_PASSWORD"] = wrong = "not-the-password"
    gateway = start_gateway(tmp_path, env["RRM_QUEUE__REDIS_URL"], env)
    try:
        code = gateway.process.wait(timeout=180)
    finally:
        stop_gateway(gateway)
    log = gateway.log()
    assert code != 0
    assert "RedisAuthFailed" in log and "refused the credentials" in log, log
    assert "RRM_QUEUE__REDIS_PASSWORD" in log
    assert wrong not in log


async def test_password_sources(
    chart_redis: tuple[int, subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    """Beside the URL as a value or a file (a trailing newline is no part of it); one source."""
    port, _ = chart_redis
    url = f"redis://127.0.0.1:{port}/0"
    secret_file = tmp_path / "password"
    secret_file.write_text(PASSWORD + "\n")
    for target in (
        RedisTarget(url, password=PASSWORD),
        RedisTarget(url, password_file=str(secret_file)),
    ):
        redis = redis_connect(target, retries=0)
        try:
            await check_server(redis)
        finally:
            await close(redis)
    redis = redis_connect(RedisTarget(url, password="wrong"), retries=0)
    try:
        with pytest.raises(RedisAuthFailed, match="refused the credentials"):
            await check_server(redis)
    finally:
        await close(redis)
    with pytest.raises(ValueError, match="given twice"):
        redis_connect(RedisTarget(f"redis://:x@127.0.0.1:{port}/0", password=PASSWORD))
    with pytest.raises(ValueError, match="given twice"):
        redis_connect(RedisTarget(url, password="a", password_file=str(secret_file)))


async def test_the_verdict_cache_takes_its_password_beside_the_url(
    chart_redis: tuple[int, subprocess.Popen[bytes]],
) -> None:
    """What the chart gives workers for verdictCache.existingSecret, through app.build_cache."""
    port, _ = chart_redis
    url = f"redis://127.0.0.1:{port}/0"
    decided = VoteResult(verdict=Verdict.FIRST, p_first=0.8, status=ParseStatus.OK)
    for password, hits in ((PASSWORD, 1), ("wrong", 0)):
        queue = QueueSettings(kind="redis", verdict_cache_url=url, verdict_cache_password=password)
        cache = build_cache(Settings(queue=queue))
        assert isinstance(cache, RedisVerdictCache)
        try:
            await cache.put("fingerprint", decided, 60)
            found = await cache.get("fingerprint")
        finally:
            await close(cache.redis)
        assert cache.hits == hits  # a refused cache is skipped (judged without it), not fatal
        assert (found is not None) == bool(hits)

"""A monitored stack on loopback: a real redis-server, a real `rrm gateway`, a worker
(`app.run_worker` with the ScriptedEngine test double, tests/ops/scripted_worker.py) and a real
Prometheus (Debian's `prometheus` binary) scraping both every second under the job names the
chart's ServiceMonitors give them, plus gRPC traffic that makes every counter move: decided,
budget-forced, unparseable and failed (dead-lettered) judgments, cache hits, two RPC methods and
a refused call. Used by tests/ops/test_prometheus.py and the dashboard snapshot in docs/."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import yaml
from rrm.v1 import reward_pb2 as pb
from rrm.v1 import reward_pb2_grpc as pb_grpc

from reward_service.testing.serve_process import free_port
from tests.helm.gateway_process import (
    GatewayProcess,
    http_status,
    start_gateway,
    start_scripted_worker,
    stop_gateway,
    stop_process,
    wait_ready,
)
from tests.helm.rendering import NAMESPACE, RELEASE
from tests.support.redis_server import redis_server

# The chart's Service names, which Prometheus Operator makes the `job` label.
GATEWAY_JOB, WORKER_JOB, REDIS_JOB = (f"{RELEASE}-{c}" for c in ("gateway", "worker", "redis"))


def binary(name: str, package: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} is not installed: apt-get install -y {package} (.ci/run does)")
    return found


@dataclass
class Prometheus:
    url: str
    process: subprocess.Popen[bytes]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        params = {"query": expr} | ({"time": f"{at:.3f}"} if at is not None else {})
        return self._get("/api/v1/query", params)

    def query_range(
        self, expr: str, start: float, end: float, step_s: float
    ) -> list[dict[str, Any]]:
        params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": str(step_s)}
        return self._get("/api/v1/query_range", params)

    def _get(self, path: str, params: dict[str, str]) -> list[dict[str, Any]]:
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=30) as reply:
            body = json.load(reply)
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def up(self) -> dict[str, float]:
        return {r["metric"]["job"]: float(r["value"][1]) for r in self.query("up")}


@dataclass
class Stack:
    prometheus: Prometheus
    gateway: GatewayProcess
    worker: GatewayProcess

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gateway.grpc_port}"


def prometheus_config(
    gateway_metrics: int, worker_metrics: int, redis_metrics: int
) -> dict[str, Any]:
    def job(name: str, port: int, pod: str) -> dict[str, Any]:
        labels = {"namespace": NAMESPACE, "pod": pod}
        return {
            "job_name": name,
            "static_configs": [{"targets": [f"127.0.0.1:{port}"], "labels": labels}],
        }

    return {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            job(GATEWAY_JOB, gateway_metrics, f"{GATEWAY_JOB}-0"),
            job(WORKER_JOB, worker_metrics, f"{WORKER_JOB}-0"),
            job(REDIS_JOB, redis_metrics, f"{REDIS_JOB}-0"),
        ],
    }


@contextlib.contextmanager
def start_prometheus(tmp: Path, config: dict[str, Any]) -> Iterator[Prometheus]:
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = (tmp / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            binary("prometheus", "prometheus"),
            f"--config.file={tmp / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-lifecycle",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    prometheus = Prometheus(f"http://127.0.0.1:{port}", process)
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(OSError):  # not listening yet
                if http_status(port, "/-/ready") == 200:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((tmp / "prometheus.log").read_text()[-3000:])
            time.sleep(0.2)
        yield prometheus
    finally:
        stop_process(process)
        log.close()


@contextlib.contextmanager
def redis_exporter(tmp: Path, redis_port: int) -> Iterator[int]:
    """Debian's prometheus-redis-exporter, the chart's sidecar (redis.metrics), on a free port."""
    port = free_port()
    tmp.mkdir(parents=True, exist_ok=True)
    with (tmp / "redis-exporter.log").open("wb") as log:
        process = subprocess.Popen(
            [
                binary("prometheus-redis-exporter", "prometheus-redis-exporter"),
                f"-redis.addr=redis://127.0.0.1:{redis_port}",
                f"-web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield port
    finally:
        stop_process(process)


@contextlib.contextmanager
def monitored_stack(tmp: Path, worker_env: dict[str, str] | None = None) -> Iterator[Stack]:
    """Everything started and ready (the gateway's warm-up judgment went through the worker),
    and Prometheus scraping both. `worker_env`: more RRM_ settings for the worker."""
    with redis_server(args=("--maxmemory", "64mb")) as redis, redis_exporter(tmp, redis.port) as rx:
        queue = {"RRM_QUEUE__KIND": "redis", "RRM_QUEUE__REDIS_URL": redis.url}
        worker = start_scripted_worker(tmp / "worker", queue | (worker_env or {}))
        gateway = start_gateway(tmp / "gateway", redis.url, {})
        try:
            wait_ready(gateway, worker)
            config = prometheus_config(gateway.metrics_port, worker.metrics_port, rx)
            with start_prometheus(tmp / "prometheus", config) as prometheus:
                deadline = time.monotonic() + 60
                while prometheus.up() != {GATEWAY_JOB: 1.0, WORKER_JOB: 1.0, REDIS_JOB: 1.0}:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"targets not up: {prometheus.up()}")
                    time.sleep(0.5)
                yield Stack(prometheus, gateway, worker)
        finally:
            stop_gateway(gateway)
            stop_gateway(worker)


QUERY = "Which answer is more helpful? {marker} (call {i})"
OUTCOMES = ("", "", "", "", "[budget]", "[unparseable]")


async def drive_traffic(address: str, seconds: float, *, clients: int = 8) -> dict[str, int]:
    """`clients` callers in a loop for `seconds`: Compare calls with every outcome but failure,
    repeated (cache hits), Rank calls, and once each a refused call (no responses) and a
    failing judgment (dead-lettered after its tries). Returns counts of what was sent."""
    sent = {"compare": 0, "rank": 0, "invalid": 0, "failed": 0}
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.RewardServiceStub(channel)
        as_given = pb.JudgeOptions(votes=1, order=pb.ORDER_AS_GIVEN, max_reasoning_tokens=32)
        with contextlib.suppress(grpc.aio.AioRpcError):
            await stub.Compare(pb.CompareRequest(query="no responses"), timeout=30)
        sent["invalid"] += 1
        failing = pb.CompareRequest(
            query=QUERY.format(marker="[fail]", i=0),
            response_a="A",
            response_b="B",
            options=as_given,
        )
        try:
            await stub.Compare(failing, timeout=60)
        except grpc.aio.AioRpcError as err:  # every vote failed: ABORTED, with the reason
            assert err.code() is grpc.StatusCode.ABORTED, err
        sent["failed"] += 1
        stop_at = time.monotonic() + seconds

        async def caller(c: int) -> None:
            i = 0
            while time.monotonic() < stop_at:
                i += 1
                if i % 5 == 0:
                    await stub.Rank(
                        pb.RankRequest(
                            query=QUERY.format(marker="", i=i),
                            candidates=["one", "two", "three"],
                            strategy=pb.STRATEGY_KNOCKOUT,
                            options=as_given,
                        ),
                        timeout=60,
                    )
                    sent["rank"] += 1
                    continue
                marker = OUTCOMES[(c + i) % len(OUTCOMES)]
                # i % 7: the same few texts again, answered from the verdict cache
                request = pb.CompareRequest(
                    query=QUERY.format(marker=marker, i=i % 7),
                    response_a="A",
                    response_b="B",
                    options=as_given,
                )
                await stub.Compare(request, timeout=60)
                sent["compare"] += 1

        await asyncio.gather(*(caller(c) for c in range(clients)))
    return sent

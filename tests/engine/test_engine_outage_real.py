"""Engine outages with real engines, as they happen in week-long RL runs.

1. Redis topology (gateway + two workers on a real redis-server, each worker on the `openai`
   engine): the vLLM api_server they share is killed (its whole process group, SIGKILL) under 32
   concurrent Compare calls and started again on the same port. Every call is answered once the
   server is back; no dead letter, no FAILED judgment.
2. `rrm serve` (embedded queue, in-process vLLM): the engine's model process is SIGKILLed under 16
   calls. The worker restarts the engine and every call is answered; health says NOT_SERVING
   while the engine is down.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import httpx
import psutil
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from rrm.v1 import reward_pb2 as pb
from rrm.v1 import reward_pb2_grpc as pb_grpc

from policy_adapter.hh_rlhf import load_pairs
from reward_service import app, metrics
from reward_service.engine.openai_engine import OpenAIEngine
from reward_service.queue.redis_broker import RedisBroker
from reward_service.settings import Settings
from reward_service.testing.serve_process import RunningService, rrm_serve
from reward_service.worker.worker import Worker
from tests.engine.support import (
    ApiServer,
    free_port,
    start_api_server,
    stop_api_server,
)
from tests.support.redis_server import RedisServer

# Two api_server starts (~25 s each on a quiet machine) and an engine restart per test.
pytestmark = [pytest.mark.engine, pytest.mark.timeout(1200)]

REPO = Path(__file__).resolve().parents[2]
PAIRS = list(load_pairs(REPO / "examples" / "hh-rlhf-harmless-256.jsonl", 32))
DECIDED = (pb.PARSE_STATUS_OK, pb.PARSE_STATUS_BUDGET_FORCED, pb.PARSE_STATUS_UNPARSEABLE)


def compare_request(i: int, tag: str, budget: int = 48) -> pb.CompareRequest:
    pair = PAIRS[i]
    return pb.CompareRequest(
        request_id=f"{tag}-{i}",
        query=pair.query,
        history=[pb.Message(role=r, content=c) for r, c in pair.history],
        response_a=pair.chosen,
        response_b=pair.rejected,
        options=pb.JudgeOptions(max_reasoning_tokens=budget, temperature=0.6, no_cache=True),
    )


def released(reason: str) -> float:
    return metrics.RELEASED.labels(reason)._value.get()


# ---- 1. Redis topology, the engine server killed and restarted ----


@pytest.fixture
def engine_port() -> int:
    return free_port()


@pytest.fixture
def api_server(model_dir: Path, tmp_path: Path, engine_port: int) -> Iterator[list[ApiServer]]:
    """The current server (a one-item list the test replaces when it restarts it)."""
    servers = [start_api_server(model_dir, tmp_path / "api.log", port=engine_port)]
    servers[0].wait_healthy(240)
    yield servers
    stop_api_server(servers[0], signal.SIGKILL)


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.fixture
def impatient_worker(
    api_server: list[ApiServer], redis: RedisServer, model_dir: Path, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A third worker, as the real `rrm worker` process, told to give up on an engine outage
    after 5 s: it must report not ready, then exit with status 3 for its supervisor."""
    port = free_port()
    env = {
        **os.environ,
        "RRM_QUEUE__KIND": "redis",
        "RRM_QUEUE__REDIS_URL": redis.url,
        "RRM_QUEUE__VERDICT_CACHE": "false",
        "RRM_ENGINE__KIND": "openai",
        "RRM_ENGINE__BASE_URL": api_server[0].base_url,
        "RRM_ENGINE__MODEL": str(model_dir),
        "RRM_ENGINE__MAX_MODEL_LEN": "2048",
        "RRM_WORKER__NAME": "impatient",
        "RRM_WORKER__METRICS_PORT": str(port),
        "RRM_WORKER__ENGINE_OUTAGE_EXIT_S": "5",
        "RRM_WORKER__ENGINE_MAX_BACKOFF_S": "1",
    }
    with (tmp_path / "impatient.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "reward_service.cli", "worker"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    yield process, f"http://127.0.0.1:{port}/healthz"
    if process.poll() is None:
        process.kill()
        process.wait()


def healthz(url: str) -> int:
    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return 0


@pytest.fixture
async def stack(
    api_server: list[ApiServer], redis: RedisServer, model_dir: Path
) -> AsyncIterator[tuple[str, list[Worker], list[RedisBroker]]]:
    settings = Settings.model_validate(
        {
            "engine": {
                "kind": "openai",
                "model": str(model_dir),
                "base_url": api_server[0].base_url,
                "max_model_len": 2048,
                "request_timeout_s": 120,
            },
            "queue": {"kind": "redis", "redis_url": redis.url, "verdict_cache": False},
            "gateway": {"port": 0, "default_deadline_s": 600},
            "worker": {"max_in_flight": 16, "engine_max_backoff_s": 2.0},
        }
    )
    judge = app.load_judge(settings)
    brokers: list[RedisBroker] = []
    workers: list[Worker] = []
    engines: list[OpenAIEngine] = []
    for i in range(2):
        engine = OpenAIEngine(settings.engine, settings.model_path())
        await engine.start()
        broker = app.build_broker(settings, role="worker")
        assert isinstance(broker, RedisBroker)
        await broker.start()
        named = settings.model_copy(deep=True)
        named.worker.name = f"w{i}"
        workers.append(app.build_worker(named, broker, judge, engine))
        engines.append(engine)
        brokers.append(broker)
    runs = [asyncio.create_task(w.run(grace_s=5)) for w in workers]
    gateway_broker = app.build_broker(settings, role="gateway")
    await gateway_broker.start()
    server, comparator = app.build_gateway(settings, gateway_broker, judge)
    port = await server.start()
    await server.warm_up(comparator, 120)
    yield f"127.0.0.1:{port}", workers, brokers
    await server.stop(1)
    for w in workers:
        w.stop()
    await asyncio.gather(*runs, return_exceptions=True)
    for closable in (*brokers, gateway_broker, *engines):
        await closable.close()


async def test_workers_wait_out_an_engine_server_restart(
    stack: tuple[str, list[Worker], list[RedisBroker]],
    impatient_worker: tuple[subprocess.Popen[bytes], str],
    api_server: list[ApiServer],
    model_dir: Path,
    tmp_path: Path,
    engine_port: int,
) -> None:
    address, workers, brokers = stack
    impatient, impatient_health = impatient_worker
    started = time.monotonic()
    while await asyncio.to_thread(healthz, impatient_health) != 200:
        assert impatient.poll() is None and time.monotonic() - started < 120
        await asyncio.sleep(0.5)
    outage_before = released("engine_outage")
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.RewardServiceStub(channel)
        calls = [
            asyncio.ensure_future(stub.Compare(compare_request(i, "restart"), timeout=600))
            for i in range(32)
        ]
        await asyncio.sleep(1.0)  # calls are queued and running on the engine
        assert not all(c.done() for c in calls)
        stop_api_server(api_server[0], signal.SIGKILL)
        killed_at = time.monotonic()
        # Both workers see the outage: they stop taking jobs and report not ready.
        while any(w.guard.is_up for w in workers):
            assert time.monotonic() - killed_at < 30, "the outage was not noticed"
            await asyncio.sleep(0.1)
        # The server stays down a while, as a restarting pod does. The impatient worker reports
        # not ready, then gives up with status 3; the others wait.
        saw_not_ready = False
        while impatient.poll() is None:
            assert time.monotonic() - killed_at < 60, "the impatient worker did not exit"
            saw_not_ready |= await asyncio.to_thread(healthz, impatient_health) == 503
            await asyncio.sleep(0.3)
        assert impatient.returncode == 3 and saw_not_ready
        assert not any(c.done() for c in calls), "no call is failed by the outage"
        api_server[0] = start_api_server(model_dir, tmp_path / "api.log", port=engine_port)
        replies = await asyncio.gather(*calls, return_exceptions=True)
    errors = [r for r in replies if isinstance(r, BaseException)]
    assert not errors, errors[:3]
    assert all(r.votes and r.votes[0].parse_status in DECIDED for r in replies)  # type: ignore[union-attr]
    assert all(w.guard.is_up and w.guard.outages >= 1 for w in workers)
    assert released("engine_outage") > outage_before
    assert sum(len(b.dead_letters) for b in brokers) == 0
    assert sum(b.stats.dead_letters for b in brokers) == 0


# ---- 2. rrm serve, the in-process engine's model process killed ----


def serve_model_worker(service: RunningService) -> psutil.Process:
    """The vLLM model process under `rrm serve` (engine core -> worker)."""
    found = [
        p
        for p in psutil.Process(service.process.pid).children(recursive=True)
        if p.is_running() and p.name() == "VLLM::Worker"
    ]
    assert len(found) == 1, found
    return found[0]


def health(address: str) -> int:
    with grpc.insecure_channel(address) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="rrm.v1.RewardService"), timeout=5
        )
    return int(reply.status)


@pytest.fixture
def own_service(tmp_path: Path) -> Iterator[RunningService]:
    """An `rrm serve` of its own: the session's shared one must keep its engine (vLLM samples
    from one generator seeded at engine start, so a restart would change every later test's
    draws)."""
    with rrm_serve(tmp_path, RRM_GATEWAY__METRICS_PORT="0") as service:
        yield service


async def test_rrm_serve_calls_wait_across_an_engine_restart(own_service: RunningService) -> None:
    cpu_service = own_service
    victim = serve_model_worker(cpu_service)
    async with grpc.aio.insecure_channel(cpu_service.address) as channel:
        stub = pb_grpc.RewardServiceStub(channel)
        calls = [
            asyncio.ensure_future(
                stub.Compare(compare_request(i, f"serve-kill-{os.getpid()}", 96), timeout=600)
            )
            for i in range(16)
        ]
        await asyncio.sleep(1.5)
        victim.send_signal(signal.SIGKILL)
        saw_not_serving = False
        started = time.monotonic()
        while not all(c.done() for c in calls) and time.monotonic() - started < 600:
            status = await asyncio.to_thread(health, cpu_service.address)
            saw_not_serving |= status == health_pb2.HealthCheckResponse.NOT_SERVING
            await asyncio.sleep(0.3)
        replies = await asyncio.gather(*calls, return_exceptions=True)
    errors = [r for r in replies if isinstance(r, BaseException)]
    assert not errors, errors[:3]
    assert all(r.votes and r.votes[0].parse_status in DECIDED for r in replies)  # type: ignore[union-attr]
    assert saw_not_serving, "health did not report the outage"
    assert health(cpu_service.address) == health_pb2.HealthCheckResponse.SERVING
    assert serve_model_worker(cpu_service).pid != victim.pid, "the engine was restarted"
    log = cpu_service.log()
    assert "engine outage" in log and "engine back after" in log
    assert "gave up after" not in log

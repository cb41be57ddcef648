"""The fault benchmark's engine rows: the real CPU judge (SmolLM2 on vLLM) sampling at
temperature 0.6 on real HH-RLHF pairs, so a judgment that ran twice and reached its caller twice
would show as two different answers.

- engine-server-restart: a vLLM api_server shared by two `rrm worker` processes
  (RRM_ENGINE__KIND=openai) behind one `rrm gateway`, on Redis; the server's whole process group
  is SIGKILLed under load and started again on the same port a few seconds later.
- engine-kill: `rrm serve` (embedded queue, in-process vLLM); its VLLM::Worker model process is
  SIGKILLed under load, the worker restarts the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

import grpc
import psutil
from grpc_health.v1 import health_pb2, health_pb2_grpc
from rrm.v1 import reward_pb2 as pb
from rrm.v1 import reward_pb2_grpc as pb_grpc

from bench import procs
from bench.chaos_calls import Row, dead_letters, load, reask, tally
from bench.common import bench_pairs, model_dir
from reward_service.testing.serve_process import free_port
from tests.support.redis_server import RedisServer

BUDGET = 48  # reasoning tokens per judgment: short, the engine is the fault here
TEMPERATURE = 0.6
DEADLINE_S = 180.0
DOWN_S = 7.0  # the killed server stays down this long before it is started again


def judgments(metrics_ports: list[int]) -> int:
    """rrm_judgments_total (every parse status) summed over the processes' /metrics."""
    total = 0.0
    for port in metrics_ports:
        url = f"http://127.0.0.1:{port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as reply:
            text = reply.read().decode()
        total += sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("rrm_judgments_total{")
        )
    return int(total)


class EngineTarget:
    """Calls on real HH-RLHF pairs; judgments counted from the processes' metrics."""

    def __init__(self, n: int, metrics_ports: list[int]) -> None:
        self.pairs = bench_pairs(n)
        self.tag = uuid.uuid4().hex[:8]
        self.metrics_ports = metrics_ports
        self.stubs: dict[str, pb_grpc.RewardServiceStub] = {}
        self.channels: list[grpc.aio.Channel] = []
        self.dead_letter_count = lambda: 0

    def open(self, gateways: dict[str, int]) -> None:
        for name, port in gateways.items():
            channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
            self.channels.append(channel)
            self.stubs[name] = pb_grpc.RewardServiceStub(channel)

    async def close(self) -> None:
        for ch in self.channels:
            await ch.close()

    def request(self, i: int) -> pb.CompareRequest:
        pair = self.pairs[i]
        return pb.CompareRequest(
            request_id=f"{self.tag}-{i}",
            query=pair.query,
            history=[pb.Message(role=r, content=c) for r, c in pair.history],
            response_a=pair.chosen,
            response_b=pair.rejected,
            options=pb.JudgeOptions(
                votes=1, max_reasoning_tokens=BUDGET, temperature=TEMPERATURE, no_cache=True
            ),
        )

    def runs(self) -> int:
        return judgments(self.metrics_ports)

    def ran_twice(self) -> int | None:
        return None  # set by the scenario: judgments beyond one per answered call

    def dead_letters(self) -> int:
        return self.dead_letter_count()


async def until_first_judgment(target: EngineTarget, before: int, timeout_s: float) -> None:
    """Mid-load: the first judgment of the load finished (or `timeout_s` passed)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if await asyncio.to_thread(target.runs) > before:
            return
        await asyncio.sleep(0.1)


def extra_runs(row: Row, target: EngineTarget, before: int, during: int) -> None:
    row.ran_twice = max(0, during - before - row.answered)
    row.notes.append(
        f"judgments during the load {during - before} for {row.answered} answered calls"
    )


async def engine_server_restart(root: Path, quick: bool) -> Row:
    n = 16 if quick else 32
    row = Row(
        f"kill -9 the vLLM api_server of 2 `rrm worker` (openai engine), restart it after "
        f"{DOWN_S:g} s on the same port"
    )
    directory = Path(tempfile.mkdtemp(prefix="chaos-engine-", dir=root))
    redis = RedisServer(directory / "redis").start()
    model = model_dir()
    server = procs.api_server_session(directory, model)
    started: list[procs.Proc] = []
    ports = [free_port(), free_port()]
    target = EngineTarget(n, ports)
    target.dead_letter_count = lambda: dead_letters(redis.port)
    try:
        health = f"http://127.0.0.1:{server.port}/health"
        await asyncio.to_thread(procs.wait_http, health, server, 300)
        common = {
            "RRM_ENGINE__MODEL": model,
            "RRM_QUEUE__VERDICT_CACHE": "false",
            "RRM_LOG_LEVEL": "INFO",
        }
        for k, port in enumerate(ports, 1):
            env = {
                **common,
                "RRM_ENGINE__KIND": "openai",
                "RRM_ENGINE__BASE_URL": f"http://127.0.0.1:{server.port}/v1",
                # The default request timeout (600 s): a shorter one (60 s here before) threw
                # away the work of a busy engine whose queue of 32 prompts outlasted it, so no
                # judgment finished before the callers' deadline.
                "RRM_WORKER__METRICS_PORT": str(port),
                "RRM_WORKER__ENGINE_MAX_BACKOFF_S": "2",
            }
            started.append(procs.rrm_worker(directory, redis.url, f"w{k}", env))
        gateway = procs.rrm_gateway(
            directory, redis.url, "g1", {**common, "RRM_GATEWAY__DEFAULT_DEADLINE_S": "600"}
        )
        started.append(gateway)
        for w, port in zip(started[:2], ports, strict=True):
            await asyncio.to_thread(procs.wait_http, f"http://127.0.0.1:{port}/healthz", w, 300)
        await asyncio.to_thread(procs.wait_grpc, gateway, 300)
        target.open({"g1": gateway.port})
        before = await asyncio.to_thread(target.runs)

        async def fault() -> None:
            nonlocal server
            await until_first_judgment(target, before, 30)
            await asyncio.to_thread(procs.kill_session, server)
            killed = time.monotonic()
            await asyncio.sleep(DOWN_S)
            server = procs.api_server_session(directory, model, server.port)
            await asyncio.to_thread(procs.wait_http, health, server, 300)
            row.notes.append(f"engine server answering again {time.monotonic() - killed:.0f} s")

        calls = await load(target, n, DEADLINE_S, fault, at=None)
        during = await asyncio.to_thread(target.runs)
        tally(row, calls, target)
        row.notes.insert(1, f"deadline {DEADLINE_S:g} s")
        extra_runs(row, target, before, during)
        await reask(target, [c for c in calls if c.ok], "g1", row)
        logs = "".join(p.log_path.read_text(errors="replace") for p in started)
        row.notes.append(f"worker logs: {logs.count('engine outage')} 'engine outage'")
        return row
    finally:
        await target.close()
        for p in reversed(started):
            await asyncio.to_thread(procs.stop, p, 30)
        await asyncio.to_thread(procs.kill_session, server)
        redis.kill()


def model_process(serve: procs.Proc) -> psutil.Process:
    """The vLLM model process under `rrm serve` (engine core -> worker)."""
    found = [
        p
        for p in psutil.Process(serve.pid).children(recursive=True)
        if p.is_running() and p.name() == "VLLM::Worker"
    ]
    if len(found) != 1:
        raise RuntimeError(f"expected one VLLM::Worker under rrm serve, found {found}")
    return found[0]


def serving(address: str) -> bool:
    with grpc.insecure_channel(address) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="rrm.v1.RewardService"), timeout=5
        )
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


async def engine_kill(root: Path, quick: bool) -> Row:
    n = 8 if quick else 16
    row = Row("SIGKILL the VLLM::Worker model process of `rrm serve` (in-process engine)")
    directory = Path(tempfile.mkdtemp(prefix="chaos-serve-", dir=root))
    metrics_port = free_port()
    serve = procs.rrm_serve(
        directory,
        {
            "RRM_GATEWAY__METRICS_PORT": str(metrics_port),
            "RRM_QUEUE__VERDICT_CACHE": "false",
            "RRM_LOG_LEVEL": "INFO",
        },
    )
    target = EngineTarget(n, [metrics_port])
    target.dead_letter_count = lambda: serve.log_path.read_text(errors="replace").count(
        "gave up after"
    )
    try:
        await asyncio.to_thread(procs.wait_grpc, serve, 300)
        address = f"127.0.0.1:{serve.port}"
        target.open({"serve": serve.port})
        before = await asyncio.to_thread(target.runs)
        victim = model_process(serve)
        not_serving = False

        async def fault() -> None:
            nonlocal not_serving
            await until_first_judgment(target, before, 30)
            victim.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            while time.monotonic() - killed < DEADLINE_S:
                up = False
                with contextlib.suppress(grpc.RpcError):
                    up = await asyncio.to_thread(serving, address)
                not_serving |= not up
                if up and not_serving:
                    break
                await asyncio.sleep(0.3)
            row.notes.append(
                f"health NOT_SERVING seen: {not_serving}; SERVING again after "
                f"{time.monotonic() - killed:.0f} s"
            )

        calls = await load(target, n, DEADLINE_S, fault, at=None)
        during = await asyncio.to_thread(target.runs)
        tally(row, calls, target)
        row.notes.insert(1, f"deadline {DEADLINE_S:g} s")
        extra_runs(row, target, before, during)
        await reask(target, [c for c in calls if c.ok], "serve", row)
        restarted = model_process(serve).pid != victim.pid
        log = serve.log_path.read_text(errors="replace")
        row.notes.append(
            f"engine restarted: {restarted}; log: {log.count('engine outage')} 'engine outage', "
            f"{log.count('engine back after')} 'engine back after'"
        )
        return row
    finally:
        await target.close()
        await asyncio.to_thread(procs.stop, serve, 90)

"""A real gRPC gateway on 127.0.0.1 with the embedded broker and a worker driven by the
ScriptedRunner test double (the real judge + engine path is covered by tests/test_e2e_engine.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest
from rrm.v1 import reward_pb2_grpc as pb_grpc

from reward_service.domain import Limits
from reward_service.gateway.comparator import Comparator, JudgeInfo
from reward_service.gateway.server import MIN_CLIENT_PING_INTERVAL_MS, GatewayServer
from reward_service.gateway.service import RewardService
from reward_service.gateway.validation import Defaults
from reward_service.queue.cache import VerdictCache
from reward_service.queue.memory import MemoryBroker
from reward_service.testing.scripted_runner import ScriptedRunner
from reward_service.worker.worker import Worker

INFO = JudgeInfo(model="scripted", profile="generic", template_version="test/0")


@dataclass
class Stack:
    broker: MemoryBroker
    runner: ScriptedRunner
    worker: Worker
    server: GatewayServer
    comparator: Comparator
    channel: grpc.aio.Channel
    stub: pb_grpc.RewardServiceStub
    worker_task: asyncio.Task[None]


async def make_stack(
    *,
    latency_s: float = 0.0,
    max_depth: int = 10_000,
    max_in_flight: int = 32,
    warm: bool = True,
    credentials: grpc.ServerCredentials | None = None,
    interceptors: list[grpc.aio.ServerInterceptor] | None = None,
    cache: VerdictCache | None = None,
    max_concurrent_rpcs: int | None = None,
    min_client_ping_interval_ms: int = MIN_CLIENT_PING_INTERVAL_MS,
    limits: Limits | None = None,
) -> Stack:
    broker = MemoryBroker(max_depth=max_depth, visibility_timeout_s=5.0, max_tries=3)
    runner = ScriptedRunner(latency_s=latency_s)
    worker = Worker(
        broker,
        runner,
        name="w1",
        max_in_flight=max_in_flight,
        cancel_check_s=0.05,
        cache=cache,
        cache_scope=("scripted", "test/0"),
    )
    comparator = Comparator(broker)
    service = RewardService(
        comparator,
        INFO,
        limits=limits
        or Limits(max_text_chars=1000, max_pairs=8, max_votes=7, max_reasoning_tokens=256),
        defaults=Defaults(max_reasoning_tokens=64, temperature=0.6),
        default_deadline_s=30.0,
    )
    server = GatewayServer(
        service,
        host="127.0.0.1",
        port=0,
        credentials=credentials,
        interceptors=interceptors,
        max_concurrent_rpcs=max_concurrent_rpcs,
        min_client_ping_interval_ms=min_client_ping_interval_ms,
    )
    port = await server.start()
    worker_task = asyncio.create_task(worker.run(grace_s=2.0))
    if warm:
        await server.warm_up(comparator)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    return Stack(
        broker,
        runner,
        worker,
        server,
        comparator,
        channel,
        pb_grpc.RewardServiceStub(channel),
        worker_task,
    )


async def close_stack(s: Stack) -> None:
    await s.channel.close()
    await s.server.stop(0.5)
    s.worker.stop()
    await s.worker_task
    await s.broker.close()


@pytest.fixture
async def stack() -> AsyncIterator[Stack]:
    s = await make_stack()
    yield s
    await close_stack(s)


@pytest.fixture
async def slow_stack() -> AsyncIterator[Stack]:
    s = await make_stack(latency_s=1.0)
    yield s
    await close_stack(s)

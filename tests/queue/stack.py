"""The gateway + worker stack of tests/gateway, on the Redis broker: a gateway-side and a
worker-side RedisBroker (as in separate processes), a real gRPC server on port 0 and channel."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from rrm.v1 import reward_pb2_grpc as pb_grpc

from reward_service.domain import Limits, VoteResult, VoteTask
from reward_service.gateway.comparator import Comparator, JudgeInfo
from reward_service.gateway.server import GatewayServer
from reward_service.gateway.service import RewardService
from reward_service.gateway.validation import Defaults
from reward_service.queue.cache import VerdictCache
from reward_service.queue.names import QueueNames
from reward_service.queue.redis_broker import RedisBroker
from reward_service.queue.redis_client import RedisTarget
from reward_service.testing.scripted_runner import ScriptedRunner, prefer_longer
from reward_service.worker.worker import Worker
from tests.gateway.conftest import Stack

INFO = JudgeInfo(model="scripted", profile="generic", template_version="test/0")
LIMITS = Limits(max_text_chars=1000, max_pairs=8, max_votes=7, max_reasoning_tokens=256)
DEFAULTS = Defaults(max_reasoning_tokens=64, temperature=0.6)


@dataclass
class RedisStack(Stack):
    worker_broker: RedisBroker | None = None


def gateway_service(broker: RedisBroker, *, deadline_s: float = 30.0) -> RewardService:
    return RewardService(
        Comparator(broker),
        INFO,
        limits=LIMITS,
        defaults=DEFAULTS,
        default_deadline_s=deadline_s,
    )


async def make_redis_stack(
    url: RedisTarget | str,
    names: QueueNames,
    *,
    latency_s: float = 0.0,
    max_depth: int = 10_000,
    max_in_flight: int = 32,
    warm: bool = True,
    grace_s: float = 2.0,
    script: Callable[[VoteTask], VoteResult] = prefer_longer,
    cache: VerdictCache | None = None,
    visibility_timeout_s: float = 5.0,
) -> RedisStack:
    broker = RedisBroker(url, names=names, max_depth=max_depth, depth_cache_s=0.0)
    worker_broker = RedisBroker(
        url, names=names, visibility_timeout_s=visibility_timeout_s, max_tries=3
    )
    await broker.start()
    await worker_broker.start()
    runner = ScriptedRunner(script, latency_s=latency_s)
    worker = Worker(
        worker_broker,
        runner,
        name="w1",
        max_in_flight=max_in_flight,
        cancel_check_s=0.05,
        cache=cache,
        cache_scope=(INFO.model, INFO.template_version),
    )
    service = gateway_service(broker)
    server = GatewayServer(service, host="127.0.0.1", port=0)
    port = await server.start()
    worker_task = asyncio.create_task(worker.run(grace_s=grace_s))
    if warm:
        await server.warm_up(service.comparator)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    return RedisStack(
        broker,  # type: ignore[arg-type]  # Stack names the memory broker; any Broker works
        runner,
        worker,
        server,
        service.comparator,
        channel,
        pb_grpc.RewardServiceStub(channel),
        worker_task,
        worker_broker=worker_broker,
    )


async def close_redis_stack(s: RedisStack) -> None:
    await s.channel.close()
    await s.server.stop(0.5)
    s.worker.stop()
    await s.worker_task
    await s.broker.close()
    if s.worker_broker is not None:
        await s.worker_broker.close()

"""Wiring: build the judge, engine, broker, worker and gateway from one `Settings` object.

Entry points (`rrm serve`, `rrm gateway`, `rrm worker`) and tests assemble the service here, so
every deployment shape uses the same constructors.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path

from reward_service import metrics
from reward_service.domain import Limits
from reward_service.engine.base import Engine
from reward_service.gateway.auth import AuthInterceptor, load_tokens
from reward_service.gateway.comparator import Comparator, JudgeInfo
from reward_service.gateway.prompt_guard import ContextGuard
from reward_service.gateway.server import GatewayServer, tls_credentials
from reward_service.gateway.service import RewardService
from reward_service.gateway.validation import Defaults
from reward_service.judge import Judge, JudgeProfile, detect_profile
from reward_service.observe import report_queue_depth, start_http
from reward_service.queue.base import Broker
from reward_service.queue.cache import MemoryVerdictCache, RedisVerdictCache, VerdictCache
from reward_service.queue.fleet import Fleet, MemoryFleet, RedisFleet
from reward_service.queue.memory import MemoryBroker
from reward_service.queue.redis_client import RedisTarget, parse_sentinels
from reward_service.settings import EngineKind, ProfileName, Settings
from reward_service.stopper import StoppedWhileLoading, Stopper, in_thread
from reward_service.worker.engine_guard import EngineGuard, EngineLost
from reward_service.worker.engine_runner import EngineVoteRunner
from reward_service.worker.worker import Worker

log = logging.getLogger(__name__)

# Exit status of a worker (or `rrm serve`) whose engine did not come back: its supervisor
# (Kubernetes, systemd) should replace it.
EXIT_ENGINE_LOST = 3


def load_judge(settings: Settings) -> Judge:
    from transformers import AutoTokenizer

    source = settings.engine.tokenizer or settings.model_path()
    if not settings.engine.model and not Path(source).exists():
        raise SystemExit(
            f"the default CPU judge is not at {source}: run `rrm model` (or `make model`) first"
        )
    tokenizer = AutoTokenizer.from_pretrained(source)
    if settings.judge.profile is ProfileName.AUTO:
        profile = detect_profile(tokenizer)
    else:
        profile = JudgeProfile(settings.judge.profile.value)
    return Judge(tokenizer, profile)


def judge_info(settings: Settings, judge: Judge) -> JudgeInfo:
    model = settings.engine.served_model_name or settings.model_path().rstrip("/").split("/")[-1]
    return JudgeInfo(
        model=model, profile=str(judge.profile), template_version=judge.template_version
    )


def build_broker(settings: Settings, *, role: str) -> Broker:
    q = settings.queue
    if q.kind == "memory":
        return MemoryBroker(
            max_depth=settings.gateway.max_queued_jobs,
            visibility_timeout_s=q.visibility_timeout_s,
            max_tries=q.max_tries,
            result_ttl_s=q.result_ttl_s,
        )
    from reward_service.queue.redis_broker import RedisBroker

    return RedisBroker(
        redis_target(settings),
        gateway_id=None if role != "worker" else f"worker-{os.getpid()}",
        max_depth=settings.gateway.max_queued_jobs,
        visibility_timeout_s=q.visibility_timeout_s,
        max_tries=q.max_tries,
        result_ttl_s=q.result_ttl_s,
    )


def build_fleet(broker: Broker) -> Fleet:
    """Where workers report their engine state for the gateways: the queue's Redis, or (one
    process) memory; `serve_all` shares one `MemoryFleet` between its gateway and worker."""
    from reward_service.queue.redis_broker import RedisBroker

    if isinstance(broker, RedisBroker):
        return RedisFleet(broker.redis, broker.names.worker_status)
    return MemoryFleet()


def build_gateway(
    settings: Settings,
    broker: Broker,
    judge: Judge,
    *,
    reply_to: str = "",
    fleet: Fleet | None = None,
) -> tuple[GatewayServer, Comparator]:
    info = judge_info(settings, judge)
    guard = ContextGuard(judge, settings.engine.max_model_len)
    comparator = Comparator(broker, reply_to=reply_to, guard=guard, fleet=fleet)
    limits = Limits(
        max_reasoning_tokens=min(Limits().max_reasoning_tokens, settings.engine.max_model_len),
        max_judgments_per_call=settings.gateway.max_judgments_per_call,
    )
    service = RewardService(
        comparator,
        info,
        limits=limits,
        defaults=Defaults(
            max_reasoning_tokens=settings.judge.default_max_reasoning_tokens,
            temperature=settings.judge.default_temperature,
        ),
        default_deadline_s=settings.gateway.default_deadline_s,
    )
    g = settings.gateway
    credentials = None
    if g.tls_cert or g.tls_key:
        if not (g.tls_cert and g.tls_key):
            raise SystemExit("RRM_GATEWAY__TLS_CERT and RRM_GATEWAY__TLS_KEY go together")
        credentials = tls_credentials(g.tls_cert, g.tls_key, g.tls_client_ca)
    interceptors = []
    tokens = load_tokens(g.auth_tokens_file, g.auth_tokens)
    if tokens:
        interceptors.append(
            AuthInterceptor(tokens, rate_limit_per_s=g.rate_limit_per_s, burst=g.rate_limit_burst)
        )
    server = GatewayServer(
        service,
        host=g.host,
        port=g.port,
        max_message_bytes=limits.max_message_bytes,
        credentials=credentials,
        interceptors=interceptors,
        max_concurrent_rpcs=g.max_concurrent_rpcs,
    )
    return server, comparator


def build_cache(settings: Settings) -> VerdictCache | None:
    if not settings.queue.verdict_cache:
        return None
    q = settings.queue
    if q.kind == "redis":
        if not q.verdict_cache_url:
            return RedisVerdictCache.connect(redis_target(settings))
        password = q.verdict_cache_password or None
        return RedisVerdictCache.connect(RedisTarget(q.verdict_cache_url, password=password))
    return MemoryVerdictCache()


def redis_target(settings: Settings) -> RedisTarget:
    """The queue's Redis: a URL, or the primary its sentinels name."""
    q = settings.queue
    return RedisTarget(
        q.redis_url,
        sentinels=parse_sentinels(q.redis_sentinels),
        master_name=q.redis_master_name,
        sentinel_password=q.redis_sentinel_password or None,
        password=q.redis_password or None,
        password_file=q.redis_password_file or None,
    )


def build_worker(
    settings: Settings, broker: Broker, judge: Judge, engine: Engine, fleet: Fleet | None = None
) -> Worker:
    runner = EngineVoteRunner(
        judge,
        engine,
        max_model_len=settings.engine.max_model_len,
        one_call=settings.judge.one_call(judge.profile.value),
    )
    w = settings.worker
    name = w.name or f"{socket.gethostname()}-{os.getpid()}"
    info = judge_info(settings, judge)
    # Only an in-process engine is restarted by this process; a remote one is only re-probed.
    in_process = settings.engine.kind is EngineKind.VLLM
    guard = EngineGuard(
        runner,
        name=name,
        max_failed_recoveries=w.engine_restart_attempts if in_process else 0,
        outage_exit_s=w.engine_outage_exit_s,
        max_backoff_s=w.engine_max_backoff_s,
        probe_timeout_s=w.engine_probe_timeout_s,
    )
    # Readiness follows the engine: never ready without one.
    guard.on_change(lambda up: metrics.READY.set(1 if up else 0))
    return Worker(
        broker,
        runner,
        name=name,
        max_in_flight=w.max_in_flight,
        cache=build_cache(settings),
        cache_scope=(info.model, info.template_version),
        cache_ttl_s=settings.queue.verdict_cache_ttl_s,
        guard=guard,
        fleet=fleet,
        stall_check_s=w.engine_stall_s,
        deadline_margin_s=w.deadline_margin_s,
    )


async def _finish_worker(worker: Worker, task: asyncio.Task[None]) -> EngineLost | None:
    """Stop the worker and wait for it; the `EngineLost` it ended with, if any."""
    worker.stop()
    try:
        await task
    except EngineLost as exc:
        return exc
    return None


async def _stopped_while_loading(
    http: asyncio.AbstractServer | None, engine: Engine | None
) -> None:
    log.info("stop requested while loading: exiting without serving")
    if engine is not None:
        await engine.close()
    if http is not None:
        http.close()


async def _load_judge_and_engine(
    settings: Settings, stopper: Stopper, http: asyncio.Server | None
) -> tuple[Judge, Engine] | None:
    """The judge and a started engine, each step raced against SIGTERM; None when stopped
    first (the partly built engine closed, the metrics server shut)."""
    from reward_service.engine.factory import build_engine

    engine: Engine | None = None
    try:
        judge = await stopper.until_stopped(in_thread(load_judge, settings))
        engine = await stopper.until_stopped(in_thread(build_engine, settings))
        await stopper.until_stopped(engine.start())
    except StoppedWhileLoading:
        await _stopped_while_loading(http, engine)
        return None
    return judge, engine


async def serve_all(settings: Settings, *, on_ready: Callable[[int], None] | None = None) -> None:
    """`rrm serve`: gateway + embedded queue + worker + in-process engine, one process."""
    stopper = Stopper.install()
    http = await start_http(settings.gateway.metrics_host, settings.gateway.metrics_port)
    loaded = await _load_judge_and_engine(settings, stopper, http)
    if loaded is None:
        return
    judge, engine = loaded
    broker = build_broker(settings, role="all")
    await broker.start()
    fleet = MemoryFleet()
    worker = build_worker(settings, broker, judge, engine, fleet)
    server, comparator = build_gateway(settings, broker, judge, fleet=fleet)
    port = await server.start()
    depth = asyncio.create_task(report_queue_depth(broker))
    worker_task = asyncio.create_task(worker.run(settings.worker.grace_s))
    # During an engine outage the gateway reports NOT_SERVING; calls already accepted wait in
    # the queue for the engine (up to their deadline) instead of failing.
    worker.guard.on_change(lambda up: server.set_serving(up and server.warm))
    if settings.gateway.warmup:
        await server.warm_up(comparator, settings.gateway.warmup_timeout_s)
    if on_ready is not None:
        on_ready(port)
    await asyncio.wait(
        {worker_task, asyncio.ensure_future(stopper.event.wait())},
        return_when=asyncio.FIRST_COMPLETED,
    )
    log.info("shutting down: draining gateway, then worker")
    await server.stop(settings.gateway.grace_s)
    depth.cancel()
    lost = await _finish_worker(worker, worker_task)
    await broker.close()
    await engine.close()
    if http is not None:
        http.close()
    if lost is not None:
        raise SystemExit(EXIT_ENGINE_LOST)


async def run_gateway(settings: Settings, *, on_ready: Callable[[int], None] | None = None) -> None:
    """`rrm gateway`: validates, plans and routes; judgments run on `rrm worker` replicas."""
    if settings.queue.kind != "redis":
        raise SystemExit("rrm gateway needs a shared queue: set RRM_QUEUE__KIND=redis")
    stopper = Stopper.install()
    http = await start_http(settings.gateway.metrics_host, settings.gateway.metrics_port)
    # The tokenizer only (the template version in GetInfo), off the loop: /metrics is liveness.
    try:
        judge = await stopper.until_stopped(in_thread(load_judge, settings))
    except StoppedWhileLoading:
        return await _stopped_while_loading(http, None)
    broker = build_broker(settings, role="gateway")
    await broker.start()
    server, comparator = build_gateway(settings, broker, judge, fleet=build_fleet(broker))
    port = await server.start()
    depth = asyncio.create_task(report_queue_depth(broker))
    if settings.gateway.warmup:
        warm = asyncio.create_task(server.warm_up(comparator, settings.gateway.warmup_timeout_s))
        await asyncio.wait(
            {warm, asyncio.ensure_future(stopper.event.wait())}, return_when=asyncio.FIRST_COMPLETED
        )
        if warm.done():
            warm.result()
        else:
            warm.cancel()
    if on_ready is not None and not stopper.event.is_set():
        on_ready(port)
    await stopper.event.wait()
    log.info("shutting down: NOT_SERVING, draining in-flight calls")
    await server.stop(settings.gateway.grace_s)
    depth.cancel()
    await broker.close()
    if http is not None:
        http.close()


async def run_worker(settings: Settings) -> None:
    """`rrm worker`: one engine replica reading jobs from the shared queue."""
    if settings.queue.kind != "redis":
        raise SystemExit("rrm worker needs a shared queue: set RRM_QUEUE__KIND=redis")
    stopper = Stopper.install()
    # Metrics first: liveness probes see the process while the model loads; /healthz says 503.
    # Loading (transformers and vLLM imports, the tokenizer: seconds to minutes) runs off the
    # event loop, or /metrics would stay silent and liveness would fail during it.
    # SIGTERM during the load exits at once (Kubernetes stops pods whether they loaded or not).
    http = await start_http(settings.worker.metrics_host, settings.worker.metrics_port)
    loaded = await _load_judge_and_engine(settings, stopper, http)
    if loaded is None:
        return
    judge, engine = loaded
    broker = build_broker(settings, role="worker")
    await broker.start()
    worker = build_worker(settings, broker, judge, engine, build_fleet(broker))
    worker_task = asyncio.create_task(worker.run(settings.worker.grace_s))
    metrics.READY.set(1)
    log.info("worker %s ready", worker.name)
    await asyncio.wait(
        {worker_task, asyncio.ensure_future(stopper.event.wait())},
        return_when=asyncio.FIRST_COMPLETED,
    )
    metrics.READY.set(0)
    log.info("shutting down: finishing or handing back in-flight judgments")
    lost = await _finish_worker(worker, worker_task)
    await broker.close()
    await engine.close()
    if http is not None:
        http.close()
    if lost is not None:
        raise SystemExit(EXIT_ENGINE_LOST)

"""The Redis queue path alone, with a zero-latency scripted judge: judgments/s and added latency
through gateway -> Redis -> worker -> gateway, beside raw XADD throughput of the same Redis in
the same run; then scale-out over 1/2/4 worker processes with a 50 ms judge.

Workers (and, for the gRPC rows, the gateway) are separate processes (tests/queue/proc_*.py);
this process drives them. "queue path" rows: this process is the gateway side (a RedisBroker
submitting jobs and awaiting their futures, gRPC excluded). "gRPC" rows: this process is a gRPC
client of a gateway process (Compare, one judgment per call: client, server and protobuf
included).

    .venv/bin/python bench/bench_queue.py
    .venv/bin/python bench/bench_queue.py --grpc-only --rates 3000   # overload of one gateway
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import psutil
from rich.console import Console
from rich.table import Table
from rrm.v1 import reward_pb2 as pb
from rrm.v1 import reward_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from redis.utils import HIREDIS_AVAILABLE  # noqa: E402

from policy_adapter.errors import retry_delay_s  # noqa: E402
from reward_service.domain import Pair, VoteTask  # noqa: E402
from reward_service.queue.base import JobEnvelope  # noqa: E402
from reward_service.queue.jobs import encode_envelope  # noqa: E402
from reward_service.queue.names import QueueNames  # noqa: E402
from reward_service.queue.redis_broker import RedisBroker  # noqa: E402
from reward_service.settings import GatewaySettings  # noqa: E402
from tests.queue.cluster import Cluster  # noqa: E402
from tests.support.redis_server import RedisServer  # noqa: E402

console = Console(width=140)

QUERY = "Which answer explains the difference between a list and a tuple in Python better?"
LONG = "A list is mutable: you can append, remove and change items. A tuple is immutable."
SHORT = "Tuples are faster."


@dataclass
class Run:
    judgments: int
    seconds: float
    latencies_s: list[float]
    errors: int = 0
    codes: str = ""  # the failed calls' status codes
    foreign_cores: float = 0.0  # CPU other programs used meanwhile (a shared machine's noise)

    @property
    def rate(self) -> float:
        return self.judgments / self.seconds

    def pct(self, q: float) -> float:
        xs = sorted(self.latencies_s)
        return xs[min(len(xs) - 1, int(q * len(xs)))] * 1000 if xs else float("nan")


def task(i: int) -> VoteTask:
    return VoteTask(
        pair=Pair(query=f"{QUERY} #{i}", first=LONG, second=SHORT),
        max_reasoning_tokens=512,
        temperature=0.6,
        vote_index=i % 8,
    )


class ForeignCpu:
    """CPU used during a measurement by processes that are not this benchmark's (this process,
    its children, the Redis server): on a shared machine, the noise behind a number."""

    redis_pid = 0
    started = False
    cores = 0.0

    def _ours(self) -> float:
        me = psutil.Process()
        procs = [me, *me.children(recursive=True)]
        with contextlib.suppress(psutil.Error):
            procs.append(psutil.Process(self.redis_pid))
        total = 0.0
        for proc in procs:
            with contextlib.suppress(psutil.Error):
                t = proc.cpu_times()
                total += t.user + t.system
        return total

    def __enter__(self) -> ForeignCpu:
        self.t0, self.ours0 = time.monotonic(), self._ours()
        self.busy0 = _busy(psutil.cpu_times())
        self.started = True
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.started:
            return
        elapsed = time.monotonic() - self.t0
        others = _busy(psutil.cpu_times()) - self.busy0 - (self._ours() - self.ours0)
        self.cores = max(0.0, others / elapsed)


def _busy(t: Any) -> float:
    return float(t.user + t.system + getattr(t, "nice", 0.0) + getattr(t, "irq", 0.0))


async def closed_loop(
    one: Callable[[int], Awaitable[None]], *, concurrency: int, warmup_s: float, duration_s: float
) -> Run:
    """`concurrency` callers, each starting its next judgment when the last one is answered (or
    refused: then after the server's retry delay, as the shipped client does)."""
    counter = iter(range(10**9))
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    done = 0
    measuring = False
    stop_at = time.monotonic() + warmup_s + duration_s

    async def caller() -> None:
        nonlocal done
        while time.monotonic() < stop_at:
            started = time.perf_counter()
            try:
                await one(next(counter))
            except grpc.aio.AioRpcError as err:
                errors[err.code().name] += measuring
                await asyncio.sleep(retry_delay_s(err) or 0.1)
                continue
            if measuring:
                latencies.append(time.perf_counter() - started)
                done += 1

    callers = [asyncio.create_task(caller()) for _ in range(concurrency)]
    await asyncio.sleep(warmup_s)
    with ForeignCpu() as foreign:
        measuring, t0 = True, time.perf_counter()
        await asyncio.sleep(duration_s)
        measuring, elapsed = False, time.perf_counter() - t0
    await asyncio.gather(*callers)
    codes = ", ".join(f"{k} {v}" for k, v in errors.most_common() if v)
    return Run(done, elapsed, latencies, errors.total(), codes, foreign_cores=foreign.cores)


async def open_loop(
    one: Callable[[int], Awaitable[None]], *, rate: float, warmup_s: float, duration_s: float
) -> Run:
    """Judgments started at a fixed rate whatever the answers do: latency at a given load."""
    counter = iter(range(10**9))
    latencies: list[float] = []
    tasks: set[asyncio.Task[None]] = set()
    errors: Counter[str] = Counter()

    async def timed(measured: bool) -> None:
        started = time.perf_counter()
        try:
            await one(next(counter))
        except grpc.aio.AioRpcError as err:  # overloaded past what it can take: count, go on
            errors[err.code().name] += 1
            return
        if measured:
            latencies.append(time.perf_counter() - started)

    t0 = time.perf_counter()
    launched = 0
    foreign = ForeignCpu()
    while (now := time.perf_counter() - t0) < warmup_s + duration_s:
        if now >= warmup_s and not foreign.started:
            foreign.__enter__()
        for _ in range(int(now * rate) - launched):
            task = asyncio.create_task(timed(now >= warmup_s))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            launched += 1
        await asyncio.sleep(0.0005)
    foreign.__exit__()
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - t0 - warmup_s
    codes = ", ".join(f"{k} {v}" for k, v in errors.most_common())
    return Run(
        len(latencies), max(duration_s, elapsed), latencies, errors.total(), codes, foreign.cores
    )


def via_broker(broker: RedisBroker, tag: str) -> Callable[[int], Awaitable[None]]:
    async def one(i: int) -> None:
        env = JobEnvelope(job_id=f"{tag}-{i}", task=task(i), deadline=time.time() + 60)
        [fut] = await broker.submit([env])
        await fut

    return one


def via_grpc(stub: pb_grpc.RewardServiceStub, tag: str) -> Callable[[int], Awaitable[None]]:
    async def one(i: int) -> None:
        request = pb.CompareRequest(
            request_id=f"{tag}-{i}",
            query=f"{QUERY} #{i}",
            response_a=LONG,
            response_b=SHORT,
            options=pb.JudgeOptions(votes=1, order=pb.ORDER_AS_GIVEN),
        )
        await stub.Compare(request, timeout=60)

    return one


def via_grpc_batch(
    stub: pb_grpc.RewardServiceStub, tag: str, pairs: int
) -> Callable[[int], Awaitable[None]]:
    async def one(i: int) -> None:
        batch = pb.CompareBatchRequest(
            pairs=[
                pb.CompareRequest(
                    request_id=f"{tag}-{i}-{k}",
                    query=f"{QUERY} #{i}/{k}",
                    response_a=LONG,
                    response_b=SHORT,
                    options=pb.JudgeOptions(votes=1, order=pb.ORDER_AS_GIVEN),
                )
                for k in range(pairs)
            ]
        )
        await stub.CompareBatch(batch, timeout=60)

    return one


def redis_benchmark_xadd(port: int, payload: bytes, pipeline: int) -> float:
    """redis-benchmark (50 clients) XADDing an envelope-sized entry: requests/s."""
    n = 100_000 if pipeline == 1 else 400_000
    out = subprocess.run(
        [
            *("redis-benchmark", "-p", str(port), "-q", "-n", str(n), "-P", str(pipeline)),
            *("xadd", "bench:xadd", "MAXLEN", "~", "10000", "*", "job", payload.decode()),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rates = re.findall(r"([\d.]+) requests per second", out)
    return float(rates[-1])


async def one_gateway_one_worker(
    server: RedisServer, args: argparse.Namespace, table: Table
) -> None:
    prefix = f"b{uuid.uuid4().hex[:6]}"
    cluster = Cluster(server.url, prefix)
    broker = RedisBroker(server.url, names=QueueNames(prefix=prefix))
    await broker.start()
    try:
        await cluster.worker(
            "w1", latency_s=args.judge_latency_ms / 1000, max_in_flight=256, no_record=True
        )
        d = args.duration
        one = via_broker(broker, f"{prefix}-q")
        if not args.grpc_only:
            run = await closed_loop(one, concurrency=1, warmup_s=0.5, duration_s=d)
            table.add_row("queue path", "1 in flight", *_cells(run))
            for rate in args.rates:
                run = await open_loop(one, rate=rate, warmup_s=1.0, duration_s=d)
                table.add_row("queue path", f"{rate:,}/s offered", *_cells(run))
            run = await closed_loop(one, concurrency=args.concurrency, warmup_s=1.0, duration_s=d)
            table.add_row("queue path", f"{args.concurrency} in flight", *_cells(run))
        gw = await cluster.gateway("g1", warm=True, max_concurrent_rpcs=args.max_concurrent_rpcs)
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{gw.port}")
        stub = pb_grpc.RewardServiceStub(channel)
        one = via_grpc(stub, f"{prefix}-g")
        run = await closed_loop(one, concurrency=1, warmup_s=0.5, duration_s=d)
        table.add_row("gRPC Compare", "1 in flight", *_cells(run))
        for rate in args.rates:
            run = await open_loop(one, rate=rate, warmup_s=1.0, duration_s=d)
            table.add_row("gRPC Compare", f"{rate:,}/s offered", *_cells(run))
        run = await closed_loop(one, concurrency=args.concurrency, warmup_s=1.0, duration_s=d)
        table.add_row("gRPC Compare", f"{args.concurrency} in flight", *_cells(run))
        batch = via_grpc_batch(stub, f"{prefix}-b", 8)
        run = await closed_loop(batch, concurrency=32, warmup_s=1.0, duration_s=d)
        run.judgments *= 8
        table.add_row("gRPC CompareBatch x8", "32 calls in flight", *_cells(run))
        await channel.close()
    finally:
        await broker.close()
        await cluster.close()


def _cells(run: Run) -> tuple[str, str, str, str, str]:
    return (
        f"{run.rate:,.0f}",
        f"{run.pct(0.5):.2f}",
        f"{run.pct(0.99):.2f}",
        f"{run.errors} ({run.codes})" if run.errors else "0",
        f"{run.foreign_cores:.2f}",
    )


async def scale_out(server: RedisServer, args: argparse.Namespace) -> Table:
    table = Table(title=f"Scale-out: judge latency {args.latency_ms} ms, 32 in flight per worker")
    cols = ("workers", "judgments/s", "ideal (32/latency x k)", "vs ideal", "vs k x 1 worker")
    for col in (*cols, "other CPU"):
        table.add_column(col, justify="right")
    latency_s = args.latency_ms / 1000
    single = None
    for k in args.workers:
        prefix = f"s{k}{uuid.uuid4().hex[:6]}"
        cluster = Cluster(server.url, prefix)
        broker = RedisBroker(server.url, names=QueueNames(prefix=prefix))
        await broker.start()
        try:
            await asyncio.gather(
                *(
                    cluster.worker(f"w{i}", latency_s=latency_s, max_in_flight=32, no_record=True)
                    for i in range(k)
                )
            )
            run = await closed_loop(
                via_broker(broker, prefix),
                concurrency=2 * 32 * k,  # twice the slots: workers never wait for work
                warmup_s=1.5,
                duration_s=args.duration,
            )
        finally:
            await broker.close()
            await cluster.close()
        single = single or run.rate
        ideal = k * 32 / latency_s
        table.add_row(
            str(k),
            f"{run.rate:,.0f}",
            f"{ideal:,.0f}",
            f"{run.rate / ideal:.2f}",
            f"{run.rate / (k * single):.2f}",
            f"{run.foreign_cores:.2f}",
        )
    return table


def describe_machine() -> str:
    redis_version = subprocess.run(
        ["redis-server", "--version"], capture_output=True, text=True, check=True
    ).stdout.split()[2]
    return (
        f"hiredis parser: {'yes' if HIREDIS_AVAILABLE else 'no'}; "
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"Redis {redis_version.removeprefix('v=')}"
    )


async def measure(server: RedisServer, args: argparse.Namespace) -> None:
    latency = f"{args.judge_latency_ms:g} ms" if args.judge_latency_ms else "zero-latency"
    table = Table(title=f"One gateway, one worker process, {latency} scripted judge")
    table.add_column("path")
    table.add_column("load")
    for col in ("judgments/s", "p50 ms", "p99 ms", "failed calls", "other CPU"):
        table.add_column(col, justify="right")
    console.print(f"gateway: max_concurrent_rpcs {args.max_concurrent_rpcs or 'unlimited'}")
    await one_gateway_one_worker(server, args, table)
    console.print(table)
    if not args.grpc_only:
        console.print(await scale_out(server, args))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--duration", type=float, default=5.0, help="measured seconds per row")
    p.add_argument("--concurrency", type=int, default=256, help="callers of the closed loops")
    p.add_argument("--rates", type=int, nargs="+", default=[1000, 3000], help="open loops")
    p.add_argument("--latency-ms", type=float, default=50.0)
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument(
        "--max-concurrent-rpcs",
        type=int,
        default=GatewaySettings().max_concurrent_rpcs,
        help="the gateway's cap (default: the shipped default; 0: none)",
    )
    p.add_argument("--grpc-only", action="store_true", help="only the rows through a gateway")
    p.add_argument(
        "--judge-latency-ms",
        type=float,
        default=0.0,
        help="scripted judge latency of the one-gateway rows (0: zero-latency)",
    )
    args = p.parse_args()
    console.print(describe_machine())
    console.print(
        "other CPU: cores used meanwhile by programs outside this benchmark (0 = quiet machine)"
    )
    with tempfile.TemporaryDirectory(prefix="rrm-bench-") as tmp:
        server = RedisServer(Path(tmp)).start()
        ForeignCpu.redis_pid = server.pid or 0
        try:
            payload = encode_envelope(JobEnvelope(job_id="j-" + "0" * 40, task=task(0), deadline=0))
            base = Table(title=f"redis-benchmark XADD, {len(payload)}-byte entry, 50 clients")
            base.add_column("pipeline")
            base.add_column("XADD/s", justify="right")
            for depth in () if args.grpc_only else (1, 16):
                rate = redis_benchmark_xadd(server.port, payload, depth)
                base.add_row(str(depth), f"{rate:,.0f}")
            console.print(base)
            asyncio.run(measure(server, args))
        finally:
            server.kill()


if __name__ == "__main__":
    main()

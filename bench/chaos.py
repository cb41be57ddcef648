"""Fault injection: one fault under concurrent Compare calls, then every answered request asked
again with the same request_id. Most rows run through Redis with real `rrm gateway` processes and
worker processes judging with a ScriptedRunner TEST DOUBLE that samples its verdict and p at random
on every execution (bench/chaos_worker.py: fast, and a second execution gives a different answer);
the engine rows (bench/chaos_engine.py) run the real CPU judge at temperature 0.6.

  answered        OK (any winner: the judge samples)
  clean errors    UNAVAILABLE / DEADLINE_EXCEEDED / RESOURCE_EXHAUSTED / ABORTED, in time
  lost            anything else: hung past the deadline, another status, or (rows that retry
                  clean errors by request_id) never answered
  answered twice  request ids that got two different answers (winner or p_a differ between the
                  call and its re-ask after the fault)
  ran twice       jobs finished more than once (wasted work: the first stored result answers
                  every caller); scripted rows: worker execution logs; engine rows: judgments
                  counted by the workers' metrics beyond one per call
  dead letters    entries on the Redis dead-letter stream (`rrm serve`: "gave up after" in its log)

    python -m bench.chaos                 # every scenario (the engine rows load vLLM: ~10 min)
    python -m bench.chaos --quick --only worker-kill queue-full
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from redis.asyncio import Redis
from redis.exceptions import OutOfMemoryError
from rich.table import Table
from rrm.v1 import reward_pb2 as pb
from rrm.v1 import reward_pb2_grpc as pb_grpc

from bench import chaos_engine, procs
from bench.chaos_calls import (
    Call,
    Row,
    dead_letters,
    load,
    reask,
    retry_failed,
    scripted_request,
    tally,
)
from bench.chaos_worker import executions
from bench.common import OUT_DIR, console, md_table, save_json
from tests.support.redis_server import RedisServer
from tests.support.sentinel import SentinelSetup


class Rig:
    """One scenario's Redis (one server, or a Sentinel setup), worker and gateway processes, and
    channels to the gateways."""

    def __init__(
        self,
        root: Path,
        *,
        aof: bool = False,
        redis_args: tuple[str, ...] = (),
        sentinel: bool = False,
    ) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="chaos-", dir=root))
        self.sentinels: SentinelSetup | None = None
        if sentinel:
            self.sentinels = SentinelSetup(self.dir / "sentinel").start()
            self.redis = self.sentinels.primary
        else:
            self.redis = RedisServer(self.dir / "redis", appendonly=aof, args=redis_args).start()
        self.workers: dict[str, procs.Proc] = {}
        self.gateways: dict[str, procs.Proc] = {}
        self.stubs: dict[str, pb_grpc.RewardServiceStub] = {}
        self.channels: list[grpc.aio.Channel] = []
        self.tag = uuid.uuid4().hex[:8]
        self.warm: Counter[str] = Counter()  # executions before the load (gateway warm-ups)

    def env(self, **extra: str) -> dict[str, str]:
        env = {"RRM_QUEUE__VISIBILITY_TIMEOUT_S": "2", "RRM_LOG_LEVEL": "WARNING", **extra}
        if self.sentinels is not None:
            env["RRM_QUEUE__REDIS_SENTINELS"] = self.sentinels.addresses
        return env

    def start(
        self,
        *,
        workers: int = 2,
        gateways: int = 2,
        latency_s: float = 0.2,
        max_in_flight: int = 16,
        **gateway_env: str,
    ) -> Rig:
        for k in range(1, workers + 1):
            name = f"w{k}"
            args = ["-m", "bench.chaos_worker", "--name", name, "--dir", str(self.dir)]
            args += ["--latency", str(latency_s), "--max-in-flight", str(max_in_flight)]
            env = procs.rrm_env(self.redis.url, extra=self.env())
            self.workers[name] = procs.spawn(name, args, self.dir, env=env)
        for k in range(1, gateways + 1):
            name = f"g{k}"
            env = self.env(RRM_GATEWAY__DEFAULT_DEADLINE_S="30", **gateway_env)
            self.gateways[name] = procs.rrm_gateway(self.dir, self.redis.url, name, env)
        for w in self.workers.values():
            _wait_line(w, "READY")
        for g in self.gateways.values():
            if gateway_env.get("RRM_GATEWAY__WARMUP") == "false":
                _wait_line(g, "ready on")  # no warm-up judgment: health stays NOT_SERVING
            else:
                procs.wait_grpc(g, timeout_s=60)
        return self

    async def open(self) -> None:
        for name, g in self.gateways.items():
            channel = grpc.aio.insecure_channel(f"127.0.0.1:{g.port}")
            self.channels.append(channel)
            self.stubs[name] = pb_grpc.RewardServiceStub(channel)

    async def close(self) -> None:
        for ch in self.channels:
            await ch.close()

    def stop(self) -> None:
        for p in [*self.gateways.values(), *self.workers.values()]:
            if p.process.poll() is None:
                os.kill(p.pid, signal.SIGCONT)  # in case a scenario left one stopped
            procs.stop(p, timeout_s=15)
        if self.sentinels is not None:
            self.sentinels.close()
        else:
            self.redis.kill()

    # ---- chaos_calls.Target ----

    def request(self, i: int) -> pb.CompareRequest:
        return scripted_request(i, self.tag)

    def executions(self) -> list[str]:
        return executions(self.dir)

    def runs(self) -> int:
        return len(self.executions())

    def ran_twice(self) -> int:
        runs = Counter(self.executions()) - self.warm
        return sum(1 for count in runs.values() if count > 1)

    def dead_letters(self) -> int:
        port = self.sentinels.primary_port() if self.sentinels else self.redis.port
        return dead_letters(port)


def _wait_line(proc: procs.Proc, word: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while word not in proc.log_path.read_text(errors="replace"):
        if proc.process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{proc.name} did not start:\n{proc.tail()}")
        time.sleep(0.05)


def answered(calls: list[Call]) -> list[Call]:
    return [c for c in calls if c.ok]


def retry_info_note(calls: list[Call]) -> str:
    exhausted = [c for c in calls if c.code is grpc.StatusCode.RESOURCE_EXHAUSTED or c.attempts > 1]
    if any(c.retry_delay_s is None for c in exhausted):
        return "RESOURCE_EXHAUSTED without RetryInfo"
    shortest = min((c.retry_delay_s or 0) for c in exhausted) if exhausted else 0
    return f"{len(exhausted)} calls saw RESOURCE_EXHAUSTED, all with RetryInfo ({shortest:.1f} s)"


# ---- scenarios ----


async def worker_kill(rig: Rig, n: int) -> Row:
    row = Row("kill -9 a worker (visibility timeout 2 s)")

    async def fault() -> None:
        rig.workers["w1"].process.kill()

    calls = await load(rig, n, 30, fault)
    await reask(rig, answered(calls), "g2", row)
    return tally(row, calls, rig)


async def gateway_kill(rig: Rig, n: int) -> Row:
    row = Row("kill -9 a gateway (its clients retry on the other)")

    async def fault() -> None:
        rig.gateways["g1"].process.kill()

    calls = await load(rig, n, 30, fault)
    by_gw = {g: Counter(c.code.name for c in calls if c.gateway == g) for g in ("g1", "g2")}
    row.notes.append(f"g1 clients: {dict(by_gw['g1'])}; g2 clients: {dict(by_gw['g2'])}")
    retried = await retry_failed(rig, calls, "g2", row)
    await reask(rig, answered(calls) + retried, "g2", row)
    return tally(row, calls, rig)


def redis_restart(crash: bool) -> Callable[[Rig, int], Awaitable[Row]]:
    async def scenario(rig: Rig, n: int) -> Row:
        what = "kill -9 + start" if crash else "SHUTDOWN + start"
        row = Row(f"restart Redis, AOF everysec ({what})")

        async def fault() -> None:
            await asyncio.to_thread(rig.redis.restart, crash=crash)

        calls = await load(rig, n, 15, fault)
        await reask(rig, answered(calls), "g2", row)
        return tally(row, calls, rig)

    return scenario


async def worker_stop(rig: Rig, n: int) -> Row:
    row = Row("SIGSTOP a worker 5 s (> visibility 2 s), SIGCONT")

    async def fault() -> None:
        w1 = rig.workers["w1"]
        os.kill(w1.pid, signal.SIGSTOP)
        await asyncio.sleep(5.0)
        os.kill(w1.pid, signal.SIGCONT)

    calls = await load(rig, n, 30, fault)
    await asyncio.sleep(1.0)  # let the resumed worker finish what it held
    await reask(rig, answered(calls), "g2", row)
    return tally(row, calls, rig)


def slow_judgment(latency_s: float) -> Callable[[Rig, int], Awaitable[Row]]:
    async def scenario(rig: Rig, n: int) -> Row:
        row = Row(f"every judgment ({latency_s:g} s) outlasts the visibility timeout (2 s)")
        calls = await load(rig, min(n, 8), 30, None)  # free slots: reclaims start at once
        await asyncio.sleep(latency_s + 2.0)  # let the redeliveries run out
        await reask(rig, answered(calls), "g2", row)
        return tally(row, calls, rig)

    return scenario


def queue_full(retry: bool) -> Callable[[Rig, int], Awaitable[Row]]:
    async def scenario(rig: Rig, n: int) -> Row:
        label = "clients wait the RetryInfo delay, retry" if retry else "no client retry"
        row = Row(f"fill the queue (limit 50, 16 judgments/s; {label})")
        calls = await load(rig, n, 120 if retry else 30, None, honour_retry_info=retry)
        row.notes.append(retry_info_note(calls))
        if retry:
            row.notes.append(f"max attempts per call {max(c.attempts for c in calls)}")
        await reask(rig, answered(calls), "g1", row)
        return tally(row, calls, rig)

    return scenario


async def redis_primary_kill(rig: Rig, n: int) -> Row:
    row = Row("kill -9 the Redis primary (Sentinel: replica + 3 sentinels; clients retry)")
    assert rig.sentinels is not None
    setup = rig.sentinels

    async def fault() -> None:
        old = setup.primary.port
        await asyncio.to_thread(setup.primary.kill)
        failover_s = await asyncio.to_thread(setup.wait_failover, old)
        row.notes.append(f"failover {failover_s:.1f} s after the kill")

    calls = await load(rig, n, 30, fault)
    retried = await retry_failed(rig, calls, "g2", row)
    await reask(rig, answered(calls) + retried, "g2", row)
    return tally(row, calls, rig)


OOM_REDIS = ("--maxmemory", "16mb", "--maxmemory-policy", "noeviction")


async def redis_oom(rig: Rig, n: int) -> Row:
    """Calls arrive over 4 s; once a quarter ran, filler keys take Redis past `maxmemory` for
    3 s, then are deleted. Clients honour the RetryInfo delay."""
    row = Row("Redis out of memory for 3 s (maxmemory + noeviction; clients honour RetryInfo)")
    raw = Redis.from_url(rig.redis.url)

    async def fault() -> None:
        filled = 0
        while True:
            try:
                await raw.set(f"filler:{filled}", b"x" * 65536)
                filled += 1
            except OutOfMemoryError:
                # A refused write frees its own buffer: go a little below what is used, so Redis
                # stays over the limit (as tests/queue/test_redis_oom.py does).
                used = int((await raw.info("memory"))["used_memory"])
                await raw.config_set("maxmemory", used - 256 * 1024)
                break
        await asyncio.sleep(3.0)
        await raw.delete(*(f"filler:{i}" for i in range(filled)))
        await raw.config_set("maxmemory", OOM_REDIS[1])
        row.notes.append(f"filled with {filled} x 64 KiB")

    try:
        calls = await load(rig, n, 30, fault, honour_retry_info=True, spread_s=4.0)
        row.notes.append(retry_info_note(calls))
        row.notes.append(f"max attempts per call {max(c.attempts for c in calls)}")
        await reask(rig, answered(calls), "g1", row)
    finally:
        await raw.aclose()
    return tally(row, calls, rig)


@dataclass
class Scenario:
    run: Callable[[Rig, int], Awaitable[Row]] | None = None
    aof: bool = False
    rig: dict[str, object] = field(default_factory=dict)
    redis_args: tuple[str, ...] = ()
    sentinel: bool = False
    # Rows with their own topology and a real engine: (log dir, quick) -> row.
    engine: Callable[[Path, bool], Awaitable[Row]] | None = None


QUEUE_FULL_RIG: dict[str, object] = {
    "workers": 1,
    "gateways": 1,
    "latency_s": 0.5,
    "max_in_flight": 8,
    "RRM_GATEWAY__MAX_QUEUED_JOBS": "50",
}
SCENARIOS: dict[str, Scenario] = {
    "worker-kill": Scenario(worker_kill),
    "gateway-kill": Scenario(gateway_kill),
    "redis-restart": Scenario(redis_restart(crash=False), aof=True),
    "redis-crash": Scenario(redis_restart(crash=True), aof=True),
    "worker-stop": Scenario(worker_stop),
    "slow-judgment": Scenario(slow_judgment(3.0), rig={"latency_s": 3.0}),
    # Past max_tries x visibility: even the gateways' warm-up judgment could never succeed.
    "slower-judgment": Scenario(
        slow_judgment(7.0), rig={"latency_s": 7.0, "RRM_GATEWAY__WARMUP": "false"}
    ),
    "queue-full": Scenario(queue_full(retry=False), rig=QUEUE_FULL_RIG),
    "queue-full-retry": Scenario(queue_full(retry=True), rig=QUEUE_FULL_RIG),
    "redis-primary-kill": Scenario(redis_primary_kill, sentinel=True),
    "redis-oom": Scenario(redis_oom, redis_args=OOM_REDIS),
    "engine-server-restart": Scenario(engine=chaos_engine.engine_server_restart),
    "engine-kill": Scenario(engine=chaos_engine.engine_kill),
}


async def run_one(name: str, root: Path, n: int, quick: bool) -> Row:
    sc = SCENARIOS[name]
    if sc.engine is not None:
        return await sc.engine(root, quick)
    assert sc.run is not None

    def start() -> Rig:
        rig = Rig(root, aof=sc.aof, redis_args=sc.redis_args, sentinel=sc.sentinel)
        try:
            return rig.start(**sc.rig)  # type: ignore[arg-type]
        except BaseException:
            rig.stop()
            raise

    rig = await asyncio.to_thread(start)
    try:
        await rig.open()
        rig.warm = Counter(rig.executions())
        return await sc.run(rig, n)
    finally:
        await rig.close()
        await asyncio.to_thread(rig.stop)


HEADERS = [
    "scenario",
    "calls",
    "answered",
    "clean errors",
    "lost",
    "answered twice",
    "ran twice",
    "dead letters",
    "answered on retry",
    "notes",
]


def render(rows: list[Row]) -> str:
    table = Table(title="Faults (sampling judges: scripted at random, or the CPU judge)")
    for h in HEADERS:
        table.add_column(h, justify="left" if h in ("scenario", "notes") else "right")
    cells = []
    for r in rows:
        row = [
            r.scenario,
            r.calls,
            r.answered,
            r.clean_errors,
            r.lost,
            r.answered_twice,
            "-" if r.ran_twice is None else r.ran_twice,
            r.dead_letters,
            r.answered_on_retry or "-",
            "; ".join(r.notes),
        ]
        table.add_row(*map(str, row))
        cells.append(row)
    console.print(table)
    return md_table(HEADERS, cells)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--only", nargs="+", choices=list(SCENARIOS), default=list(SCENARIOS))
    ap.add_argument("-n", type=int, default=600, help="calls per scripted scenario")
    ap.add_argument(
        "--quick", action="store_true", help="120 calls per scripted scenario, fewer on engines"
    )
    ap.add_argument("--out", type=Path, default=OUT_DIR / "chaos.json")
    ap.add_argument(
        "--engine-deadline",
        type=float,
        default=chaos_engine.DEADLINE_S,
        help="the callers' deadline in the engine rows (s)",
    )
    ap.add_argument("--logs", type=Path, help="keep every process log here (default: discarded)")
    args = ap.parse_args()
    n = 120 if args.quick else args.n
    chaos_engine.DEADLINE_S = args.engine_deadline
    if args.logs:
        args.logs.mkdir(parents=True, exist_ok=True)
    rows = run(args.only, n, args.logs, quick=args.quick)
    md = render(rows)
    save_json(args.out, {"n": n, "rows": rows})
    args.out.with_suffix(".md").write_text(md + "\n")
    bad = [r.scenario for r in rows if r.lost or r.answered_twice or r.dead_letters]
    console.print(
        f"[{'red' if bad else 'green'}]lost = 0, answered twice = 0, dead letters = 0: "
        f"{'MISSED in ' + '; '.join(bad) if bad else 'met in every row'}[/]"
    )


def run(names: list[str], n: int, root: Path | None = None, *, quick: bool = False) -> list[Row]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="rrm-chaos-") as tmp:
        for i, name in enumerate(names, 1):
            with console.status(f"[{i}/{len(names)}] {name}"):
                row = asyncio.run(run_one(name, root or Path(tmp), n, quick))
            console.print(
                f"[{i}/{len(names)}] {row.scenario}: calls {row.calls}, answered {row.answered}, "
                f"clean errors {row.clean_errors}, lost {row.lost}, answered twice "
                f"{row.answered_twice}, ran twice {row.ran_twice}, dead letters {row.dead_letters}"
            )
            rows.append(row)
    return rows


if __name__ == "__main__":
    main()

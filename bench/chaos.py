"""Fault injection through Redis: real `rrm gateway` processes, worker processes with the
ScriptedRunner TEST DOUBLE instead of an engine (bench/chaos_worker.py: fast and deterministic;
the engine is not what is under test here), a redis-server started per scenario.

Each scenario sends concurrent Compare calls (one vote, order as given: the longer response must
win), injects one fault mid-load, then re-asks every answered request with the same request_id
(it must come back from the stored result: same answer, no new execution). Counts:

  answered        OK with the right winner
  failed cleanly  UNAVAILABLE / DEADLINE_EXCEEDED / RESOURCE_EXHAUSTED, within the deadline
  lost            anything else: hung past the deadline, another status, a wrong answer
  answered twice  requests that got two different answers (each answered request is asked
                  again with its request_id, after the fault: the answer must be the same)
  ran twice       jobs the engine finished more than once (worker execution logs): wasted
                  work, not a wrong answer (the first stored result answers every caller)

    python -m bench.chaos                 # every scenario
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
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from rich.table import Table
from rrm.v1 import reward_pb2 as pb
from rrm.v1 import reward_pb2_grpc as pb_grpc

from bench import procs
from bench.chaos_worker import executions
from bench.common import OUT_DIR, console, md_table, save_json
from tests.support.redis_server import RedisServer

LONG, SHORT = "a long and detailed answer to the question", "short"
CLEAN = {  # a definite status with a reason, in time (ABORTED: the judgment itself failed)
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ABORTED,
}
SLACK_S = 2.0  # a call may end this long after its deadline and still count as "not hung"


@dataclass
class Call:
    index: int
    gateway: str
    code: grpc.StatusCode
    winner: int
    p_a: float
    elapsed_s: float
    timeout_s: float
    retry_delay_s: float | None = None
    attempts: int = 1
    details: str = ""

    @property
    def right(self) -> bool:
        return self.code is grpc.StatusCode.OK and self.winner == expected(self.index)

    @property
    def clean(self) -> bool:
        return self.code in CLEAN and self.elapsed_s <= self.timeout_s + SLACK_S


@dataclass
class Row:
    scenario: str
    sent: int = 0
    answered: int = 0
    failed_cleanly: int = 0
    lost: int = 0
    executed_twice: int = 0
    different_answer: int = 0
    answered_on_retry: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def answered_twice(self) -> int:
        return self.different_answer


def expected(i: int) -> int:
    return pb.WINNER_A if i % 2 == 0 else pb.WINNER_B


def request(i: int, tag: str) -> pb.CompareRequest:
    a, b = (LONG, SHORT) if i % 2 == 0 else (SHORT, LONG)
    return pb.CompareRequest(
        request_id=f"{tag}-{i}",
        query=f"{tag} question {i}?",
        response_a=a,
        response_b=b,
        options=pb.JudgeOptions(votes=1, order=pb.ORDER_AS_GIVEN),
    )


def retry_delay(err: grpc.aio.AioRpcError) -> float | None:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return info.retry_delay.ToMilliseconds() / 1000
    return None


class Rig:
    """One scenario's Redis, worker and gateway processes, and channels to the gateways."""

    def __init__(self, root: Path, *, aof: bool = False) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="chaos-", dir=root))
        self.redis = RedisServer(self.dir / "redis", appendonly=aof).start()
        self.workers: dict[str, procs.Proc] = {}
        self.gateways: dict[str, procs.Proc] = {}
        self.stubs: dict[str, pb_grpc.RewardServiceStub] = {}
        self.channels: list[grpc.aio.Channel] = []
        self.tag = uuid.uuid4().hex[:8]
        self.warm: Counter[str] = Counter()  # executions before the load (gateway warm-ups)

    def env(self, **extra: str) -> dict[str, str]:
        return {"RRM_QUEUE__VISIBILITY_TIMEOUT_S": "2", "RRM_LOG_LEVEL": "WARNING", **extra}

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
        self.redis.kill()

    def executions(self) -> list[str]:
        return executions(self.dir)


def _wait_line(proc: procs.Proc, word: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while word not in proc.log_path.read_text(errors="replace"):
        if proc.process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{proc.name} did not start:\n{proc.tail()}")
        time.sleep(0.05)


async def call(
    stub: pb_grpc.RewardServiceStub,
    gateway: str,
    i: int,
    tag: str,
    timeout_s: float,
    *,
    honour_retry_info: bool = False,
) -> Call:
    started = time.monotonic()
    attempts, delay = 0, None
    while True:
        attempts += 1
        remaining = timeout_s - (time.monotonic() - started)
        try:
            reply = await stub.Compare(request(i, tag), timeout=max(remaining, 0.01))
            return Call(
                i,
                gateway,
                grpc.StatusCode.OK,
                reply.winner,
                reply.p_a,
                time.monotonic() - started,
                timeout_s,
                delay,
                attempts,
            )
        except grpc.aio.AioRpcError as err:
            code = err.code()
            if code is grpc.StatusCode.RESOURCE_EXHAUSTED:
                delay = retry_delay(err)
                if honour_retry_info and delay is not None and remaining > delay:
                    await asyncio.sleep(delay)
                    continue
            elapsed = time.monotonic() - started
            return Call(
                i, gateway, code, 0, 0.0, elapsed, timeout_s, delay, attempts, err.details() or ""
            )


async def load(
    rig: Rig,
    n: int,
    timeout_s: float,
    fault: Callable[[], Awaitable[None]] | None,
    *,
    at: float = 0.25,
    honour_retry_info: bool = False,
) -> list[Call]:
    """n concurrent calls spread over the gateways; `fault` runs once `at` of them executed."""
    names = list(rig.stubs)
    before = len(rig.executions())
    tasks = [
        asyncio.create_task(
            call(
                rig.stubs[names[i % len(names)]],
                names[i % len(names)],
                i,
                rig.tag,
                timeout_s,
                honour_retry_info=honour_retry_info,
            )
        )
        for i in range(n)
    ]
    if fault is not None:
        while len(rig.executions()) - before < n * at:
            if all(t.done() for t in tasks):
                raise RuntimeError("the load finished before the fault could be injected")
            await asyncio.sleep(0.02)
        await fault()
    return list(await asyncio.gather(*tasks))


async def reask(rig: Rig, calls: list[Call], gateway: str, row: Row) -> None:
    """Every answered request again, same request_id: stored answer, no new execution."""
    before = Counter(rig.executions())
    stub = rig.stubs[gateway]
    answered = [c for c in calls if c.code is grpc.StatusCode.OK]
    again = await asyncio.gather(*(call(stub, gateway, c.index, rig.tag, 30) for c in answered))
    row.different_answer += sum(
        1 for c, d in zip(answered, again, strict=True) if (c.winner, c.p_a) != (d.winner, d.p_a)
    )
    new = sum((Counter(rig.executions()) - before).values())
    row.notes.append(f"re-asked {len(answered)}: {new} new executions")


def tally(row: Row, calls: list[Call], rig: Rig) -> Row:
    row.sent = len(calls)
    row.answered += sum(c.right for c in calls)
    row.failed_cleanly += sum(c.clean for c in calls)
    row.lost += sum(not c.right and not c.clean for c in calls)
    runs = Counter(rig.executions()) - rig.warm
    row.executed_twice = sum(1 for count in runs.values() if count > 1)
    codes = Counter(c.code.name for c in calls)
    row.notes.insert(0, ", ".join(f"{k} {v}" for k, v in sorted(codes.items())))
    aborted = {c.details for c in calls if c.code is grpc.StatusCode.ABORTED}
    if aborted:
        row.notes.insert(1, "ABORTED: " + " | ".join(sorted(aborted))[:160])
    return row


# ---- scenarios ----


async def worker_kill(rig: Rig, n: int) -> Row:
    row = Row("kill -9 a worker (visibility timeout 2 s)")

    async def fault() -> None:
        rig.workers["w1"].process.kill()

    calls = await load(rig, n, 30, fault)
    await reask(rig, calls, "g2", row)
    return tally(row, calls, rig)


async def gateway_kill(rig: Rig, n: int) -> Row:
    row = Row("kill -9 a gateway (its clients retry on the other)")

    async def fault() -> None:
        rig.gateways["g1"].process.kill()

    calls = await load(rig, n, 30, fault)
    by_gw = {g: Counter(c.code.name for c in calls if c.gateway == g) for g in ("g1", "g2")}
    row.notes.append(f"g1 clients: {dict(by_gw['g1'])}; g2 clients: {dict(by_gw['g2'])}")
    failed = [c for c in calls if c.code is not grpc.StatusCode.OK]
    retried = await asyncio.gather(
        *(call(rig.stubs["g2"], "g2", c.index, rig.tag, 30) for c in failed)
    )
    row.answered_on_retry = sum(c.right for c in retried)
    row.lost += sum(not c.right for c in retried)  # a clean failure that never got answered
    await reask(rig, [c for c in calls if c.right] + [c for c in retried if c.right], "g2", row)
    return tally(row, calls, rig)


def redis_restart(crash: bool) -> Callable[[Rig, int], Awaitable[Row]]:
    async def scenario(rig: Rig, n: int) -> Row:
        what = "kill -9 + start" if crash else "SHUTDOWN + start"
        row = Row(f"restart Redis, AOF everysec ({what})")

        async def fault() -> None:
            await asyncio.to_thread(rig.redis.restart, crash=crash)

        calls = await load(rig, n, 15, fault)
        await reask(rig, calls, "g2", row)
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
    await reask(rig, calls, "g2", row)
    return tally(row, calls, rig)


def slow_judgment(latency_s: float) -> Callable[[Rig, int], Awaitable[Row]]:
    async def scenario(rig: Rig, n: int) -> Row:
        row = Row(f"every judgment ({latency_s:g} s) outlasts the visibility timeout (2 s)")
        calls = await load(rig, min(n, 8), 30, None)  # free slots: reclaims start at once
        await asyncio.sleep(latency_s + 2.0)  # let the redeliveries run out
        await reask(rig, calls, "g2", row)
        return tally(row, calls, rig)

    return scenario


def queue_full(retry: bool) -> Callable[[Rig, int], Awaitable[Row]]:
    async def scenario(rig: Rig, n: int) -> Row:
        label = "clients wait the RetryInfo delay, retry" if retry else "no client retry"
        row = Row(f"fill the queue (limit 50, 16 judgments/s; {label})")
        calls = await load(rig, n, 120 if retry else 30, None, honour_retry_info=retry)
        exhausted = [c for c in calls if c.retry_delay_s is not None]
        row.notes.append(
            f"{len(exhausted)} calls saw RESOURCE_EXHAUSTED, all with RetryInfo "
            f"({min((c.retry_delay_s or 0) for c in exhausted) if exhausted else 0:.1f} s)"
            if all(c.retry_delay_s is not None for c in exhausted)
            else "RESOURCE_EXHAUSTED without RetryInfo"
        )
        if retry:
            row.notes.append(f"max attempts per call {max(c.attempts for c in calls)}")
        await reask(rig, calls, "g1", row)
        return tally(row, calls, rig)

    return scenario


@dataclass
class Scenario:
    run: Callable[[Rig, int], Awaitable[Row]]
    aof: bool = False
    rig: dict[str, object] = field(default_factory=dict)


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
    "queue-full": Scenario(
        queue_full(retry=False),
        rig={
            "workers": 1,
            "gateways": 1,
            "latency_s": 0.5,
            "max_in_flight": 8,
            "RRM_GATEWAY__MAX_QUEUED_JOBS": "50",
        },
    ),
    "queue-full-retry": Scenario(
        queue_full(retry=True),
        rig={
            "workers": 1,
            "gateways": 1,
            "latency_s": 0.5,
            "max_in_flight": 8,
            "RRM_GATEWAY__MAX_QUEUED_JOBS": "50",
        },
    ),
}


async def run_one(name: str, root: Path, n: int) -> Row:
    sc = SCENARIOS[name]
    rig = await asyncio.to_thread(lambda: Rig(root, aof=sc.aof).start(**sc.rig))  # type: ignore[arg-type]
    try:
        await rig.open()
        rig.warm = Counter(rig.executions())
        return await sc.run(rig, n)
    finally:
        await rig.close()
        await asyncio.to_thread(rig.stop)


def render(rows: list[Row]) -> str:
    headers = [
        "scenario",
        "sent",
        "answered",
        "failed cleanly",
        "lost",
        "answered twice",
        "ran twice",
        "answered on retry",
        "notes",
    ]
    table = Table(title="Faults through Redis (scripted judge)", show_lines=True)
    for h in headers:
        table.add_column(h, justify="left" if h in ("scenario", "notes") else "right")
    cells = []
    for r in rows:
        row = [
            r.scenario,
            r.sent,
            r.answered,
            r.failed_cleanly,
            r.lost,
            r.answered_twice,
            r.executed_twice,
            r.answered_on_retry or "-",
            "; ".join(r.notes),
        ]
        table.add_row(*map(str, row))
        cells.append(row)
    console.print(table)
    return md_table(headers, cells)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--only", nargs="+", choices=list(SCENARIOS), default=list(SCENARIOS))
    ap.add_argument("-n", type=int, default=600, help="calls per scenario")
    ap.add_argument("--quick", action="store_true", help="120 calls per scenario")
    ap.add_argument("--out", type=Path, default=OUT_DIR / "chaos.json")
    args = ap.parse_args()
    n = 120 if args.quick else args.n
    rows = run(args.only, n)
    md = render(rows)
    save_json(args.out, {"n": n, "rows": rows})
    args.out.with_suffix(".md").write_text(md + "\n")
    bad = [r.scenario for r in rows if r.lost or r.answered_twice]
    console.print(
        f"[{'red' if bad else 'green'}]lost = 0 and answered twice = 0: "
        f"{'MISSED in ' + '; '.join(bad) if bad else 'met in every row'}[/]"
    )


def run(names: list[str], n: int, root: Path | None = None) -> list[Row]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="rrm-chaos-") as tmp:
        for i, name in enumerate(names, 1):
            with console.status(f"[{i}/{len(names)}] {name}: {n} calls"):
                row = asyncio.run(run_one(name, root or Path(tmp), n))
            console.print(
                f"[{i}/{len(names)}] {row.scenario}: answered {row.answered}, failed cleanly "
                f"{row.failed_cleanly}, lost {row.lost}, answered twice {row.answered_twice}, "
                f"ran twice {row.executed_twice}"
            )
            rows.append(row)
    return rows


if __name__ == "__main__":
    main()

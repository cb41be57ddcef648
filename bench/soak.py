"""Soak: a bounded open-loop run at ~80% of measured capacity through Redis (one `rrm gateway`,
one `rrm worker` on the real engine, a redis-server started here), or through `rrm serve` alone
(--embedded: gateway, embedded queue and worker in one process). Samples the RSS of each process
tree and the latency per window, then checks for growth: the slope of a linear fit of RSS over
the second half must stay under --slope-limit MiB/min, and no call may fail.

    python -m bench.soak --minutes 10          # rate: 0.8 x capacity measured on the same pair
    python -m bench.soak --minutes 3 --rate 2.0
    python -m bench.soak --embedded --minutes 10 --result-ttl 120   # rrm serve's own process
    python -m bench.soak --scripted --minutes 0.25 --rate 40   # no engine: the plumbing only
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rrm.v1 import reward_pb2_grpc as pb_grpc

from bench import procs
from bench.common import (
    IMG_DIR,
    OUT_DIR,
    ForeignCpu,
    Latencies,
    RssSampler,
    bench_pairs,
    console,
    machine_facts,
    md_table,
    mib,
    save_json,
)
from bench.service_client import compare_all, compare_request

# Redis is sampled but not held to the slope limit: every answer is stored for result_ttl_s
# (1 h) for idempotent retries, so its memory grows by design until the first results expire.
CHECKED = ("gateway", "worker")
# Embedded: the service's own process (gateway, queue with its stored results, worker), not the
# vLLM engine processes below it.
CHECKED_EMBEDDED = ("serve/main",)


@dataclass
class Window:
    t_end_s: float
    sent: int = 0
    answered: int = 0
    errors: int = 0
    latencies: Latencies = field(default_factory=Latencies)


@dataclass
class SoakResult:
    rate: float
    minutes: float
    capacity: float = 0.0  # measured just before (0: the rate was given)
    sent: int = 0
    answered: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    windows: list[Window] = field(default_factory=list)
    rss: list[tuple[float, dict[str, int]]] = field(default_factory=list)
    foreign: list[tuple[float, float]] = field(default_factory=list)  # other programs' cores
    slopes_mib_per_min: dict[str, float] = field(default_factory=dict)
    p99_slope_s_per_min: float = 0.0
    passed: bool = False
    topology: str = "Redis"
    checked: tuple[str, ...] = CHECKED


async def drive(
    address: str,
    rate: float,
    seconds: float,
    window_s: float,
    budget: int,
    progress: Progress | None = None,
) -> tuple[list[Window], dict[str, int]]:
    """Calls started at a fixed rate, whatever the answers do; windows by start time."""
    pairs = bench_pairs(256)
    windows = [Window((k + 1) * window_s) for k in range(int(np.ceil(seconds / window_s)))]
    errors: dict[str, int] = {}
    tasks: set[asyncio.Task[None]] = set()
    finished: list[float] = []  # when each answer came
    task_id = progress.add_task("soak", total=seconds) if progress else None
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.RewardServiceStub(channel)

        async def one(i: int, w: Window) -> None:
            started = time.perf_counter()
            try:
                await stub.Compare(
                    compare_request(pairs[i % len(pairs)], budget, "soak"), timeout=300
                )
            except grpc.aio.AioRpcError as err:
                w.errors += 1
                errors[err.code().name] = errors.get(err.code().name, 0) + 1
                return
            w.answered += 1
            w.latencies.add(time.perf_counter() - started)
            finished.append(time.perf_counter())

        t0 = time.perf_counter()
        launched = shown = 0
        while (now := time.perf_counter() - t0) < seconds:
            while launched < int(now * rate) + 1:
                w = windows[min(int(now // window_s), len(windows) - 1)]
                w.sent += 1
                task = asyncio.create_task(one(launched, w))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                launched += 1
            if progress is not None and task_id is not None:
                progress.update(task_id, completed=now, description=f"soak: {len(tasks)} in flight")
            if int(now // window_s) > shown and not console.is_terminal:  # progress in logs
                w = windows[shown]
                recent = sum(1 for t in finished if t >= t0 + w.t_end_s - window_s)
                console.print(
                    f"{w.t_end_s:.0f} s: sent {w.sent} in the window, answered "
                    f"{recent / window_s:.2f}/s, errors {sum(errors.values())}, "
                    f"{len(tasks)} in flight"
                )
                shown += 1
            await asyncio.sleep(min(0.05, 1 / rate))
        await asyncio.gather(*tasks)
    return windows, errors


def slope_second_half(ts: list[float], ys: list[float]) -> float:
    """Slope (per minute) of a least-squares line through the second half of the samples."""
    half = [(t, y) for t, y in zip(ts, ys, strict=True) if t >= ts[-1] / 2]
    if len(half) < 3:
        return float("nan")
    t, y = np.array(half).T
    return float(np.polyfit(t / 60, y, 1)[0])


def analyse(res: SoakResult, slope_limit: float) -> None:
    ts = [t for t, _ in res.rss]
    for name in res.rss[0][1]:
        ys = [mib(sample.get(name, 0)) for _, sample in res.rss]
        res.slopes_mib_per_min[name] = slope_second_half(ts, ys)
    full = [w for w in res.windows if w.latencies.seconds]
    if len(full) >= 3:
        res.p99_slope_s_per_min = slope_second_half(
            [w.t_end_s for w in full], [w.latencies.p99 for w in full]
        )
    res.sent = sum(w.sent for w in res.windows)
    res.answered = sum(w.answered for w in res.windows)
    res.passed = (
        not res.errors
        and res.answered == res.sent
        and all(s < slope_limit for n, s in res.slopes_mib_per_min.items() if n in res.checked)
    )


def plot(res: SoakResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(10, 9), sharex=True)
    ts = [t / 60 for t, _ in res.rss]
    for name in res.rss[0][1]:
        first = mib(res.rss[0][1][name])
        ax1.plot(
            ts,
            [mib(s.get(name, 0)) - first for _, s in res.rss],
            label=f"{name} (from {first:,.0f} MiB; 2nd half {res.slopes_mib_per_min[name]:+.2f} "
            "MiB/min)",
            linestyle=":" if "/" in name else "-",
        )
    ax1.set_ylabel("RSS growth since start, MiB")
    ax1.legend(fontsize=8)
    cap = f" (0.8 x capacity {res.capacity:.2f}/s)" if res.capacity else ""
    ax1.set_title(
        f"Soak: {res.rate:.2f} judgments/s offered{cap}, {res.minutes:g} min, {res.topology}"
    )
    wt = [w.t_end_s / 60 for w in res.windows]
    ax2.plot(wt, [w.latencies.p50 for w in res.windows], marker=".", label="p50")
    ax2.plot(wt, [w.latencies.p99 for w in res.windows], marker=".", label="p99")
    ax2.set_ylabel("latency s (by window)")
    ax2.legend(fontsize=8)
    width = res.windows[0].t_end_s if res.windows else 1
    ax3.plot(wt, [w.sent / width for w in res.windows], label="offered /s")
    ax3.plot(wt, [w.answered / width for w in res.windows], label="answered /s")
    ax3.plot(wt, [w.errors for w in res.windows], label="errors", color="red")
    if res.foreign:
        ax3.plot(
            [t / 60 for t, _ in res.foreign],
            [c for _, c in res.foreign],
            color="grey",
            linewidth=0.8,
            label="other programs' CPU (cores)",
        )
    ax3.set_xlabel("minutes")
    ax3.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def report(res: SoakResult, slope_limit: float) -> str:
    headers = ["window end (s)", "sent", "answered", "errors", "p50 s", "p99 s"]
    rows = [
        [
            f"{w.t_end_s:.0f}",
            w.sent,
            w.answered,
            w.errors,
            f"{w.latencies.p50:.1f}",
            f"{w.latencies.p99:.1f}",
        ]
        for w in res.windows
    ]
    table = Table(title="Soak windows (by call start)")
    for h in headers:
        table.add_column(h, justify="right")
    for r in rows:
        table.add_row(*map(str, r))
    console.print(table)
    peaks = {n: max(mib(s.get(n, 0)) for _, s in res.rss) for n in res.rss[0][1]}
    summary = md_table(
        ["process", "peak RSS MiB", "RSS slope, 2nd half (MiB/min)", f"< {slope_limit}"],
        [
            [
                n,
                f"{peaks[n]:,.0f}",
                f"{s:+.3f}",
                ("yes" if s < slope_limit else "NO") if n in res.checked else "not checked",
            ]
            for n, s in res.slopes_mib_per_min.items()
        ],
    )
    console.print(summary)
    if res.foreign:
        mean = sum(c for _, c in res.foreign) / len(res.foreign)
        console.print(f"other programs used {mean:.2f} cores on average meanwhile")
    verdict = "PASS" if res.passed else "FAIL"
    console.print(
        f"{verdict}: sent {res.sent}, answered {res.answered}, errors {res.errors or 0}, "
        f"p99 slope 2nd half {res.p99_slope_s_per_min:+.2f} s/min"
    )
    return summary + "\n\n" + md_table(headers, rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=0.0, help="judgments/s (0: --load x capacity)")
    ap.add_argument("--load", type=float, default=0.8, help="of the capacity measured first")
    ap.add_argument("--capacity-s", type=float, default=120.0, help="closed loop measuring it")
    ap.add_argument("--budget", type=int, default=128)
    ap.add_argument("--window", type=float, default=30.0, help="latency window, s")
    ap.add_argument("--sample", type=float, default=5.0, help="RSS sample interval, s")
    ap.add_argument("--slope-limit", type=float, default=2.0, help="MiB/min, per process")
    ap.add_argument("--scripted", action="store_true", help="ScriptedRunner worker, no engine")
    ap.add_argument("--embedded", action="store_true", help="rrm serve alone, no Redis")
    ap.add_argument(
        "--result-ttl", type=int, default=0, help="stored results' TTL, s (0: the default 1 h)"
    )
    ap.add_argument("--warm-pairs", type=int, default=256, help="warm-up burst (fills KV cache)")
    ap.add_argument("--out", type=Path, default=OUT_DIR / "soak.json")
    ap.add_argument("--chart", type=Path, default=IMG_DIR / "bench-soak.png")
    args = ap.parse_args()
    if not args.rate and args.scripted:
        raise SystemExit("--scripted needs --rate")
    if args.scripted and args.embedded:
        raise SystemExit("--embedded runs the real engine in rrm serve: drop --scripted")
    warm = 0 if args.scripted else args.warm_pairs
    load = Load(args.rate, args.load, seconds=args.capacity_s)
    env = {"RRM_QUEUE__RESULT_TTL_S": str(args.result_ttl)} if args.result_ttl else {}
    run_soak = run_embedded if args.embedded else run
    res = run_soak(
        load, args.minutes, args.window, args.sample, args.budget, args.scripted, None, warm, env
    )
    analyse(res, args.slope_limit)
    md = report(res, args.slope_limit)
    plot(res, args.chart)
    save_json(args.out, {"args": vars(args), "machine": machine_facts(), "result": res})
    args.out.with_suffix(".md").write_text(md + "\n")
    console.print(f"chart: {args.chart}; results: {args.out}")
    if not res.passed:
        raise SystemExit(1)


@dataclass(frozen=True)
class Load:
    """A fixed rate, or `fraction` of the sustained capacity measured on the very gateway +
    worker under test (after the warm-up), just before the soak starts."""

    rate: float = 0.0
    fraction: float = 0.8
    callers: int = 64  # the worker's max_in_flight: the engine's batch is full
    seconds: float = 120.0
    ramp_s: float = 30.0


async def closed_loop(
    address: str, callers: int, seconds: float, ramp_s: float, budget: int
) -> float:
    """Sustained judgments/s: `callers` each send their next call when the last one returns,
    counted after `ramp_s`. (A burst of calls at once overstates what a steady stream gets:
    it prefills everything in big batches first.)"""
    pairs = bench_pairs(256)
    done: list[float] = []
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.RewardServiceStub(channel)
        t0 = time.perf_counter()

        async def caller(k: int) -> None:
            i = k
            while time.perf_counter() - t0 < ramp_s + seconds:
                await stub.Compare(
                    compare_request(pairs[i % len(pairs)], budget, "cap"), timeout=600
                )
                done.append(time.perf_counter() - t0)
                i += callers

        await asyncio.gather(*(caller(k) for k in range(callers)))
    counted = [t for t in done if ramp_s <= t <= ramp_s + seconds]
    return len(counted) / seconds


def measure_capacity(address: str, load: Load, budget: int) -> float:
    what = (
        f"{load.callers} callers in a closed loop for {load.seconds:g} s (+ {load.ramp_s:g} s ramp)"
    )
    with console.status(f"capacity: {what}"):
        capacity = asyncio.run(
            closed_loop(address, load.callers, load.seconds, load.ramp_s, budget)
        )
    console.print(
        f"capacity {capacity:.2f} judgments/s ({what}) -> offered {load.fraction * capacity:.2f}/s"
    )
    return capacity


def run(
    load: Load,
    minutes: float,
    window_s: float,
    sample_s: float,
    budget: int,
    scripted: bool,
    log_dir: Path | None = None,
    warm_pairs: int = 0,
    env: dict[str, str] | None = None,
) -> SoakResult:
    from tests.support.redis_server import RedisServer

    with tempfile.TemporaryDirectory(prefix="rrm-soak-") as tmp:
        logs = log_dir or Path(tmp)
        redis = RedisServer(logs / "redis").start()
        try:
            if scripted:
                args = [
                    "-m",
                    "bench.chaos_worker",
                    "--name",
                    "w1",
                    "--dir",
                    str(logs),
                    "--latency",
                    "0.05",
                    "--max-in-flight",
                    "64",
                ]
                worker = procs.spawn("worker", args, logs, env=procs.rrm_env(redis.url))
            else:
                worker = procs.rrm_worker(logs, redis.url, env=env)
            gateway = procs.rrm_gateway(logs, redis.url, env=env)
            with procs.running(worker, gateway):
                with console.status("starting gateway + worker (engine load)"):
                    procs.wait_grpc(gateway)
                pids = {"gateway": gateway.pid, "worker": worker.pid, "redis": redis.pid or 0}
                res = measure(
                    gateway.port, pids, load, minutes, window_s, sample_s, budget, warm_pairs
                )
        finally:
            redis.kill()
    return res


def run_embedded(
    load: Load,
    minutes: float,
    window_s: float,
    sample_s: float,
    budget: int,
    scripted: bool = False,
    log_dir: Path | None = None,
    warm_pairs: int = 0,
    env: dict[str, str] | None = None,
) -> SoakResult:
    """The same soak against `rrm serve`: what it shows is whether the service's own process
    (stored results, dead letters, waiters of the embedded queue) stays flat."""
    with tempfile.TemporaryDirectory(prefix="rrm-soak-") as tmp:
        serve = procs.rrm_serve(log_dir or Path(tmp), env)
        with procs.running(serve):
            with console.status("starting rrm serve (engine load)"):
                procs.wait_grpc(serve)
            res = measure(
                serve.port,
                {"serve": serve.pid},
                load,
                minutes,
                window_s,
                sample_s,
                budget,
                warm_pairs,
            )
    res.topology, res.checked = "rrm serve (embedded)", CHECKED_EMBEDDED
    return res


def measure(
    port: int,
    pids: dict[str, int],
    load: Load,
    minutes: float,
    window_s: float,
    sample_s: float,
    budget: int,
    warm_pairs: int,
) -> SoakResult:
    address = f"127.0.0.1:{port}"
    if warm_pairs:
        # vLLM commits its KV cache's pages on first use: touch all of them first, so the RSS
        # series shows growth, not the cache filling up.
        with console.status(f"warm-up: {warm_pairs} judgments at once (budget 16)"):
            asyncio.run(compare_all(address, bench_pairs(warm_pairs), 16))
    rate, capacity = load.rate, 0.0
    if not rate:
        capacity = measure_capacity(address, load, budget)
        rate = load.fraction * capacity
    res = SoakResult(rate, minutes, capacity=capacity)
    columns = [TextColumn("{task.description}"), BarColumn(), TimeRemainingColumn()]
    with (
        RssSampler(pids, sample_s, detail=True) as rss,
        ForeignCpu(tuple(pids.values()), sample_s) as foreign,
        Progress(*columns, console=console) as bar,
    ):
        windows, errors = asyncio.run(drive(address, rate, minutes * 60, window_s, budget, bar))
        rss.sample()
    res.windows, res.errors, res.rss = windows, errors, rss.series
    res.foreign = foreign.series
    return res


if __name__ == "__main__":
    main()

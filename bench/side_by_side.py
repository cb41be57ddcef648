"""Throughput and latency, side by side, one run: the same judge, the same real pairs and the same
sampling; the judgment (reasoning + 1-token verdict read, one call, or text only) as named, through

  text     (0) vllm.LLM.generate, the status quo one-call judge: verdict parsed, no probability
  direct   (1) vllm.LLM.generate on all prompts at once: the physical limit
  direct1  (1') the same with the service's one-call judgment (reasoning with top-20 logprobs,
           a read only for forced verdicts)
  http     (2) OpenRLHF-style HTTP reward server, one judgment per request, OpenRLHF's client
  script   (3) judge script: 16 threads of /v1/chat/completions to a vLLM api_server
  script1  (3') the same, one chat completion per pair, verdict parsed, no probability
  serve    (4a) `rrm serve` (embedded queue), concurrent Compare calls
  batch    (4a) `rrm serve`, the same pairs in one CompareBatch call
  redis    (4b) `rrm gateway` + `rrm worker` on a Redis started here, concurrent Compare calls

one engine at a time, each freshly started, warmed with an unmeasured burst of the other pairs
(short budget), then measured on pairs it has never seen. Also: the peak RSS (process +
children) of every server process, the CPU each of their processes used during the burst, and
the CPU other programs used meanwhile (a shared machine's noise), and engine requests per
judgment (`rrm serve`: from its rrm_engine_requests_total). The prefix-cache probe is
`bench.prefix_cache` (on a fresh service: these pairs are all in the cache by now).

    python -m bench.side_by_side --pairs 128 --budget 128
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.table import Table

from bench import procs
from bench.common import (
    ENGINE,
    IMG_DIR,
    OUT_DIR,
    ForeignCpu,
    RssSampler,
    TreeCpu,
    console,
    machine_facts,
    md_table,
    measured_pairs,
    mib,
    model_dir,
    save_json,
    warm_pairs,
)
from bench.service_client import compare_all, compare_batch
from policy_adapter.hh_rlhf import PreferencePair

PATHS = ("text", "direct", "direct1", "http", "script", "script1", "serve", "batch", "redis")
LABELS = {
    "text": "(0) vllm.LLM.generate, verdict parsed, no p",
    "direct": "(1) vllm.LLM.generate, all at once",
    "direct1": "(1') vllm.LLM.generate, one call",
    "script1": "(3') judge script, verdict parsed, no p",
    "http": "(2) HTTP RM server (OpenRLHF pattern)",
    "script": "(3) judge script -> vLLM api_server",
    "serve": "(4a) rrm serve, concurrent Compare",
    "batch": "(4a) rrm serve, one CompareBatch",
    "redis": "(4b) rrm gateway + worker + Redis",
}
SHORT = {
    "text": "(0) text only",
    "direct": "(1) direct",
    "direct1": "(1') one call",
    "script1": "(3') script, text",
    "http": "(2) HTTP RM",
    "script": "(3) script",
    "serve": "(4a) Compare",
    "batch": "(4a) CompareBatch",
    "redis": "(4b) Redis",
}
Burst = Callable[[list[PreferencePair], int], dict[str, Any]]


def measure(
    burst: Burst, args: argparse.Namespace, tree: dict[str, int], extra_pids: tuple[int, ...] = ()
) -> dict:
    """An unmeasured warm-up burst (other pairs, short budget), then the measured burst; the
    CPU each server process used meanwhile, and what other programs used."""
    if args.warm_budget:
        with console.status("  warm-up burst"):
            burst(warm_pairs(args.pairs), args.warm_budget)
    with (
        ForeignCpu(extra_pids) as foreign,
        TreeCpu({**tree, "client": os.getpid()}) as cpu,
        console.status("  measured burst"),
    ):
        row = burst(measured_pairs(args.pairs), args.budget)
    return row | {"foreign_cores": foreign.cores, "cpu_cores": cpu.cores()}


def _brief(r: dict[str, Any]) -> str:
    return (
        f"{r['judgments_per_s']:.2f} judgments/s, p50 {r['p50_s']:.1f} s, p99 {r['p99_s']:.1f} s, "
        f"other processes {r.get('foreign_cores', 0):.2f} cores"
    )


def run_direct(args: argparse.Namespace, logs: Path, judging: str = "two-call") -> dict[str, Any]:
    flags = ["--pairs", str(args.pairs), "--budget", str(args.budget)]
    flags += ["--warm-budget", str(args.warm_budget), "--judging", judging]
    proc = procs.spawn("direct", ["-m", "bench.baselines.direct", *flags], logs)
    with RssSampler({"process": proc.pid}) as rss:
        proc.process.wait()
    if proc.process.returncode != 0:
        raise RuntimeError(f"direct failed:\n{proc.tail()}")
    line = next(ln for ln in proc.log_path.read_text().splitlines() if ln.startswith("RESULT "))
    row = json.loads(line.removeprefix("RESULT "))
    return row | {"peak_rss_mib": {"process": mib(rss.peak["process"])}}


def run_http(args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    from bench.baselines import openrlhf_client

    proc = procs.http_rm(logs, args.budget)
    url = f"http://127.0.0.1:{proc.port}/get_reward"

    def burst(pairs: list[PreferencePair], budget: int) -> dict[str, Any]:
        if budget != args.budget:
            openrlhf_client.warm(url, pairs, budget)
            return {}
        return openrlhf_client.burst(url, pairs)

    with procs.running(proc):
        procs.wait_http(f"http://127.0.0.1:{proc.port}/health", proc)
        with RssSampler({"server": proc.pid}) as rss:
            row = measure(burst, args, {"server": proc.pid})
    return row | {"peak_rss_mib": {"server": mib(rss.peak["server"])}}


def run_script(args: argparse.Namespace, logs: Path, read_verdict: bool = True) -> dict[str, Any]:
    from bench.baselines.judge_script import JudgeScript

    model = model_dir()
    proc = procs.api_server(logs, model)
    with procs.running(proc):
        procs.wait_http(f"http://127.0.0.1:{proc.port}/health", proc)
        url = f"http://127.0.0.1:{proc.port}/v1"
        script = JudgeScript(url, model, args.budget, args.threads, read_verdict)
        with RssSampler({"api_server": proc.pid}) as rss:
            row = measure(script.burst, args, {"api_server": proc.pid})
        script.close()
    peak = {"api_server": mib(rss.peak["api_server"])}
    return row | {"threads": args.threads, "peak_rss_mib": peak}


def _worker_env(args: argparse.Namespace) -> dict[str, str]:
    return {"RRM_WORKER__MAX_IN_FLIGHT": str(args.max_in_flight)} if args.max_in_flight else {}


def _compare(address: str) -> Burst:
    return lambda pairs, budget: asyncio.run(compare_all(address, pairs, budget)).as_row()


def engine_requests(metrics_url: str) -> dict[str, float]:
    """`rrm_engine_requests_total` by purpose, from a process's /metrics."""
    import httpx

    counts: dict[str, float] = {}
    for line in httpx.get(metrics_url, timeout=10).text.splitlines():
        if line.startswith("rrm_engine_requests_total{"):
            purpose = line.split('purpose="', 1)[1].split('"', 1)[0]
            counts[purpose] = float(line.rsplit(" ", 1)[1])
    return counts


def counting_requests(burst: Burst, metrics_url: str, budget: int) -> Burst:
    """The burst, plus the engine requests the worker made for the measured one."""

    def counted(pairs: list[PreferencePair], b: int) -> dict[str, Any]:
        before = engine_requests(metrics_url)
        row = burst(pairs, b)
        if b == budget:
            after = engine_requests(metrics_url)
            by_purpose = {k: v - before.get(k, 0.0) for k, v in after.items()}
            row |= {"engine_requests": sum(by_purpose.values()), "requests_by": by_purpose}
        return row

    return counted


def run_serve(args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    metrics_port = procs.free_port()
    env = _worker_env(args) | {"RRM_GATEWAY__METRICS_PORT": str(metrics_port)}
    proc = procs.rrm_serve(logs, env)
    metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    with procs.running(proc):
        procs.wait_grpc(proc)
        burst = counting_requests(_compare(f"127.0.0.1:{proc.port}"), metrics_url, args.budget)
        with RssSampler({"rrm serve": proc.pid}) as rss:
            row = measure(burst, args, {"rrm serve": proc.pid})
    return row | {"peak_rss_mib": {"rrm serve": mib(rss.peak["rrm serve"])}}


def run_batch(args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    proc = procs.rrm_serve(logs, _worker_env(args))
    address = f"127.0.0.1:{proc.port}"

    def burst(pairs: list[PreferencePair], budget: int) -> dict[str, Any]:
        return asyncio.run(compare_batch(address, pairs, budget)).as_row()

    with procs.running(proc):
        procs.wait_grpc(proc)
        with RssSampler({"rrm serve": proc.pid}) as rss:
            row = measure(burst, args, {"rrm serve": proc.pid})
    return row | {"peak_rss_mib": {"rrm serve": mib(rss.peak["rrm serve"])}}


def run_redis(args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    from tests.support.redis_server import RedisServer

    redis = RedisServer(logs / "redis").start()
    try:
        worker = procs.rrm_worker(logs, redis.url, env=_worker_env(args))
        gateway = procs.rrm_gateway(logs, redis.url)
        address = f"127.0.0.1:{gateway.port}"
        with procs.running(worker, gateway):
            procs.wait_grpc(gateway)
            pids = {"gateway": gateway.pid, "worker": worker.pid, "redis": redis.pid or 0}
            with RssSampler(pids) as rss:
                row = measure(_compare(address), args, pids, (redis.pid or 0,))
    finally:
        redis.kill()
    return row | {"peak_rss_mib": {k: mib(v) for k, v in rss.peak.items()}}


RUNNERS: dict[str, Callable[[argparse.Namespace, Path], dict[str, Any]]] = {
    "text": lambda args, logs: run_direct(args, logs, "text"),
    "direct": run_direct,
    "direct1": lambda args, logs: run_direct(args, logs, "one-call"),
    "script1": lambda args, logs: run_script(args, logs, read_verdict=False),
    "http": run_http,
    "script": run_script,
    "serve": run_serve,
    "batch": run_batch,
    "redis": run_redis,
}


def best_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The fastest of the repeats: on a shared machine noise only ever slows a run down."""
    return max(runs, key=lambda r: r["judgments_per_s"]) | {"repeats": runs}


def rows_of(results: dict[str, dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [(path, results[path]) for path in PATHS if path in results]


def report(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> str:
    base = results.get("direct", {}).get("judgments_per_s")
    text = results.get("text", {})
    headers = [
        "path",
        "judgments/s (range)",
        "x direct",
        "x (0) per judgment / per gen token",
        "engine req/judgment",
        "p50 s",
        "p99 s",
        "wall s",
        "gen tokens",
        "other load (cores)",
        "peak RSS MiB (tree)",
    ]
    table = Table(
        title=f"{args.pairs} judgments at once, budget {args.budget}, temperature 0.6; "
        f"{args.repeat} run(s) per path (best; range), each on a fresh engine after a warm-up burst"
    )
    for h in headers:
        table.add_column(h, justify="left" if h == "path" else "right")
    md_rows = []
    for path, r in rows_of(results):
        ratio = f"{r['judgments_per_s'] / base:.2f}" if base else "-"
        rss = ", ".join(f"{k} {v:,.0f}" for k, v in r.get("peak_rss_mib", {}).items())
        spread = [x["judgments_per_s"] for x in r.get("repeats", [])]
        rate = f"{r['judgments_per_s']:.2f}"
        if len(spread) > 1:
            rate += f" ({min(spread):.2f}-{max(spread):.2f})"
        cells = [
            LABELS[path],
            rate,
            ratio,
            _vs_text(r, text),
            f"{r['engine_requests'] / r['judgments']:.3f}" if "engine_requests" in r else "-",
            f"{r['p50_s']:.1f}",
            f"{r['p99_s']:.1f}",
            f"{r['seconds']:.1f}",
            str(r.get("gen_tokens", "-")),
            f"{r.get('foreign_cores', 0):.2f}",
            rss,
        ]
        table.add_row(*cells)
        md_rows.append(cells)
    console.print(table)
    md = md_table(headers, md_rows)
    return md


def _vs_text(r: dict[str, Any], text: dict[str, Any]) -> str:
    """Throughput against the one-call text-only judge: per judgment and per generated token
    (paths that stop at a natural verdict generate fewer tokens per judgment)."""
    if not text or not r.get("gen_tokens") or not text.get("gen_tokens"):
        return "-"
    per_judgment = r["judgments_per_s"] / text["judgments_per_s"]
    per_token = (r["gen_tokens"] / r["seconds"]) / (text["gen_tokens"] / text["seconds"])
    return f"{per_judgment:.2f} / {per_token:.2f}"


def chart(results: dict[str, dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = rows_of(results)
    names = [LABELS[p] for p, _ in rows]
    rates = [r["judgments_per_s"] for _, r in rows]
    base = results.get("direct", {}).get("judgments_per_s")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.8), gridspec_kw={"width_ratios": [3, 2]})
    bars = ax1.barh(names[::-1], rates[::-1], color="#4c72b0")
    for bar, rate in zip(bars, rates[::-1], strict=True):
        label = f"{rate:.2f}/s" + (f"  ({rate / base:.2f}x)" if base else "")
        ax1.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, " " + label, va="center")
    ax1.set_xlabel("judgments/s (higher is better)")
    ax1.set_xlim(0, max(rates) * 1.35)
    ax1.set_title("Throughput, same judge / pairs / sampling / work")
    lat = [(SHORT[p], r["p50_s"], r["p99_s"]) for p, r in rows if p != "direct"]
    y = range(len(lat))
    ax2.barh([i + 0.2 for i in y], [v[2] for v in lat][::-1], height=0.4, label="p99")
    ax2.barh([i - 0.2 for i in y], [v[1] for v in lat][::-1], height=0.4, label="p50")
    ax2.set_yticks(list(y), [v[0] for v in lat][::-1])
    ax2.set_xlabel("latency per judgment, s (all sent at once)")
    ax2.legend()
    ax2.set_title("Latency")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--pairs", type=int, default=128, help="judgments per burst (<= 128)")
    ap.add_argument("--budget", type=int, default=128, help="reasoning budget (tokens)")
    ap.add_argument("--warm-budget", type=int, default=16, help="warm-up burst budget (0: none)")
    ap.add_argument("--threads", type=int, default=16, help="judge-script threads")
    ap.add_argument("--paths", nargs="+", default=list(PATHS), choices=PATHS)
    ap.add_argument("--repeat", type=int, default=1, help="runs per path (best shown)")
    ap.add_argument("--max-in-flight", type=int, default=0, help="worker setting (0: default)")
    ap.add_argument("--out", type=Path, default=OUT_DIR / "side_by_side.json")
    ap.add_argument("--chart", type=Path, default=IMG_DIR / "bench-throughput.png")
    ap.add_argument("--from-json", type=Path, help="only render the table and chart of a run")
    args = ap.parse_args()
    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        for key in ("repeat", "pairs", "budget"):
            setattr(args, key, saved["args"][key])
        best = {p: best_run(r["repeats"]) for p, r in saved["results"].items()}
        args.from_json.with_suffix(".md").write_text(report(best, args) + "\n")
        chart(best, args.chart)
        return
    facts = machine_facts()
    console.print(facts)
    console.print(f"engine config (every path): {ENGINE}")
    runs: dict[str, list[dict[str, Any]]] = {p: [] for p in args.paths}
    results: dict[str, dict[str, Any]] = {}
    steps = [(k, p) for k in range(args.repeat) for p in args.paths]
    with tempfile.TemporaryDirectory(prefix="rrm-bench-") as tmp:
        for i, (k, path) in enumerate(steps, 1):
            started = time.monotonic()
            console.print(f"[{i}/{len(steps)}] {LABELS[path]} (repeat {k + 1}): start engine")
            runs[path].append(RUNNERS[path](args, Path(tmp)))
            console.print(
                f"[{i}/{len(steps)}] {path}: {_brief(runs[path][-1])} "
                f"(phase {time.monotonic() - started:.0f} s)"
            )
            results = {p: best_run(r) for p, r in runs.items() if r}
            save_json(args.out, {"args": vars(args), "machine": facts, "results": results})
    md = report(results, args)
    args.out.with_suffix(".md").write_text(md + "\n")
    if len(results) > 1:
        chart(results, args.chart)
        console.print(f"chart: {args.chart}")
    console.print(f"results: {args.out}")


if __name__ == "__main__":
    main()

"""Shared by the benchmarks: the judged pairs, the one engine configuration every path uses,
subprocess environment, latency statistics, process-tree memory sampling, machine facts."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil
from rich.console import Console

from policy_adapter.hh_rlhf import PreferencePair, load_pairs
from reward_service.domain import Pair, Turn
from reward_service.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
PAIRS_FILE = ROOT / "examples" / "hh-rlhf-harmless-256.jsonl"
OUT_DIR = ROOT / ".cache" / "bench"
IMG_DIR = ROOT / "docs" / "img"
console = Console(width=150)


@dataclass(frozen=True)
class EngineConfig:
    """One vLLM configuration for every path, so only the serving architecture differs.

    vLLM's own defaults differ by entry point on CPU (LLM: 4096 batched tokens / 256 seqs;
    api_server: 2048 / 128; AsyncLLM: 2048 / 256): every path gets these values explicitly.
    """

    max_model_len: int = 2048
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 4096
    kvcache_gib: int = 2
    max_logprobs: int = 20

    def rrm_env(self) -> dict[str, str]:
        """The same configuration as `rrm serve` / `rrm worker` settings."""
        return {
            "RRM_ENGINE__MAX_MODEL_LEN": str(self.max_model_len),
            "RRM_ENGINE__MAX_NUM_SEQS": str(self.max_num_seqs),
            "RRM_ENGINE__MAX_NUM_BATCHED_TOKENS": str(self.max_num_batched_tokens),
            "RRM_ENGINE__CPU_KVCACHE_GIB": str(self.kvcache_gib),
        }

    def vllm_kwargs(self) -> dict[str, Any]:
        """For `vllm.LLM(...)` and `AsyncEngineArgs(...)`."""
        return {
            "max_model_len": self.max_model_len,
            "max_num_seqs": self.max_num_seqs,
            "max_num_batched_tokens": self.max_num_batched_tokens,
            "max_logprobs": self.max_logprobs,
            "enforce_eager": True,
            "enable_prefix_caching": True,
        }

    def api_server_flags(self) -> list[str]:
        return [
            "--enforce-eager",
            "--enable-prefix-caching",
            *("--max-model-len", str(self.max_model_len)),
            *("--max-num-seqs", str(self.max_num_seqs)),
            *("--max-num-batched-tokens", str(self.max_num_batched_tokens)),
            *("--max-logprobs", str(self.max_logprobs)),
        ]


ENGINE = EngineConfig()


def model_dir() -> str:
    return str(Path(Settings().model_path()).resolve())


def bench_pairs(n: int, offset: int = 0) -> list[PreferencePair]:
    """`n` real HH-RLHF pairs from `offset` on (the 256 of the example file, cycled)."""
    pairs = list(load_pairs(PAIRS_FILE))
    return [pairs[(offset + i) % len(pairs)] for i in range(n)]


def measured_pairs(n: int) -> list[PreferencePair]:
    """The measured burst: the first n pairs of the file, on an engine that has not seen them."""
    return bench_pairs(n, 0)


def warm_pairs(n: int) -> list[PreferencePair]:
    """The warm-up burst (same size, short budget): the other pairs of the file, so the measured
    prompts are never in the prefix cache beforehand (only the judge's shared system prompt)."""
    return bench_pairs(n, n)


def to_pair(p: PreferencePair) -> Pair:
    """Chosen shown as Assistant 1, rejected as Assistant 2 (every path: order as given)."""
    return Pair(p.query, p.chosen, p.rejected, tuple(Turn(r, c) for r, c in p.history))


def child_env(**extra: str) -> dict[str, str]:
    """Environment for engine subprocesses: the CPU vLLM settings, offline, project folders."""
    cache = ROOT / ".cache"
    env = dict(os.environ)
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", str(ENGINE.kvcache_gib))
    env.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
    env.setdefault("VLLM_CACHE_ROOT", str(cache / "vllm"))
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("RRM_CACHE_DIR", str(cache))
    (cache / "tmp").mkdir(parents=True, exist_ok=True)
    env.setdefault("TMPDIR", str(cache / "tmp"))
    env.setdefault("VLLM_RPC_BASE_PATH", str(cache / "tmp"))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    env.update(extra)
    return env


@dataclass
class Latencies:
    seconds: list[float] = field(default_factory=list)

    def add(self, s: float) -> None:
        self.seconds.append(s)

    def pct(self, q: float) -> float:
        xs = sorted(self.seconds)
        if not xs:
            return float("nan")
        return xs[min(len(xs) - 1, int(q * len(xs)))]

    @property
    def p50(self) -> float:
        return statistics.median(self.seconds) if self.seconds else float("nan")

    @property
    def p99(self) -> float:
        return self.pct(0.99)


def tree_rss_by_name(pid: int) -> dict[str, int]:
    """RSS of a process tree by process name (vLLM's "VLLM::Worker", "VLLM::EngineCore", ...)."""
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return {}
    out: dict[str, int] = {}
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            name = "main" if p.pid == pid else p.name()
            out[name] = out.get(name, 0) + p.memory_info().rss
    return out


def tree_rss(pid: int) -> int:
    """RSS of a process plus all its descendants (vLLM's engine core runs in a child), bytes.

    Shared pages (torch libraries) count once per process, as `ps` shows them.
    """
    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += p.memory_info().rss
    return total


class RssSampler:
    """Samples the tree RSS of named processes in a thread: peak and a time series."""

    def __init__(self, pids: dict[str, int], interval_s: float = 0.5, detail: bool = False) -> None:
        self.pids = dict(pids)
        self.interval_s = interval_s
        self.detail = detail  # also "<name>/<process name>" series within each tree
        self.peak = dict.fromkeys(pids, 0)
        self.series: list[tuple[float, dict[str, int]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._t0 = time.monotonic()

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def sample(self) -> dict[str, int]:
        now = {name: tree_rss(pid) for name, pid in self.pids.items()}
        if self.detail:
            for name, pid in self.pids.items():
                parts = tree_rss_by_name(pid)
                if len(parts) > 1:
                    now |= {f"{name}/{part}": rss for part, rss in parts.items()}
        for name, value in now.items():
            self.peak[name] = max(self.peak.get(name, 0), value)
        self.series.append((time.monotonic() - self._t0, now))
        return now

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval_s)


class ForeignCpu:
    """CPU used by processes outside this benchmark's tree while it measures (other sessions,
    builds, tests on a shared machine): average cores busy. Benchmarks on 2 cores are only
    comparable when this stays near 0."""

    def __init__(self, extra_pids: tuple[int, ...] = (), interval_s: float = 1.0) -> None:
        self.extra = set(extra_pids)
        self.interval_s = interval_s
        self.cpu_s = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._t0 = 0.0
        self.seconds = 0.0
        self.series: list[tuple[float, float]] = []  # (seconds since start, cores since last)

    @property
    def cores(self) -> float:
        return self.cpu_s / self.seconds if self.seconds else 0.0

    def __enter__(self) -> ForeignCpu:
        self._t0 = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.seconds = time.monotonic() - self._t0

    def _ours(self) -> set[int]:
        me = psutil.Process()
        pids = {me.pid, *self.extra}
        for pid in [*list(self.extra), me.pid]:
            with contextlib.suppress(psutil.NoSuchProcess):
                pids |= {c.pid for c in psutil.Process(pid).children(recursive=True)}
        return pids

    def _totals(self) -> dict[int, float]:
        out = {}
        for p in psutil.process_iter(["cpu_times"]):
            t = p.info["cpu_times"]
            if t is not None:
                out[p.pid] = t.user + t.system
        return out

    def _run(self) -> None:
        last, last_at = self._totals(), time.time()
        while not self._stop.wait(self.interval_s):
            now, ours = self._totals(), self._ours()
            used = 0.0
            for pid, total in now.items():
                if pid in ours:
                    continue
                if pid in last:
                    used += max(0.0, total - last[pid])
                else:
                    try:  # started since the last look: all of its time is new
                        if psutil.Process(pid).create_time() >= last_at:
                            used += total
                    except psutil.NoSuchProcess:
                        pass
            self.cpu_s += used
            at = time.time()
            self.series.append((time.monotonic() - self._t0, used / max(at - last_at, 1e-6)))
            last, last_at = now, at


class TreeCpu:
    """CPU seconds each process of the named trees used during a block, by process: where a
    2-core machine's CPU went (engine core vs. serving front ends)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = dict(pids)
        self.seconds: dict[str, float] = {}
        self._start: dict[int, tuple[str, float]] = {}
        self._t0 = 0.0
        self.wall_s = 0.0

    def _snapshot(self) -> dict[int, tuple[str, float]]:
        out = {}
        for root, pid in self.pids.items():
            try:
                top = psutil.Process(pid)
                procs = [top, *top.children(recursive=True)]
            except psutil.NoSuchProcess:
                continue
            for p in procs:
                if p.pid in out:  # claimed by an earlier tree (list the client last)
                    continue
                with contextlib.suppress(psutil.NoSuchProcess):
                    t = p.cpu_times()
                    label = root if p.pid == pid else f"{root}/{p.name()}"
                    out[p.pid] = (label, t.user + t.system)
        return out

    def __enter__(self) -> TreeCpu:
        self._start, self._t0 = self._snapshot(), time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall_s = time.monotonic() - self._t0
        for pid, (label, total) in self._snapshot().items():
            before = self._start.get(pid, (label, 0.0))[1]
            self.seconds[label] = self.seconds.get(label, 0.0) + total - before

    def cores(self) -> dict[str, float]:
        """Average cores busy per process label."""
        return {k: v / self.wall_s for k, v in self.seconds.items()} if self.wall_s else {}


def mib(n_bytes: float) -> float:
    return n_bytes / 2**20


def machine_facts() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for mod in ("vllm", "torch", "grpc", "redis"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:
            versions[mod] = "?"
    redis_server = subprocess.run(
        ["redis-server", "--version"], capture_output=True, text=True, check=False
    ).stdout.split()
    return {
        "cpu": f"{cpu}, {os.cpu_count()} cores",
        "memory": f"{psutil.virtual_memory().total / 2**30:.0f} GiB",
        "python": platform.python_version(),
        "vllm": versions["vllm"],
        "torch": versions["torch"],
        "grpcio": versions["grpc"],
        "redis-server": redis_server[2].removeprefix("v=") if len(redis_server) > 2 else "?",
        "when": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def command_line() -> str:
    return " ".join([Path(sys.executable).name, "-m", *sys.argv])


def save_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=_default))


def _default(o: Any) -> Any:
    if hasattr(o, "__dataclass_fields__"):
        return asdict(o)
    return str(o)


def md_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)

"""A worker process for fault injection: the real `Worker` and `RedisBroker` (built from `RRM_*`
settings exactly as `rrm worker` builds them), judging with the ScriptedRunner TEST DOUBLE (no
engine) after `--latency` seconds. Its verdict and p are drawn at random on every execution (no
seed), like a sampling judge: a job that ran twice and reached its caller twice shows up as two
different answers for one request id.

Every finished judgment appends its job id to `<dir>/executions-<name>.log` before the result is
stored, with one O_APPEND write: the count survives kill -9 of this process and restarts of Redis
(a counter kept in Redis would not survive an AOF crash-restart).

    RRM_QUEUE__KIND=redis RRM_QUEUE__REDIS_URL=redis://127.0.0.1:P/0 \\
        python -m bench.chaos_worker --name w1 --dir /tmp/x --latency 0.2
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from pathlib import Path

from reward_service.app import build_broker
from reward_service.domain import ParseStatus, Verdict, VoteResult, VoteTask
from reward_service.settings import Settings
from reward_service.testing.scripted_runner import ScriptedRunner
from reward_service.worker.worker import Worker


def random_verdict(task: VoteTask) -> VoteResult:
    """A TEST DOUBLE judge that samples: winner and p from os.urandom, different per execution."""
    p = int.from_bytes(os.urandom(4), "big") / 2**32
    return VoteResult(
        verdict=Verdict.FIRST if p >= 0.5 else Verdict.SECOND,
        p_first=p,
        status=ParseStatus.OK,
        reasoning_tokens=1,
        prompt_tokens=len(task.pair.first) + len(task.pair.second),
        completion_tokens=1,
    )


class CountingRunner(ScriptedRunner):
    def __init__(self, path: Path, *, latency_s: float) -> None:
        super().__init__(random_verdict, latency_s=latency_s)
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    async def run(
        self, task: VoteTask, request_id: str, verdict_by: float | None = None
    ) -> VoteResult:
        result = await super().run(task, request_id, verdict_by)
        self.calls.clear()  # keep no history in memory
        os.write(self.fd, f"{request_id}\n".encode())
        return result


def executions(directory: Path) -> list[str]:
    """Job ids of every finished judgment, all workers of a run."""
    out: list[str] = []
    for f in sorted(directory.glob("executions-*.log")):
        out += f.read_text().split()
    return out


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--name", required=True)
    p.add_argument("--dir", type=Path, required=True)
    p.add_argument("--latency", type=float, default=0.0)
    p.add_argument("--max-in-flight", type=int, default=16)
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING, format=f"{args.name} %(levelname)s %(message)s")
    settings = Settings()
    broker = build_broker(settings, role="worker")
    await broker.start()
    runner = CountingRunner(args.dir / f"executions-{args.name}.log", latency_s=args.latency)
    worker = Worker(broker, runner, name=args.name, max_in_flight=args.max_in_flight)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stop)
    task = asyncio.create_task(worker.run(grace_s=2.0))
    print("READY", flush=True)
    await task
    await broker.close()


if __name__ == "__main__":
    asyncio.run(main())

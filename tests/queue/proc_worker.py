"""A worker process for the multi-process tests and the benchmark: the real `Worker` on a
`RedisBroker`, judging with the ScriptedRunner test double after `--latency` seconds.

Each finished judgment is recorded in Redis (`executions_key`) as "job id|worker name", so a
test can count how often each job really ran, across processes and kill -9s.

    python -m tests.queue.proc_worker --url redis://127.0.0.1:P/0 --prefix t1 --name w1
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from reward_service.domain import VoteResult, VoteTask
from reward_service.queue.names import QueueNames
from reward_service.queue.redis_broker import RedisBroker
from reward_service.testing.scripted_runner import ScriptedRunner
from reward_service.worker.worker import Worker


def executions_key(names: QueueNames) -> str:
    return f"{names.prefix}:test:executions"


class RecordingRunner(ScriptedRunner):
    """ScriptedRunner that notes every judgment it finished (before the result is stored)."""

    def __init__(self, broker: RedisBroker, name: str, *, latency_s: float, record: bool) -> None:
        super().__init__(latency_s=latency_s)
        self.broker = broker
        self.name = name
        self.record = record

    async def run(
        self, task: VoteTask, request_id: str, verdict_by: float | None = None
    ) -> VoteResult:
        result = await super().run(task, request_id, verdict_by)
        self.calls.clear()  # long runs: keep no history in memory
        if self.record:
            key = executions_key(self.broker.names)
            await self.broker.redis.rpush(key, f"{request_id}|{self.name}")
        return result


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--prefix", required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--latency", type=float, default=0.0)
    p.add_argument("--max-in-flight", type=int, default=32)
    p.add_argument("--visibility", type=float, default=5.0)
    p.add_argument("--max-tries", type=int, default=3)
    p.add_argument("--no-record", action="store_true")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING, format=f"{args.name} %(levelname)s %(message)s")
    broker = RedisBroker(
        args.url,
        names=QueueNames(prefix=args.prefix),
        visibility_timeout_s=args.visibility,
        max_tries=args.max_tries,
    )
    await broker.start()
    runner = RecordingRunner(broker, args.name, latency_s=args.latency, record=not args.no_record)
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

"""A gateway process for the multi-process tests and the benchmark: the real `GatewayServer`
and `RewardService` on a `RedisBroker`, on a free port it prints as "READY <port>".

    python -m tests.queue.proc_gateway --url redis://127.0.0.1:P/0 --prefix t1
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal

from reward_service.queue.names import QueueNames
from reward_service.queue.redis_broker import RedisBroker
from tests.queue.stack import gateway_service


async def main() -> None:
    from reward_service.gateway.server import GatewayServer

    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--prefix", required=True)
    p.add_argument("--max-depth", type=int, default=100_000)
    p.add_argument("--deadline", type=float, default=30.0)
    p.add_argument("--warm", action="store_true", help="answer one judgment before READY")
    p.add_argument("--max-concurrent-rpcs", type=int, default=0, help="0: no limit")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING, format="gateway %(levelname)s %(message)s")
    broker = RedisBroker(args.url, names=QueueNames(prefix=args.prefix), max_depth=args.max_depth)
    await broker.start()
    service = gateway_service(broker, deadline_s=args.deadline)
    server = GatewayServer(
        service, host="127.0.0.1", port=0, max_concurrent_rpcs=args.max_concurrent_rpcs
    )
    port = await server.start()
    if args.warm:
        await server.warm_up(service.comparator)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"READY {port}", flush=True)
    await stop.wait()
    await server.stop(1.0)
    await broker.close()


if __name__ == "__main__":
    asyncio.run(main())

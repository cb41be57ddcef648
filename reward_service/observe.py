"""A tiny HTTP endpoint per process: `/metrics` (Prometheus) and `/healthz` (200 once warm).

Workers have no gRPC server, so Kubernetes readiness for them is this `/healthz`; gateways expose
the same endpoint beside their gRPC health service. asyncio only: no extra web framework.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from reward_service import metrics
from reward_service.errors import Unavailable
from reward_service.queue.base import Broker

log = logging.getLogger(__name__)


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        line = await asyncio.wait_for(reader.readline(), timeout=5)
        while (await asyncio.wait_for(reader.readline(), timeout=5)) not in (b"\r\n", b"\n", b""):
            pass
        path = line.split(b" ")[1].decode() if line.count(b" ") >= 2 else "/"
        if path.startswith("/metrics"):
            status, ctype, body = "200 OK", CONTENT_TYPE_LATEST, generate_latest()
        elif path.startswith("/healthz"):
            ready = metrics.READY._value.get() >= 1
            status = "200 OK" if ready else "503 Service Unavailable"
            ctype, body = "text/plain", (b"ok\n" if ready else b"warming up\n")
        else:
            status, ctype, body = "404 Not Found", "text/plain", b"not found\n"
        head = f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
        writer.write(head.encode() + b"Connection: close\r\n\r\n" + body)
        await writer.drain()
    except (TimeoutError, ConnectionError, IndexError):
        pass
    finally:
        writer.close()


async def start_http(host: str, port: int) -> asyncio.Server | None:
    """Serve /metrics and /healthz on `port` (0: disabled)."""
    if not port:
        return None
    server = await asyncio.start_server(_handle, host, port)
    log.info("metrics and health on http://%s:%d/metrics", host, port)
    return server


async def report_queue_depth(broker: Broker, every_s: float = 5.0) -> None:
    """Keep rrm_queue_depth (jobs waiting plus in flight) current for dashboards and the backlog
    alert, also while no call arrives: the gateway otherwise reads the depth only on submit."""
    while True:
        with contextlib.suppress(Unavailable):
            metrics.QUEUE_DEPTH.set(await broker.depth())
        await asyncio.sleep(every_s)

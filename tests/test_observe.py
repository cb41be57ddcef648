"""The per-process HTTP endpoint: Prometheus /metrics and /healthz (503 until warm)."""

from __future__ import annotations

import asyncio

from reward_service import metrics
from reward_service.observe import start_http
from reward_service.testing.serve_process import free_port


async def get(port: int, path: str) -> tuple[int, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    raw = (await reader.read()).decode()
    writer.close()
    return int(raw.split(" ", 2)[1]), raw.split("\r\n\r\n", 1)[1]


async def test_metrics_and_health_endpoint() -> None:
    port = free_port()
    server = await start_http("127.0.0.1", port)
    assert server is not None
    try:
        metrics.READY.set(0)
        assert (await get(port, "/healthz"))[0] == 503
        metrics.READY.set(1)
        assert await get(port, "/healthz") == (200, "ok\n")
        metrics.JUDGMENTS.labels("ok").inc()
        code, body = await get(port, "/metrics")
        assert code == 200
        for name in (
            "rrm_judgments_total",
            "rrm_queue_depth",
            "# TYPE rrm_rpc_latency_seconds histogram",
            "rrm_verdict_cache_total",
            "rrm_dead_letters_total",
            "rrm_ready 1.0",
        ):
            assert name in body
        assert (await get(port, "/nope"))[0] == 404
    finally:
        metrics.READY.set(0)
        server.close()
    assert await start_http("127.0.0.1", 0) is None

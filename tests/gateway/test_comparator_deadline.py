"""The comparator's waiting ends quietly, at its deadline or when gRPC cancels the call.

Seen in the fault benchmark: every call that ran into its deadline left a gathered future whose
CancelledError nobody retrieved, so the gateway logged an asyncio ERROR per call.
"""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

from reward_service.errors import DeadlineExceeded
from reward_service.gateway.comparator import Comparator
from reward_service.gateway.server import WARMUP
from reward_service.queue.memory import MemoryBroker


async def outcome(
    comparator: Comparator, request_id: str, deadline_s: float, cancel_s: float
) -> str:
    """Run one compare with no worker (it never finishes); gRPC's cancellation after `cancel_s`."""
    call = asyncio.create_task(comparator.compare(WARMUP, request_id, time.time() + deadline_s))
    await asyncio.sleep(cancel_s)
    call.cancel()
    try:
        await call
    except DeadlineExceeded:
        return "deadline"
    except asyncio.CancelledError:
        return "cancelled"
    return "answered"


async def test_waiting_ends_without_abandoned_futures() -> None:
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    try:
        comparator = Comparator(MemoryBroker())
        seen = [
            await outcome(comparator, "late", deadline_s=0.1, cancel_s=0.3),
            await outcome(comparator, "gone", deadline_s=60, cancel_s=0.1),
            await outcome(comparator, "both", deadline_s=0.2, cancel_s=0.2),
        ]
        for _ in range(3):
            gc.collect()  # an abandoned future reports "exception was never retrieved" when freed
            await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(previous)
    assert seen[:2] == ["deadline", "cancelled"]
    assert [c.get("message") for c in reported] == []

"""SIGTERM/SIGINT as an asyncio event, honoured from the first moment of a process's life.

Loading a judge takes seconds to minutes (imports, a tokenizer or weights from a hub, a vLLM
engine). Kubernetes sends SIGTERM to a pod it scales down or replaces whenever it likes,
loading or not; a process that only looks at the signal once it is ready ignores it for the
whole load and is SIGKILLed at the end of its grace period. `Stopper.until_stopped` races every
startup step against the signal, and blocking steps run in daemon threads, so a stalled download
cannot hold the interpreter's exit either.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


class StoppedWhileLoading(Exception):
    """SIGTERM/SIGINT came before the process was ready: exit without serving."""


@dataclass
class Stopper:
    event: asyncio.Event

    @classmethod
    def install(cls) -> Stopper:
        event = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, event.set)
        return cls(event)

    async def until_stopped(self, step: Awaitable[T]) -> T:
        """`step`'s result, or StoppedWhileLoading (and `step` cancelled) if a stop comes first."""
        task = asyncio.ensure_future(step)
        stop = asyncio.ensure_future(self.event.wait())
        try:
            await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if task.done():
            return task.result()
        task.cancel()
        raise StoppedWhileLoading


def in_thread(fn: Callable[..., T], *args: object) -> asyncio.Future[T]:
    """`fn(*args)` in a daemon thread (not the loop's executor, whose threads the interpreter
    joins at exit: a download hanging there would keep a stopped process alive)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():  # cancelled: nobody waits for it any more
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        try:
            outcome: tuple[T | None, BaseException | None] = (fn(*args), None)
        except BaseException as exc:  # handed to the awaiting coroutine, raised there
            outcome = (None, exc)
        # A closed loop: the process stopped while this ran, and nobody waits for it.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, *outcome)

    threading.Thread(
        target=run, name=f"load-{getattr(fn, '__name__', 'step')}", daemon=True
    ).start()
    return future

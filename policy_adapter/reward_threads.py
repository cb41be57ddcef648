"""Threads for OpenRLHF's blocking `reward_func` calls.

OpenRLHF 0.11.2 runs every `reward_func` call through `asyncio.to_thread`, i.e. on the engine
actor loop's default pool of min(32, cores + 4) threads. Each call blocks its thread for a whole
judgment, so that pool, not the service, would cap the samples in flight to rrm-serve: a few
dozen, far below what its engines batch. OpenRLHF loads the reward file inside that loop (the
actor's async `__init__`), which is where the pool is widened.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger(__name__)

# The pool this module last gave each loop, shut down when a reload of the reward file replaces it.
_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, ThreadPoolExecutor] = (
    weakref.WeakKeyDictionary()
)


def widen_default_pool(threads: int) -> ThreadPoolExecutor | None:
    """Make the running loop's default executor `threads` wide. None when no loop runs here (a
    caller with its own threads): then the caller's concurrency is what it is."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="rrm-reward")
    loop.set_default_executor(pool)
    previous = _pools.get(loop)
    _pools[loop] = pool
    if previous is not None:
        previous.shutdown(wait=False)  # its queued calls still run; then its threads exit
    log.info("reward_func: up to %d samples in flight to rrm-serve from this loop", threads)
    return pool

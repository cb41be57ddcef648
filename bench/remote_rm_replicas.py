"""Issue 13's scenario: three `rrm remote-rm` replicas, OpenRLHF 0.11.2's own HTTP client rotating
its calls over the three URLs, P prompts x S samples in flight at once, the real gateway with the
scripted judge (a test double: the longer response wins). Prints the group sizes the samples were
rewarded in, how many rewards were exactly 0.0, and the wall time: a baseline run (by default
one process per replica with no shared state; `--baseline-src` runs an older `policy_adapter`
tree, e.g. `git archive <commit> policy_adapter | tar -x -C DIR`) beside a run sharing cohorts
through Redis, with the ratio.

    .venv/bin/python -m bench.remote_rm_replicas --prompts 4 --samples 4 --flush-timeout 150
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from openrlhf.utils.agent import SingleTurnAgentExecutor

from reward_service.testing.serve_process import free_port
from tests.gateway.conftest import close_stack, make_stack
from tests.support.redis_server import redis_server


async def start(
    target: str, args: argparse.Namespace, redis_url: str | None, src: Path | None
) -> tuple[list[asyncio.subprocess.Process], list[str]]:
    # `python -m` puts the working directory first on sys.path: run an older tree from there
    cwd = src if src is not None else Path.cwd()
    processes, urls = [], []
    namespace = uuid.uuid4().hex[:8]
    for _ in range(3):
        port = free_port()
        shared = ["--redis-url", redis_url, "--namespace", namespace] if redis_url else []
        command = [
            "-m", "policy_adapter.cli", "remote-rm",
            "--target", target, "--host", "127.0.0.1", "--port", str(port),
            "--n", str(args.samples), "--flush-timeout", str(args.flush_timeout), *shared,
        ]  # fmt: skip
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            *command,
            cwd=cwd,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        processes.append(process)
        urls.append(f"http://127.0.0.1:{port}")
    async with httpx.AsyncClient() as http:
        for url in urls:
            for _ in range(600):
                try:
                    if (await http.get(f"{url}/health")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.05)
    return processes, urls


async def one_run(
    target: str, args: argparse.Namespace, redis_url: str | None, src: Path | None
) -> dict[str, Any]:
    processes, urls = await start(target, args, redis_url, src)
    try:
        executor = SingleTurnAgentExecutor([f"{u}/get_reward" for u in urls])

        async def call(p: int, s: int) -> Any:
            prompt = f"<|im_start|>user\nQuestion {p}?<|im_end|>\n<|im_start|>assistant\n"
            text = "answer" + " word" * (s + 1)
            try:
                [out] = await executor._fetch_rewards_via_http([prompt + text], [prompt], [""])
                return out
            except RuntimeError as exc:
                return exc

        started = time.monotonic()
        outs = await asyncio.gather(
            *(call(p, s) for p in range(args.prompts) for s in range(args.samples))
        )
        wall = time.monotonic() - started
    finally:
        for process in processes:
            process.terminate()
            await process.wait()
    rewarded = [o for o in outs if isinstance(o, dict)]
    sizes = Counter(int(o["extra_logs"]["rrm_group_size"][0]) for o in rewarded)
    return {
        "wall_s": wall,
        "samples by group size": dict(sorted(sizes.items())),
        "rewards exactly 0.0": sum(o["rewards"][0] == 0.0 for o in rewarded),
        "failed samples": len(outs) - len(rewarded),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--flush-timeout", type=float, default=150.0)
    parser.add_argument("--baseline-src", type=Path, default=None)
    args = parser.parse_args()
    stack = await make_stack()
    target = f"127.0.0.1:{stack.server.port}"
    try:
        with redis_server(directory=Path(tempfile.mkdtemp(prefix="rrm-bench-redis-"))) as redis:
            baseline = await one_run(target, args, None, args.baseline_src)
            shared = await one_run(target, args, redis.url, None)
    finally:
        await close_stack(stack)
    label = f"baseline ({args.baseline_src or 'no Redis'})"
    print(f"{'':24} {label:>34} {'shared (Redis)':>22}")
    for key in baseline:
        print(f"{key:24} {baseline[key]!s:>34} {shared[key]!s:>22}")
    print(f"wall-time ratio shared/baseline: {shared['wall_s'] / baseline['wall_s']:.3f}")


if __name__ == "__main__":
    asyncio.run(main())

"""Gateway and worker processes (tests/queue/proc_*.py) sharing one Redis, for the
multi-process tests and the benchmark."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Proc:
    name: str
    process: asyncio.subprocess.Process
    port: int = 0

    @property
    def pid(self) -> int:
        return self.process.pid

    def kill(self) -> None:
        """kill -9: no goodbye, in-flight work is simply abandoned."""
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGKILL)


@dataclass
class Cluster:
    url: str
    prefix: str
    procs: list[Proc] = field(default_factory=list)

    async def _spawn(self, name: str, module: str, *args: str, timeout_s: float = 60) -> Proc:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            module,
            "--url",
            self.url,
            "--prefix",
            self.prefix,
            *args,
            cwd=REPO,
            stdout=asyncio.subprocess.PIPE,
        )
        proc = Proc(name, process)
        self.procs.append(proc)
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), timeout_s)).decode().split()
        if not line or line[0] != "READY":
            raise RuntimeError(f"{name} did not start (said {line!r})")
        proc.port = int(line[1]) if len(line) > 1 else 0
        return proc

    async def worker(
        self, name: str, *, latency_s: float, max_in_flight: int = 32, **flags: object
    ) -> Proc:
        args = ["--name", name, "--latency", str(latency_s), "--max-in-flight", str(max_in_flight)]
        return await self._spawn(name, "tests.queue.proc_worker", *args, *_flags(flags))

    async def gateway(self, name: str, **flags: object) -> Proc:
        return await self._spawn(name, "tests.queue.proc_gateway", *_flags(flags))

    async def close(self) -> None:
        for p in self.procs:
            if p.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    p.process.terminate()
        for p in self.procs:
            try:
                await asyncio.wait_for(p.process.wait(), 10)
            except TimeoutError:
                p.kill()
                await p.process.wait()


def _flags(flags: dict[str, object]) -> list[str]:
    out: list[str] = []
    for key, value in flags.items():
        opt = "--" + key.replace("_", "-")
        if value is True:
            out.append(opt)
        elif value is not False and value is not None:
            out += [opt, str(value)]
    return out

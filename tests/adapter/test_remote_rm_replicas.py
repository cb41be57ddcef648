"""Three `rrm remote-rm` processes sharing their cohorts through one real Redis, called by
OpenRLHF 0.11.2's own HTTP client (`SingleTurnAgentExecutor._fetch_rewards_via_http`, which
rotates calls over its URLs and retries a failed call 5 times, 1 s apart, on the same URL),
rewarded by the real gateway with the scripted judge (the longer response wins)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from openrlhf.utils.agent import SingleTurnAgentExecutor

from tests.adapter.conftest import address_of
from tests.adapter.harness import free_socket
from tests.gateway.conftest import Stack
from tests.support import redis_server
from tests.support.redis_server import RedisServer

redis_session = redis_server.redis_session

N = 8


@dataclass
class Replica:
    process: asyncio.subprocess.Process
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


async def start_replica(stack: Stack, redis_url: str, namespace: str) -> Replica:
    with free_socket() as sock:
        port = sock.getsockname()[1]
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "policy_adapter.cli", "remote-rm",
        "--target", address_of(stack), "--host", "127.0.0.1", "--port", str(port),
        "--n", str(N), "--flush-timeout", "60", "--strategy", "win_rate",
        "--redis-url", redis_url, "--namespace", namespace,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    return Replica(process, port)


async def wait_healthy(replicas: list[Replica]) -> None:
    async with httpx.AsyncClient() as http:
        for replica in replicas:
            for _ in range(600):
                with contextlib.suppress(httpx.TransportError):
                    if (await http.get(f"{replica.url}/health")).status_code == 200:
                        break
                await asyncio.sleep(0.05)
            else:
                raise TimeoutError(f"remote-rm on {replica.port} never became healthy")


@pytest.fixture
async def replicas(scripted: Stack, redis_session: RedisServer) -> AsyncIterator[list[Replica]]:
    namespace = uuid.uuid4().hex[:8]
    started = [await start_replica(scripted, redis_session.url, namespace) for _ in range(3)]
    try:
        await wait_healthy(started)
        yield started
    finally:
        for replica in started:
            if replica.process.returncode is None:
                replica.process.terminate()
            try:
                await asyncio.wait_for(replica.process.wait(), 15)
            except TimeoutError:  # a shutdown that hangs must not hang the suite
                replica.process.kill()
                await replica.process.wait()


class ServiceProxy:
    """TEST DOUBLE for a Kubernetes Service (kube-proxy): each new connection goes to the next
    replica that accepts it, so OpenRLHF's retries (a new connection each) reach live pods."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self._next = itertools.count()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in self.ports:
            port = self.ports[next(self._next) % len(self.ports)]
            try:
                upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", port)
                break
            except OSError:
                continue
        else:
            writer.close()
            return
        await asyncio.gather(
            self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer)
        )

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()


def prompt_of(i: int) -> str:
    return f"<|im_start|>user\nQuestion number {i}?<|im_end|>\n<|im_start|>assistant\n"


def answer(length: int) -> str:
    return "answer" + " word" * length


async def reward(executor: Any, prompt: str, text: str) -> dict[str, Any]:
    [result] = await executor._fetch_rewards_via_http(
        [prompt + text + "<|im_end|>"], [prompt], [""]
    )
    assert isinstance(result, dict)
    return result


async def health(replicas: list[Replica]) -> list[dict[str, Any]]:
    async with httpx.AsyncClient() as http:
        return [
            (await http.get(f"{r.url}/health")).json()
            for r in replicas
            if r.process.returncode is None
        ]


def wins_by_length(results: list[dict[str, Any]], lengths: list[int]) -> dict[int, float]:
    return {
        length: r["extra_logs"]["rrm_wins"][0] for length, r in zip(lengths, results, strict=True)
    }


async def test_sixteen_prompts_of_eight_samples_over_three_replicas(
    replicas: list[Replica], scripted: Stack
) -> None:
    # OpenRLHF rotates its calls over the three URLs
    executor = SingleTurnAgentExecutor([f"{r.url}/get_reward" for r in replicas])
    before = len(scripted.runner.calls)
    calls = [(p, length) for p in range(16) for length in range(1, N + 1)]
    results = await asyncio.gather(*(reward(executor, prompt_of(p), answer(n)) for p, n in calls))

    by_prompt = {p: results[p * N : (p + 1) * N] for p in range(16)}
    first = [r["rewards"][0] for r in by_prompt[0]]
    assert first == sorted(first) and len(set(first)) == N  # longer wins, 8 distinct ranks
    for group in by_prompt.values():
        assert [r["rewards"][0] for r in group] == first  # the same, whichever replica answered
        assert [r["extra_logs"]["rrm_group_size"][0] for r in group] == [float(N)] * N
        assert [r["extra_logs"]["rrm_wins"][0] for r in group] == [float(w) for w in range(N)]
    stats = await health(replicas)
    assert sum(s["judged_cohorts"] for s in stats) == 16
    assert sum(s["timed_out_cohorts"] for s in stats) == 0
    assert len(scripted.runner.calls) - before == 16 * N * (N - 1) // 2  # one round robin each


async def test_a_replica_killed_mid_batch(replicas: list[Replica]) -> None:
    proxy = ServiceProxy([r.port for r in replicas])
    with free_socket() as sock:
        port = sock.getsockname()[1]
    server = await asyncio.start_server(proxy.handle, "127.0.0.1", port)
    try:
        executor = SingleTurnAgentExecutor([f"http://127.0.0.1:{port}/get_reward"])
        calls = [(p, n) for p in range(16) for n in range(1, N + 1)]
        early = [c for c in calls if c[1] <= 5]  # five samples of each prompt, then the kill
        late = [c for c in calls if c[1] > 5]
        tasks = {
            c: asyncio.create_task(reward(executor, prompt_of(c[0]), answer(c[1]))) for c in early
        }
        await asyncio.sleep(2.0)
        assert not any(t.done() for t in tasks.values())  # every group still open
        os.kill(replicas[0].process.pid, signal.SIGKILL)
        await replicas[0].process.wait()
        tasks |= {
            c: asyncio.create_task(reward(executor, prompt_of(c[0]), answer(c[1]))) for c in late
        }
        results = {c: await t for c, t in tasks.items()}
    finally:
        server.close()
    for p in range(16):
        group = [results[(p, n)] for n in range(1, N + 1)]
        assert [r["extra_logs"]["rrm_group_size"][0] for r in group] == [float(N)] * N
        assert [r["extra_logs"]["rrm_wins"][0] for r in group] == [float(w) for w in range(N)]
    stats = await health(replicas)
    assert sum(s["timed_out_cohorts"] for s in stats) == 0
    async with httpx.AsyncClient() as http:
        metrics = [(await http.get(f"{r.url}/metrics")).text for r in replicas[1:]]
    adopted = sum(
        float(line.split()[-1])
        for text in metrics
        for line in text.splitlines()
        if line.startswith("rrm_remote_rm_retries_adopted_total")
    )
    assert adopted >= 1  # the dead replica held calls: their retries took their places


async def test_the_next_step_is_judged_in_its_own_groups(replicas: list[Replica]) -> None:
    executor = SingleTurnAgentExecutor([f"{r.url}/get_reward" for r in replicas])
    step1 = list(range(1, N + 1))
    step2 = list(range(5, N + 5))  # four responses of step 1 again, four longer new ones
    for lengths, expected_group in ((step1, step1), (step2, step2)):
        results = await asyncio.gather(
            *(reward(executor, prompt_of(p), answer(n)) for p in range(4) for n in lengths)
        )
        for p in range(4):
            group = results[p * N : (p + 1) * N]
            wins = wins_by_length(group, lengths)
            # wins within this step's group: the k-th shortest beat k others
            assert wins == {n: float(k) for k, n in enumerate(sorted(expected_group))}
    stats = await health(replicas)
    assert sum(s["judged_cohorts"] for s in stats) == 8

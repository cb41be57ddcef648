"""The fault benchmark's calls and counting, for every topology it runs (bench/chaos.py: scripted
judge through Redis; bench/chaos_engine.py: real engines): concurrent Compare calls, one fault,
a re-ask of every answered request by its request_id, and one table row of counts."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from rrm.v1 import reward_pb2 as pb
from rrm.v1 import reward_pb2_grpc as pb_grpc

from reward_service.queue.names import QueueNames

CLEAN = {  # a definite status with a reason, in time (ABORTED: the judgment itself failed)
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ABORTED,
}
SLACK_S = 2.0  # a call may end this long after its deadline and still count as "not hung"


class Target(Protocol):
    """What the counting needs from a running topology."""

    stubs: dict[str, pb_grpc.RewardServiceStub]  # gateway name -> stub

    def request(self, i: int) -> pb.CompareRequest:
        """Call i (the same request, same request_id, every time it is asked)."""
        ...

    def runs(self) -> int | None:
        """Judgments finished so far (None: not observable)."""
        ...

    def ran_twice(self) -> int | None:
        """Jobs of the load finished more than once so far (None: not observable)."""
        ...

    def dead_letters(self) -> int:
        """Entries on the dead-letter stream (or dead-lettered jobs in the log)."""
        ...


@dataclass
class Call:
    index: int
    gateway: str
    code: grpc.StatusCode
    winner: int
    p_a: float
    elapsed_s: float
    timeout_s: float
    retry_delay_s: float | None = None
    attempts: int = 1
    details: str = ""

    @property
    def ok(self) -> bool:
        return self.code is grpc.StatusCode.OK

    @property
    def clean(self) -> bool:
        return self.code in CLEAN and self.elapsed_s <= self.timeout_s + SLACK_S


@dataclass
class Row:
    scenario: str
    calls: int = 0
    answered: int = 0
    clean_errors: int = 0
    lost: int = 0
    answered_twice: int = 0  # request ids that got two different answers
    ran_twice: int | None = None  # None: not observable in this topology
    dead_letters: int = 0
    answered_on_retry: int = 0
    notes: list[str] = field(default_factory=list)


def retry_delay(err: grpc.aio.AioRpcError) -> float | None:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return info.retry_delay.ToMilliseconds() / 1000
    return None


async def call(
    target: Target, gateway: str, i: int, timeout_s: float, *, honour_retry_info: bool = False
) -> Call:
    started = time.monotonic()
    attempts, delay = 0, None
    stub = target.stubs[gateway]
    while True:
        attempts += 1
        remaining = timeout_s - (time.monotonic() - started)
        try:
            reply = await stub.Compare(target.request(i), timeout=max(remaining, 0.01))
            elapsed = time.monotonic() - started
            return Call(
                i, gateway, grpc.StatusCode.OK, reply.winner, reply.p_a, elapsed, timeout_s,
                delay, attempts,
            )  # fmt: skip
        except grpc.aio.AioRpcError as err:
            code = err.code()
            if code is grpc.StatusCode.RESOURCE_EXHAUSTED:
                delay = retry_delay(err)
                remaining = timeout_s - (time.monotonic() - started)
                if honour_retry_info and delay is not None and remaining > delay:
                    await asyncio.sleep(delay)
                    continue
            elapsed = time.monotonic() - started
            return Call(
                i, gateway, code, 0, 0.0, elapsed, timeout_s, delay, attempts, err.details() or ""
            )


async def load(
    target: Target,
    n: int,
    timeout_s: float,
    fault: Callable[[], Awaitable[None]] | None,
    *,
    at: float | None = 0.25,
    honour_retry_info: bool = False,
    spread_s: float = 0.0,
) -> list[Call]:
    """n concurrent calls spread over the gateways (call i starts after i/n x `spread_s`);
    `fault` runs once `at` of them ran on a judge (at=None: at once, the fault waits for its own
    moment)."""
    names = list(target.stubs)
    before = target.runs() or 0

    async def one(i: int) -> Call:
        await asyncio.sleep(spread_s * i / n)
        gateway = names[i % len(names)]
        return await call(target, gateway, i, timeout_s, honour_retry_info=honour_retry_info)

    tasks = [asyncio.create_task(one(i)) for i in range(n)]
    if fault is not None:
        while at is not None and (target.runs() or 0) - before < n * at:
            if all(t.done() for t in tasks):
                raise RuntimeError("the load finished before the fault could be injected")
            await asyncio.sleep(0.02)
        await fault()
    return list(await asyncio.gather(*tasks))


async def retry_failed(target: Target, calls: list[Call], gateway: str, row: Row) -> list[Call]:
    """What a client does after a clean error: ask again with the same request_id."""
    failed = [c for c in calls if not c.ok]
    retried = await asyncio.gather(*(call(target, gateway, c.index, 60) for c in failed))
    row.answered_on_retry = sum(c.ok for c in retried)
    row.lost += sum(not c.ok for c in retried)  # a clean failure that never got answered
    return [c for c in retried if c.ok]


async def reask(target: Target, answered: list[Call], gateway: str, row: Row) -> None:
    """Every answered request again, same request_id: the stored answer, no new judgment."""
    before = target.runs()
    again = await asyncio.gather(*(call(target, gateway, c.index, 60) for c in answered))
    row.answered_twice += sum(
        1 for c, d in zip(answered, again, strict=True) if (c.winner, c.p_a) != (d.winner, d.p_a)
    )
    after = target.runs()
    new = "" if before is None or after is None else f": {after - before} new executions"
    failed = sum(not d.ok for d in again)
    row.notes.append(f"re-asked {len(answered)}{new}" + (f", {failed} failed" if failed else ""))


def tally(row: Row, calls: list[Call], target: Target) -> Row:
    row.calls = len(calls)
    row.answered += sum(c.ok for c in calls)
    row.clean_errors += sum(c.clean for c in calls)
    row.lost += sum(not c.ok and not c.clean for c in calls)
    row.ran_twice = target.ran_twice()
    row.dead_letters = target.dead_letters()
    codes: dict[str, int] = {}
    for c in calls:
        codes[c.code.name] = codes.get(c.code.name, 0) + 1
    row.notes.insert(0, ", ".join(f"{k} {v}" for k, v in sorted(codes.items())))
    aborted = {c.details for c in calls if c.code is grpc.StatusCode.ABORTED}
    if aborted:
        row.notes.insert(1, "ABORTED: " + " | ".join(sorted(aborted))[:160])
    return row


def scripted_request(i: int, tag: str) -> pb.CompareRequest:
    return pb.CompareRequest(
        request_id=f"{tag}-{i}",
        query=f"{tag} question {i}?",
        response_a="one answer to the question",
        response_b="another answer",
        options=pb.JudgeOptions(votes=1, order=pb.ORDER_AS_GIVEN),
    )


def dead_letters(port: int) -> int:
    """Entries on the dead-letter stream of the Redis on `port`."""
    out = subprocess.run(
        ["redis-cli", "-p", str(port), "xlen", QueueNames().dead_letter_stream],
        capture_output=True, text=True, timeout=10,
    )  # fmt: skip
    return int(out.stdout.strip() or 0)

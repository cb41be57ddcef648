"""Redis Sentinel failover under load: a real primary, replica and three sentinels on loopback,
a real gRPC gateway and worker following the primary through the sentinels, and a kill -9 of
the primary while calls are in flight.

The judge (ScriptedRunner, a test double) draws every verdict at random, so a job that ran
twice and reached a caller twice would show as two different answers for one request id.
Clients retry by request id on UNAVAILABLE / RESOURCE_EXHAUSTED / DEADLINE_EXCEEDED, as
policy_adapter's client does.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest
from rrm.v1 import reward_pb2 as pb
from rrm.v1 import reward_pb2_grpc as pb_grpc

from reward_service.app import build_broker, redis_target
from reward_service.domain import ParseStatus, Verdict, VoteResult, VoteTask
from reward_service.queue.names import QueueNames
from reward_service.settings import Settings
from tests.queue.conftest import job
from tests.queue.stack import close_redis_stack, make_redis_stack
from tests.support.sentinel import sentinel_setup

CLEAN = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}
ATTEMPT_TIMEOUT_S = 8.0
SLACK_S = 1.0  # an attempt may end this long after its deadline and still count as on time


def coin_flip(task: VoteTask) -> VoteResult:
    """A judge that answers differently on each execution: a random winner and probability."""
    p = random.random()
    return VoteResult(
        verdict=Verdict.FIRST if p >= 0.5 else Verdict.SECOND,
        p_first=p,
        status=ParseStatus.OK,
        reasoning_tokens=1,
        prompt_tokens=1,
        completion_tokens=1,
    )


@dataclass
class Ledger:
    answers: defaultdict[str, set[tuple[int, float]]] = field(
        default_factory=lambda: defaultdict(set)
    )
    codes: Counter[str] = field(default_factory=Counter)
    late: list[str] = field(default_factory=list)  # attempts that overran their deadline
    unanswered: list[str] = field(default_factory=list)


async def ask(stub: pb_grpc.RewardServiceStub, rid: str, ledger: Ledger, budget_s: float) -> None:
    """One client request, retried by its request id until answered or out of budget."""
    give_up = time.monotonic() + budget_s
    request = pb.CompareRequest(
        request_id=rid,
        query=f"question {rid}?",
        response_a="one answer",
        response_b="another answer",
        options=pb.JudgeOptions(votes=1, order=pb.ORDER_AS_GIVEN),
    )
    while time.monotonic() < give_up:
        started = time.monotonic()
        try:
            reply = await stub.Compare(request, timeout=ATTEMPT_TIMEOUT_S)
        except grpc.aio.AioRpcError as err:
            ledger.codes[err.code().name] += 1
            if time.monotonic() - started > ATTEMPT_TIMEOUT_S + SLACK_S:
                ledger.late.append(f"{rid}: {err.code().name} after {time.monotonic() - started}")
            assert err.code() in CLEAN, f"{rid}: {err.code().name} {err.details()}"
            await asyncio.sleep(0.2)
            continue
        ledger.codes["OK"] += 1
        ledger.answers[rid].add((int(reply.winner), round(reply.p_a, 6)))
        return
    ledger.unanswered.append(rid)


@pytest.mark.parametrize("fault", ["kill -9", "demote"])
async def test_a_failover_mid_load_loses_no_call_and_answers_each_request_once(
    tmp_path: Path, fault: str
) -> None:
    """kill -9: the primary vanishes, sentinels elect the replica. demote: SENTINEL FAILOVER
    turns the live primary into a replica, so connections still open to it get READONLY."""
    with sentinel_setup(tmp_path) as setup:
        settings = Settings(
            queue={"kind": "redis", "redis_sentinels": setup.addresses}  # type: ignore[arg-type]
        )
        s = await make_redis_stack(
            redis_target(settings), QueueNames(prefix="failover"), latency_s=0.4, script=coin_flip
        )
        ledger = Ledger()
        try:
            calls = []
            for i in range(60):  # 20 calls a second for 3 s; the primary dies after 1 s
                calls.append(asyncio.create_task(ask(s.stub, f"r{i}", ledger, budget_s=40)))
                await asyncio.sleep(0.05)
                if i == 20:
                    old = setup.primary.port
                    killed_at = time.monotonic()
                    if fault == "kill -9":
                        await asyncio.to_thread(setup.primary.kill)
                    else:
                        await asyncio.to_thread(setup.sentinel_failover)
                    failover = asyncio.create_task(asyncio.to_thread(setup.wait_failover, old))
            failover_s = await failover
            await asyncio.gather(*calls)
            all_answered_s = time.monotonic() - killed_at
            first_round = dict(ledger.codes)
            # Everything answered is asked again by its request id: the stored answer, not a
            # new (random) one, must come back.
            await asyncio.gather(*(ask(s.stub, rid, ledger, 20) for rid in list(ledger.answers)))
            print(
                f"\n{fault}: failover {failover_s:.1f} s after the kill; all calls answered "
                f"{all_answered_s:.1f} s after it; attempts {first_round}; "
                f"gateway re-queued {s.broker.stats.requeued_after_restart}, "  # type: ignore[attr-defined]
                f"engine runs {len(s.runner.calls)}"
            )
        finally:
            await close_redis_stack(s)
        twice = {rid: a for rid, a in ledger.answers.items() if len(a) > 1}
        assert not twice, f"requests answered twice with different answers: {twice}"
        assert not ledger.late, ledger.late
        assert not ledger.unanswered, f"never answered: {ledger.unanswered}"
        assert len(ledger.answers) == 60


async def test_settings_with_sentinels_reach_the_primary(tmp_path: Path) -> None:
    """RRM_QUEUE__REDIS_SENTINELS alone (the URL's host is ignored) is enough to queue and
    answer jobs, through the same client-building code as production."""
    with sentinel_setup(tmp_path) as setup:
        settings = Settings(
            queue={  # type: ignore[arg-type]
                "kind": "redis",
                "redis_url": "redis://nowhere.invalid:1/0",
                "redis_sentinels": setup.addresses,
            }
        )
        gateway, worker = (
            build_broker(settings, role="gateway"),
            build_broker(settings, role="worker"),
        )
        await gateway.start()
        await worker.start()
        try:
            [fut] = await gateway.submit([job("s1")])
            [d] = await worker.receive("w1", 1, 2.0)
            result = coin_flip(d.envelope.task)
            await worker.complete(d, result)
            assert await asyncio.wait_for(fut, 5) == result
        finally:
            await gateway.close()
            await worker.close()

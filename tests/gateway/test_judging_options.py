"""The judging options of issue 16 travel from JudgeOptions to the worker's task and the new parse
statuses come back over a real gRPC channel; the queue codec keeps older jobs' ids and meaning.

The worker runs the ScriptedRunner double: what the options do in a vote is tested in
tests/judge/test_vote.py and tests/worker/test_deadline_forcing.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from rrm.v1 import reward_pb2 as pb

from reward_service.domain import Pair, ParseStatus, Verdict, VoteResult, VoteTask
from reward_service.queue.jobs import decode_task, encode_task, job_id
from tests.gateway.conftest import Stack, close_stack, make_stack

TASK = VoteTask(pair=Pair("q?", "a", "b"), max_reasoning_tokens=8, temperature=0.6)


def status_from_options(task: VoteTask) -> VoteResult:
    """A judge that stops without a verdict; forced when asked, and says if it may be cut."""
    if task.force_verdict_on_stop:
        status = ParseStatus.STOP_FORCED
    elif task.deadline_forcing:
        status = ParseStatus.DEADLINE_FORCED
    else:
        status = ParseStatus.UNPARSEABLE
    verdict = Verdict.UNDECIDED if status is ParseStatus.UNPARSEABLE else Verdict.FIRST
    p = None if verdict is Verdict.UNDECIDED else 0.8
    return VoteResult(verdict=verdict, p_first=p, status=status)


@pytest.fixture
async def options_stack() -> AsyncIterator[Stack]:
    s = await make_stack()
    s.runner.script = status_from_options
    yield s
    await close_stack(s)


@pytest.mark.parametrize(
    ("options", "status", "winner"),
    [
        (pb.JudgeOptions(force_verdict_on_stop=True), pb.PARSE_STATUS_STOP_FORCED, pb.WINNER_A),
        (pb.JudgeOptions(), pb.PARSE_STATUS_DEADLINE_FORCED, pb.WINNER_A),
        (pb.JudgeOptions(no_deadline_forcing=True), pb.PARSE_STATUS_UNPARSEABLE, 0),
    ],
)
async def test_options_reach_the_worker_and_statuses_come_back(
    options_stack: Stack, options: pb.JudgeOptions, status: int, winner: int
) -> None:
    options.order = pb.ORDER_AS_GIVEN
    request = pb.CompareRequest(query="q?", response_a="x", response_b="y", options=options)
    reply = await options_stack.stub.Compare(request)
    assert [v.parse_status for v in reply.votes] == [status]
    assert reply.winner == winner


def test_old_jobs_keep_their_ids_and_defaults() -> None:
    """Jobs from gateways older than the options decode to the defaults, and the defaults leave
    job ids (and verdict-cache keys) as they were."""
    old = {
        k: v
        for k, v in encode_task(TASK).items()
        if k not in {"deadline_forcing", "force_verdict_on_stop"}
    }
    assert decode_task(old) == TASK
    # the id this task had before the options existed (HEAD of 2026-12-01)
    assert job_id("r", TASK) == "j-ecc2ec99aca04a75d6d4a5d427b908c243fb383e"
    for changed in (
        VoteTask(TASK.pair, 8, 0.6, deadline_forcing=False),
        VoteTask(TASK.pair, 8, 0.6, force_verdict_on_stop=True),
    ):
        assert decode_task(encode_task(changed)) == changed
        assert job_id("r", changed) != job_id("r", TASK)

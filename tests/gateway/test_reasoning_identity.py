"""A stored answer honours what THIS caller asked for: with or without the judge's reasoning.

Stored results (same request id) and the verdict cache (same comparison, any request id) both key
on `return_reasoning`, so asking again with the other setting never gets the first caller's kind.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import pytest
from rrm.v1 import reward_pb2 as pb

from reward_service.domain import Pair, VoteResult, VoteTask
from reward_service.gateway.planner import PlannedVote, map_vote
from reward_service.queue.cache import MemoryVerdictCache
from reward_service.testing.scripted_runner import prefer_longer
from tests.gateway.conftest import Stack, close_stack, make_stack


def explains_when_asked(task: VoteTask) -> VoteResult:
    """Like the real worker: the reasoning is kept only when the task asks for it."""
    return replace(
        prefer_longer(task), reasoning="longer is better" if task.return_reasoning else None
    )


@pytest.fixture
async def cached_stack() -> AsyncIterator[Stack]:
    s = await make_stack(cache=MemoryVerdictCache())
    s.runner.script = explains_when_asked
    yield s
    await close_stack(s)


def ask(request_id: str, reasoning: bool) -> pb.CompareRequest:
    return pb.CompareRequest(
        request_id=request_id,
        query="which is better?",
        response_a="a long careful answer",
        response_b="short",
        options=pb.JudgeOptions(votes=3, return_reasoning=reasoning, seed=7),
    )


@pytest.mark.parametrize("order", [(False, True), (True, False)])
@pytest.mark.parametrize("same_request_id", [True, False])
async def test_second_caller_gets_what_it_asked_for(
    cached_stack: Stack, order: tuple[bool, bool], same_request_id: bool
) -> None:
    tag = f"{order}-{same_request_id}"
    for i, wants in enumerate(order):
        rid = f"r-{tag}" if same_request_id else f"r-{tag}-{i}"
        reply = await cached_stack.stub.Compare(ask(rid, wants))
        assert reply.votes
        reasons = {v.reasoning for v in reply.votes}
        assert reasons == ({"longer is better"} if wants else {""}), (i, wants, reasons)


def test_reasoning_nobody_asked_for_is_stripped_on_the_way_out() -> None:
    task = VoteTask(pair=Pair("q", "a", "b"), max_reasoning_tokens=8, temperature=0.0)
    stored = replace(prefer_longer(task), reasoning="kept by some other path")
    assert map_vote(PlannedVote(task, a_first=True), stored).result.reasoning is None
    asked = replace(task, return_reasoning=True)
    kept = map_vote(PlannedVote(asked, a_first=True), stored).result.reasoning
    assert kept == "kept by some other path"

"""A cap on the judgments one call may need (items x matches x votes x orders), reported by
GetInfo and enforced with INVALID_ARGUMENT naming the cap."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import grpc
import pytest
from rrm.v1 import reward_pb2 as pb

from tests.gateway.conftest import Stack, close_stack, make_stack

CAP = 20


@pytest.fixture
async def capped() -> AsyncIterator[Stack]:
    s = await make_stack()
    s.server.service.limits = replace(s.server.service.limits, max_judgments_per_call=CAP)
    yield s
    await close_stack(s)


def opts(votes: int, order: int = pb.ORDER_RANDOM) -> pb.JudgeOptions:
    return pb.JudgeOptions(votes=votes, order=order)


def pair(votes: int, order: int = pb.ORDER_RANDOM) -> pb.CompareRequest:
    return pb.CompareRequest(query="q", response_a="aa", response_b="b", options=opts(votes, order))


async def refused(call: object, field: str) -> str:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call  # type: ignore[misc]
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = err.value.details() or ""
    assert details.startswith(f"{field}:") and "max_judgments_per_call limit of 20" in details
    return details


async def test_get_info_reports_the_cap(capped: Stack) -> None:
    info = await capped.stub.GetInfo(pb.GetInfoRequest())
    assert info.limits.max_judgments_per_call == CAP


async def test_calls_over_the_cap_are_refused_naming_it(capped: Stack) -> None:
    stub = capped.stub
    # 4 pairs x 3 votes x 2 orders = 24
    batch = pb.CompareBatchRequest(pairs=[pair(3, pb.ORDER_BOTH)] * 4)
    assert "needs up to 24 judgments" in await refused(stub.CompareBatch(batch), "pairs")
    # round robin of 8: 28 matches
    elo = pb.RankRequest(query="q", candidates=list("abcdefgh"), strategy=pb.STRATEGY_ELO)
    await refused(stub.Rank(elo), "candidates")
    await refused(anext(aiter(stub.RankStream(elo))), "candidates")
    # knockout of 8 (7 matches) x 3 votes = 21
    ko = pb.RankRequest(query="q", candidates=list("abcdefgh"), options=opts(3))
    await refused(stub.Rank(ko), "candidates")
    await refused(stub.RankBatch(pb.RankBatchRequest(requests=[elo])), "requests")
    score = pb.ScoreRequest(query="q", candidates=list("abcdefgh"))  # Elo by default
    await refused(stub.Score(score), "candidates")


async def test_calls_at_the_cap_are_served(capped: Stack) -> None:
    stub = capped.stub
    batch = pb.CompareBatchRequest(pairs=[pair(5, pb.ORDER_BOTH)] * 2)  # exactly 20
    reply = await stub.CompareBatch(batch)
    assert all(r.WhichOneof("outcome") == "response" for r in reply.results)
    ko = pb.RankRequest(query="q", candidates=list("abcdefg"), options=opts(3))  # 6 x 3 = 18
    assert (await stub.Rank(ko)).comparisons == 6
    ref = pb.ScoreRequest(
        query="q",
        candidates=list("abcde"),
        reference="ref",
        mode=pb.SCORE_MODE_REFERENCE,
        options=opts(4),
    )  # 5 x 4 = 20
    assert len((await stub.Score(ref)).rewards) == 5

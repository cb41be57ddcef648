"""The two group buffers on their own, with a recording judge function (no service)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import pytest

from policy_adapter.cohort import CohortBuffer, SampleGroups


class Judge:
    """Scores each text by its length; records every group it is asked to judge."""

    def __init__(self, fail: bool = False, delay_s: float = 0.0) -> None:
        self.groups: list[tuple[object, list[str]]] = []
        self.members: list[int] = []
        self.fail = fail
        self.delay_s = delay_s

    async def __call__(self, key: object, texts: Sequence[str], members: int = 0) -> list[float]:
        self.groups.append((key, list(texts)))
        self.members.append(members)
        await asyncio.sleep(self.delay_s)
        if self.fail:
            raise RuntimeError("judge down")
        return [float(len(t)) for t in texts]


async def test_a_cohort_is_judged_once_when_n_samples_arrived() -> None:
    judge = Judge()
    buffer: CohortBuffer[str, float] = CohortBuffer(judge, size=3, timeout_s=5)
    results = await asyncio.gather(
        buffer.submit("p", "a"), buffer.submit("p", "bbb"), buffer.submit("p", "cc")
    )
    assert results == [1.0, 3.0, 2.0]
    assert judge.groups == [("p", ["a", "bbb", "cc"])]


async def test_prompts_are_separate_cohorts() -> None:
    judge = Judge()
    buffer: CohortBuffer[str, float] = CohortBuffer(judge, size=2, timeout_s=5)
    await asyncio.gather(*(buffer.submit(k, t) for k in "xy" for t in ("a", "bb")))
    assert sorted(judge.groups) == [("x", ["a", "bb"]), ("y", ["a", "bb"])]


async def test_identical_samples_count_but_are_judged_once() -> None:
    judge = Judge()
    buffer: CohortBuffer[str, float] = CohortBuffer(judge, size=3, timeout_s=5)
    results = await asyncio.gather(*(buffer.submit("p", t) for t in ("same", "same", "x")))
    assert results == [4.0, 4.0, 1.0]
    assert judge.groups == [("p", ["same", "x"])] and judge.members == [3]


async def test_a_partial_cohort_is_judged_after_the_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    judge = Judge()
    buffer: CohortBuffer[str, float] = CohortBuffer(judge, size=4, timeout_s=0.2)
    started = asyncio.get_running_loop().time()
    with caplog.at_level(logging.WARNING):
        results = await asyncio.gather(buffer.submit("p", "a"), buffer.submit("p", "bb"))
    assert results == [1.0, 2.0]
    assert asyncio.get_running_loop().time() - started >= 0.2
    assert buffer.timed_out_cohorts == 1 and "2 of 4 samples" in caplog.text


async def test_a_repeat_after_its_cohort_closed_is_judged_in_a_new_cohort() -> None:
    """A later step's identical sample gets that step's group reward, not the old one."""
    judge = Judge()
    buffer: CohortBuffer[str, float] = CohortBuffer(judge, size=2, timeout_s=5)
    await asyncio.gather(buffer.submit("p", "a"), buffer.submit("p", "bb"))
    assert await asyncio.gather(buffer.submit("p", "bb"), buffer.submit("p", "cccc")) == [2.0, 4.0]
    assert [g for _, g in judge.groups] == [["a", "bb"], ["bb", "cccc"]]
    assert judge.members == [2, 2]


async def test_a_failed_cohort_fails_every_member_and_a_retry_judges_again() -> None:
    judge = Judge(fail=True)
    buffer: CohortBuffer[str, float] = CohortBuffer(judge, size=2, timeout_s=5)
    results = await asyncio.gather(
        buffer.submit("p", "a"), buffer.submit("p", "bb"), return_exceptions=True
    )
    assert all(isinstance(r, RuntimeError) for r in results)
    judge.fail = False
    assert await asyncio.gather(buffer.submit("p", "a"), buffer.submit("p", "bb")) == [1.0, 2.0]
    assert len(judge.groups) == 2


async def test_sample_groups_learn_the_group_size() -> None:
    judge = Judge()
    groups: SampleGroups[str, float] = SampleGroups(judge, max_size=None, timeout_s=5)

    async def sample(key: str, text: str, delay: float) -> float:
        ticket = groups.enter(key)
        await asyncio.sleep(delay)
        return await groups.submit(ticket, text)

    # three samples of "p" and two of "q" start together, finish at different times
    results = await asyncio.gather(
        sample("p", "a", 0.05), sample("p", "bbb", 0.15), sample("p", "cc", 0.1),
        sample("q", "dddd", 0.0), sample("q", "e", 0.1),
    )  # fmt: skip
    assert results == [1.0, 3.0, 2.0, 4.0, 1.0]
    assert sorted(judge.groups) == [("p", ["a", "cc", "bbb"]), ("q", ["dddd", "e"])]


async def test_sample_groups_cap_and_withdraw() -> None:
    judge = Judge()
    groups: SampleGroups[str, float] = SampleGroups(judge, max_size=2, timeout_s=5)
    tickets = [groups.enter("p") for _ in range(4)]  # the same prompt dispatched twice
    assert tickets[0].group is tickets[1].group and tickets[2].group is not tickets[0].group
    groups.withdraw(tickets[3])  # its generation failed
    results = await asyncio.gather(
        *(groups.submit(t, "x" * (i + 1)) for i, t in enumerate(tickets[:3]))
    )
    assert results == [1.0, 2.0, 3.0]
    assert sorted(g for _, g in judge.groups) == [["x", "xx"], ["xxx"]]


async def test_sample_groups_judge_latecomers_apart(caplog: pytest.LogCaptureFixture) -> None:
    judge = Judge()
    groups: SampleGroups[str, float] = SampleGroups(judge, max_size=None, timeout_s=0.2)

    async def sample(text: str, delay: float) -> float:
        ticket = groups.enter("p")
        await asyncio.sleep(delay)
        return await groups.submit(ticket, text)

    with caplog.at_level(logging.WARNING):
        results = await asyncio.gather(sample("a", 0), sample("bb", 0.05), sample("late", 0.5))
    assert results == [1.0, 2.0, 4.0]
    assert judge.groups == [("p", ["a", "bb"]), ("p", ["late"])]
    assert groups.timed_out_groups == 1 and "1 still generating" in caplog.text


async def test_sample_groups_fail_every_member() -> None:
    groups: SampleGroups[str, float] = SampleGroups(Judge(fail=True), max_size=None, timeout_s=5)
    tickets = [groups.enter("p"), groups.enter("p")]
    results = await asyncio.gather(
        *(groups.submit(t, "x") for t in tickets), return_exceptions=True
    )
    assert all(isinstance(r, RuntimeError) for r in results)

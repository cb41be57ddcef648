"""Turning OpenRLHF's one-sample-at-a-time reward calls back into groups judged at once.

OpenRLHF generates the n samples of a prompt together but rewards them one call each. Buffers
collect a prompt's samples and judge them in one tournament:

- `CohortBuffer` (the HTTP remote RM, one process): calls are keyed (by prompt or a group id)
  and counted; at `size` calls, or `timeout_s` after the first, the cohort is judged. A call
  that arrives after its key's cohort closed is a new occurrence (a later step or epoch) and
  opens a new cohort: answers are never reused across cohorts. A failed cohort fails every
  member; OpenRLHF's retries then form a new cohort and are judged again.
- `RedisCohorts` (`cohort_redis.py`): the same contract with the cohort state in Redis, for
  several remote-RM replicas.
- `SampleGroups` (the agent executor, in the engine's own event loop): each sample registers
  before generating, so the group size is known without configuration.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)
# Judges one group: (key, texts) -> one result per text, in order. Raising fails every member.
GroupJudge = Callable[[K, Sequence[str]], Awaitable[Sequence[T]]]
# A cohort's judge also learns how many calls (members) the distinct texts stand for: a cohort
# of one call has nothing to be compared with, one of several identical calls is a tie.
CohortJudge = Callable[[K, Sequence[str], int], Awaitable[Sequence[T]]]


K_contra = TypeVar("K_contra", bound=Hashable, contravariant=True)
T_co = TypeVar("T_co", covariant=True)


class Cohorts(Protocol[K_contra, T_co]):
    """Where the remote RM puts a call: `submit` returns the call's result once its cohort is
    judged (or raises the cohort's failure)."""

    judged_cohorts: int
    timed_out_cohorts: int

    async def submit(self, key: K_contra, text: str) -> T_co: ...

    async def close(self) -> None: ...


@dataclass(eq=False)
class _Cohort(Generic[T]):
    texts: dict[str, asyncio.Future[T]] = field(default_factory=dict)
    arrivals: int = 0
    closed: bool = False
    timer: asyncio.TimerHandle | None = None


class CohortBuffer(Generic[K, T]):
    """Async; every method runs on one event loop (the web server's)."""

    def __init__(self, judge: CohortJudge[K, T], *, size: int, timeout_s: float) -> None:
        if size < 1:
            raise ValueError("cohort size must be at least 1")
        self.judge = judge
        self.size = size
        self.timeout_s = timeout_s
        self._open: dict[K, _Cohort[T]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.judged_cohorts = 0
        self.timed_out_cohorts = 0

    async def submit(self, key: K, text: str) -> T:
        cohort = self._open.get(key)
        if cohort is None:
            cohort = _Cohort()
            self._open[key] = cohort
            loop = asyncio.get_running_loop()
            cohort.timer = loop.call_later(self.timeout_s, self._close, key, cohort, True)
        future = cohort.texts.get(text)
        if future is None:  # identical calls in one cohort are judged once and share a result
            future = asyncio.get_running_loop().create_future()
            cohort.texts[text] = future
        cohort.arrivals += 1
        if cohort.arrivals >= self.size:
            self._close(key, cohort, False)
        return await asyncio.shield(future)

    def _close(self, key: K, cohort: _Cohort[T], timed_out: bool) -> None:
        if cohort.closed:
            return
        cohort.closed = True
        if cohort.timer is not None:
            cohort.timer.cancel()
        if self._open.get(key) is cohort:
            del self._open[key]
        if timed_out:
            self.timed_out_cohorts += 1
            log.warning(
                "cohort %r: %d of %d samples after %.0f s; judging what arrived",
                key,
                cohort.arrivals,
                self.size,
                self.timeout_s,
            )
        task = asyncio.get_running_loop().create_task(self._judge(key, cohort))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _judge(self, key: K, cohort: _Cohort[T]) -> None:
        texts = list(cohort.texts)
        try:
            results = await self.judge(key, texts, cohort.arrivals)
            if len(results) != len(texts):
                raise RuntimeError(f"judge returned {len(results)} results for {len(texts)}")
        except BaseException as exc:
            for future in cohort.texts.values():
                if not future.done():
                    future.set_exception(exc)
                if not future.cancelled():
                    future.exception()  # retrieved: its callers may all have gone
            if isinstance(exc, asyncio.CancelledError):
                raise
            log.error("cohort %r failed: %s", key, exc)
            return
        self.judged_cohorts += 1
        for future, result in zip(cohort.texts.values(), results, strict=True):
            future.set_result(result)

    async def close(self) -> None:
        for key, cohort in list(self._open.items()):
            self._close(key, cohort, False)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


@dataclass(eq=False)
class _Group(Generic[T]):
    tickets: list[Ticket[T]] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    futures: list[asyncio.Future[T]] = field(default_factory=list)
    sealed: bool = False  # no more members may register (one has finished generating)
    judging: bool = False
    timer: asyncio.TimerHandle | None = None

    @property
    def waiting(self) -> int:
        """Members that have neither submitted nor withdrawn."""
        return sum(not t.done for t in self.tickets)


class Ticket(Generic[T]):
    """One sample's place in its group, from registration to its reward."""

    def __init__(self, key: Hashable, group: _Group[T]) -> None:
        self.key = key
        self.group = group
        self.done = False


class SampleGroups(Generic[K, T]):
    """Samples register (`enter`) when their generation starts and `submit` their text when it
    ends. OpenRLHF starts the n generations of a prompt together (asyncio.gather), so all n
    register before any finishes: the first submission seals the group, whose size is then
    the number registered (at most `max_size`). The group is judged once every member has
    submitted or withdrawn, or `timeout_s` after the first submission: members later than that
    form a group of their own."""

    def __init__(self, judge: GroupJudge[K, T], *, max_size: int | None, timeout_s: float) -> None:
        self.judge = judge
        self.max_size = max_size
        self.timeout_s = timeout_s
        self._open: dict[K, _Group[T]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.timed_out_groups = 0

    def enter(self, key: K) -> Ticket[T]:
        group = self._open.get(key)
        if group is None:
            group = _Group()
            self._open[key] = group
        ticket: Ticket[T] = Ticket(key, group)
        group.tickets.append(ticket)
        if self.max_size is not None and len(group.tickets) >= self.max_size:
            self._seal(key, group)
        return ticket

    async def submit(self, ticket: Ticket[T], text: str) -> T:
        if ticket.done:
            raise RuntimeError("this sample was already submitted")
        ticket.done = True
        group = ticket.group
        key: K = ticket.key  # type: ignore[assignment]
        self._seal(key, group)
        loop = asyncio.get_running_loop()
        if group.timer is None:
            group.timer = loop.call_later(self.timeout_s, self._time_out, key, group)
        future: asyncio.Future[T] = loop.create_future()
        group.texts.append(text)
        group.futures.append(future)
        self._maybe_judge(key, group)
        return await future

    def withdraw(self, ticket: Ticket[T]) -> None:
        """The sample will never submit (its generation failed): stop waiting for it."""
        if ticket.done:
            return
        ticket.done = True
        self._maybe_judge(ticket.key, ticket.group)  # type: ignore[arg-type]

    def _seal(self, key: K, group: _Group[T]) -> None:
        group.sealed = True
        if self._open.get(key) is group:
            del self._open[key]

    def _maybe_judge(self, key: K, group: _Group[T]) -> None:
        if not group.judging and group.texts and group.waiting == 0:
            self._start(key, group)

    def _time_out(self, key: K, group: _Group[T]) -> None:
        if group.judging:
            return
        self.timed_out_groups += 1
        late = [t for t in group.tickets if not t.done]
        log.warning(
            "group %r: %d samples arrived, %d still generating after %.0f s; judging what "
            "arrived, the late ones form a group of their own",
            key,
            len(group.texts),
            len(late),
            self.timeout_s,
        )
        if late:
            rest: _Group[T] = _Group(tickets=late, sealed=True)
            group.tickets = [t for t in group.tickets if t.done]
            for ticket in late:
                ticket.group = rest
        self._start(key, group)

    def _start(self, key: K, group: _Group[T]) -> None:
        group.judging = True
        if group.timer is not None:
            group.timer.cancel()
        task = asyncio.get_running_loop().create_task(self._judge(key, group))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _judge(self, key: K, group: _Group[T]) -> None:
        try:
            results = await self.judge(key, list(group.texts))
            if len(results) != len(group.texts):
                raise RuntimeError(f"judge returned {len(results)} results for {len(group.texts)}")
        except BaseException as exc:
            for future in group.futures:
                if not future.done():
                    future.set_exception(exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        for future, result in zip(group.futures, results, strict=True):
            if not future.done():
                future.set_result(result)

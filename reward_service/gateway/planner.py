"""Pure planning of one comparison's votes and aggregation of their results (no I/O).

A comparison of A and B with k votes becomes k vote tasks (2k with ORDER_BOTH), each showing the
pair in a definite order. Votes are issued in waves: only as many as could still decide the
majority, so a clear majority stops early and the remaining draws are saved.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, replace
from enum import IntEnum

from reward_service.domain import Pair, ParseStatus, Turn, Verdict, VoteResult, VoteTask


class OrderMode(IntEnum):
    RANDOM = 0
    AS_GIVEN = 1
    BOTH = 2


class Side(IntEnum):
    UNDECIDED = 0
    A = 1
    B = 2


class Stage(IntEnum):
    """The budget-cascade stage of a vote or of a comparison's decision (values as rrm.v1's
    CascadeStage); NONE: no cascade."""

    NONE = 0
    SHORT = 1
    FULL = 2


@dataclass(frozen=True, slots=True)
class Cascade:
    """A budget cascade's validated options (see `escalation`).

    The short stage plans the same votes as the full one (same vote indices, shown orders and
    seeds), only at `short_tokens`: with a seeded engine its reasoning is the start of the full
    stage's, and each stage's jobs are exactly the jobs a plain request at that budget makes, so
    job ids, redelivery and the verdict cache need nothing new.
    """

    short_tokens: int
    threshold: float
    short_both_orders: bool = False


@dataclass(frozen=True, slots=True)
class Comparison:
    """One A-vs-B question with its judging options, validated."""

    query: str
    response_a: str
    response_b: str
    history: tuple[Turn, ...]
    votes: int
    order: OrderMode
    max_reasoning_tokens: int
    temperature: float
    seed: int
    return_reasoning: bool
    use_cache: bool = True
    deadline_forcing: bool = True
    force_verdict_on_stop: bool = False
    cascade: Cascade | None = None


@dataclass(frozen=True, slots=True)
class PlannedVote:
    task: VoteTask
    a_first: bool


@dataclass(frozen=True, slots=True)
class MappedVote:
    """A vote's result mapped back from shown order to the caller's A/B."""

    vote_index: int
    a_first: bool
    verdict: Side
    p_a: float | None
    result: VoteResult
    stage: Stage = Stage.NONE


@dataclass(frozen=True, slots=True)
class ComparisonOutcome:
    winner: Side
    p_a: float
    votes: tuple[MappedVote, ...]
    agreeing: int
    order_consistent: bool
    failed: int
    # With a cascade: the stage whose votes made winner, p_a, agreeing and order_consistent
    # (`votes` holds both stages'; `failed` counts the deciding stage's).
    decided_by: Stage = Stage.NONE


def short_stage(c: Comparison) -> Comparison:
    """The cascade's first stage: the same votes at the short budget (in both orders when asked)."""
    if c.cascade is None:
        raise ValueError("the comparison has no cascade")
    order = OrderMode.BOTH if c.cascade.short_both_orders else c.order
    return replace(c, max_reasoning_tokens=c.cascade.short_tokens, order=order, cascade=None)


def full_stage(c: Comparison) -> Comparison:
    """The cascade's second stage: the comparison as a plain request would judge it."""
    return replace(c, cascade=None)


def escalation(short: ComparisonOutcome, threshold: float) -> str | None:
    """Why the short stage's outcome is too uncertain to stand, or None when it stands.

    In this order: "undecided" (a short vote failed or named no winner: the short budget gave
    no verdict to trust), "orders_disagree" (a vote index judged in both orders got two
    different verdicts: position bias, not a preference), "uncertain" (|p(A) - 0.5| below
    `threshold`, also when no vote gave a probability, p(A) then being 0.5, or the votes tie).
    With one order per vote only the probability speaks; `Cascade.short_both_orders` adds the
    order check.
    """
    if any(v.verdict is Side.UNDECIDED for v in short.votes):
        return "undecided"
    if not short.order_consistent:
        return "orders_disagree"
    if short.winner is Side.UNDECIDED or abs(short.p_a - 0.5) < threshold:
        return "uncertain"
    return None


def derive_seed(*parts: str) -> int:
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "little")


def plan_votes(c: Comparison) -> list[PlannedVote]:
    """Every vote the comparison may need, in issue order (vote index major)."""
    rng = random.Random(c.seed)
    planned: list[PlannedVote] = []
    for index in range(c.votes):
        if c.order is OrderMode.BOTH:
            orders = [True, False]
        elif c.order is OrderMode.AS_GIVEN:
            orders = [True]
        else:
            orders = [rng.random() < 0.5]
        for a_first in orders:
            first, second = (
                (c.response_a, c.response_b) if a_first else (c.response_b, c.response_a)
            )
            task = VoteTask(
                pair=Pair(query=c.query, first=first, second=second, history=c.history),
                max_reasoning_tokens=c.max_reasoning_tokens,
                temperature=c.temperature,
                seed=derive_seed(str(c.seed), str(index)) & 0x7FFFFFFF,
                return_reasoning=c.return_reasoning,
                vote_index=index,
                deadline_forcing=c.deadline_forcing,
                force_verdict_on_stop=c.force_verdict_on_stop,
            )
            planned.append(PlannedVote(task=task, a_first=a_first))
    return planned


def map_vote(planned: PlannedVote, result: VoteResult, stage: Stage = Stage.NONE) -> MappedVote:
    if result.reasoning is not None and not planned.task.return_reasoning:
        # Stored answers are keyed by return_reasoning too; this keeps the promise by
        # construction, whatever a cache or an older worker handed back.
        result = replace(result, reasoning=None)
    if result.status is ParseStatus.FAILED or result.verdict is Verdict.UNDECIDED:
        side = Side.UNDECIDED
    elif (result.verdict is Verdict.FIRST) == planned.a_first:
        side = Side.A
    else:
        side = Side.B
    p_a = None
    if result.p_first is not None:
        p_a = result.p_first if planned.a_first else 1.0 - result.p_first
    return MappedVote(planned.task.vote_index, planned.a_first, side, p_a, result, stage)


def next_wave_size(votes: list[MappedVote], total: int, unit: int) -> int:
    """How many more votes to issue: the fewest that could still settle the majority (0: done)."""
    a = sum(v.verdict is Side.A for v in votes)
    b = sum(v.verdict is Side.B for v in votes)
    lead, trail = max(a, b), min(a, b)
    remaining = total - len(votes)
    if remaining <= 0 or lead > trail + remaining:
        return 0
    needed = (trail + remaining - lead) // 2 + 1
    needed = -(-needed // unit) * unit  # whole units: both orders of a vote go together
    return min(needed, remaining)


def aggregate(votes: list[MappedVote], order: OrderMode) -> ComparisonOutcome:
    decided = [v for v in votes if v.verdict is not Side.UNDECIDED]
    a = sum(v.verdict is Side.A for v in decided)
    b = len(decided) - a
    probs = [v.p_a for v in decided if v.p_a is not None]
    p_a = sum(probs) / len(probs) if probs else 0.5
    if a != b:
        winner = Side.A if a > b else Side.B
    elif probs and p_a != 0.5:
        winner = Side.A if p_a > 0.5 else Side.B  # tie broken by summed probability
    else:
        winner = Side.UNDECIDED
    consistent = True
    if order is OrderMode.BOTH:
        by_index: dict[int, set[Side]] = {}
        for v in votes:
            by_index.setdefault(v.vote_index, set()).add(v.verdict)
        consistent = all(len(s) == 1 and Side.UNDECIDED not in s for s in by_index.values())
    return ComparisonOutcome(
        winner=winner,
        p_a=p_a,
        votes=tuple(votes),
        agreeing=sum(v.verdict is winner for v in decided) if winner is not Side.UNDECIDED else 0,
        order_consistent=consistent,
        failed=sum(v.result.status is ParseStatus.FAILED for v in votes),
    )

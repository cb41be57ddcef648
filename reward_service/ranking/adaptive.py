"""Adaptive ranking: spend judgments where they change the answer, within a hard budget.

The structure is a merge sort truncated to the top k (k = 1: a knockout; k = n: a full sort):
each node merges its children's sorted outputs but stops after k. Merges stream, so a comparison
starts as soon as the heads of both sides are known. Every comparison is a sequential test: one
judgment at a time, summing the log-likelihood ratio of each judgment (from the judge's p(A),
clipped to `max_vote_confidence`, or, without one, from `vote_accuracy`), until the evidence
reaches the node's threshold, the pair's vote cap, or the budget's spare. Clear pairs stop after
one judgment; only close pairs get more.

Confidence: the target's error allowance 1 - `confidence` is split over the levels of the tree,
level l (1 = the first merges) getting a share proportional to 2**-l, so the many early
comparisons may err a little more and the few late ones (which decide the top) less; along the
winner's path the allowances sum to 1 - `confidence`. That is the per-comparison error the
judge's own probabilities promise, exact for a calibrated judge and optimistic for an
overconfident one (hence the clip).

Budget: every comparison the tree may still need gets its first judgment reserved, so the budget
is never exceeded and every candidate is still ranked; an extra judgment is only spent from
what is left above that reserve, and paced per level so the first merges cannot spend what the
last ones need.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from reward_service.ranking.knockout import PendingMatch, break_tie
from reward_service.ranking.outcome import MatchResult, Outcome
from reward_service.ranking.rewards import rank_rewards
from reward_service.ranking.schedule import ScheduleResult, tally


@dataclass
class _Test:
    """The sequential test of one pair: evidence for `a` (log-likelihood ratio) so far."""

    a: int
    b: int
    llr: float = 0.0
    votes: int = 0
    in_flight: int = 0
    winner: int | None = None


@dataclass
class _Node:
    level: int
    limit: int  # how many of its best this node must output: min(k, size)
    left: int = -1  # child node indices (-1: a leaf)
    right: int = -1
    out: list[int] = field(default_factory=list)
    li: int = 0
    ri: int = 0
    test: _Test | None = None

    @property
    def done(self) -> bool:
        return len(self.out) == self.limit


def comparisons_bound(n: int, k: int) -> int:
    """The most comparisons a top-k merge tree over n candidates can need: the smallest
    budget an adaptive ranking accepts (n - 1 for the top 1)."""
    if n < 1 or not 1 <= k <= n:
        raise ValueError(f"need n >= 1 and 1 <= k <= n, got n={n}, k={k}")

    def bound(size: int) -> int:
        if size == 1:
            return 0
        half = size // 2
        return min(k, size) + bound(half) + bound(size - half)

    return bound(n)


class AdaptiveRanking:
    """Find the top `k` (1: the best; n: the full order) with at most `budget` judgments."""

    def __init__(
        self,
        n: int,
        budget: int,
        *,
        k: int = 1,
        confidence: float = 0.95,
        max_votes_per_pair: int = 7,
        vote_accuracy: float = 0.8,
        max_vote_confidence: float = 0.99,
        seed: int = 0,
    ) -> None:
        minimum = comparisons_bound(n, k)
        if budget < minimum:
            raise ValueError(f"budget {budget} is below the {minimum} comparisons top-{k} needs")
        if not 0.5 < confidence < 1.0:
            raise ValueError(f"confidence must be within (0.5, 1), got {confidence}")
        if max_votes_per_pair < 1:
            raise ValueError(f"max_votes_per_pair must be >= 1, got {max_votes_per_pair}")
        if not 0.5 < vote_accuracy < 1.0 or not 0.5 < max_vote_confidence < 1.0:
            raise ValueError("vote_accuracy and max_vote_confidence must be within (0.5, 1)")
        self.n, self.k, self.budget, self.seed = n, k, budget, seed
        self.confidence = confidence
        self.max_votes_per_pair = max_votes_per_pair
        self._hard_llr = math.log(vote_accuracy / (1.0 - vote_accuracy))
        self._clip = max_vote_confidence
        order = list(range(n))
        random.Random(f"adaptive:{seed}").shuffle(order)
        self._leaf_order = {c: i for i, c in enumerate(order)}
        self._nodes: list[_Node] = []  # children before parents
        self._root = self._build(order)
        self.depth = self._nodes[self._root].level
        self._thresholds = [math.inf] + [
            self._threshold(level) for level in range(1, self.depth + 1)
        ]
        self._in_flight: dict[int, int] = {}  # match id -> node
        self._next_id = 0
        self._used = 0
        self._extra_cap = self._pace(budget - minimum)
        self._extra_spent = [0] * (self.depth + 1)
        self._results: list[MatchResult] = []
        self._settle()

    def _build(self, members: list[int]) -> int:
        if len(members) == 1:
            self._nodes.append(_Node(level=0, limit=1, out=[members[0]]))
            return len(self._nodes) - 1
        half = len(members) // 2
        left, right = self._build(members[:half]), self._build(members[half:])
        level = 1 + max(self._nodes[left].level, self._nodes[right].level)
        self._nodes.append(_Node(level, min(self.k, len(members)), left, right))
        return len(self._nodes) - 1

    def _threshold(self, level: int) -> float:
        allowance = (1.0 - self.confidence) * 2.0**-level / (1.0 - 2.0**-self.depth)
        return math.log((1.0 - allowance) / allowance)

    def _settle(self) -> None:
        """Move every merge forward as far as it goes without a new judgment."""
        for node in self._nodes:  # children come first, so one pass propagates upwards
            if node.left < 0:
                continue
            left, right = self._nodes[node.left], self._nodes[node.right]
            while not node.done:
                has_l, has_r = node.li < len(left.out), node.ri < len(right.out)
                if left.done and not has_l and has_r:
                    node.out.append(right.out[node.ri])
                    node.ri += 1
                elif right.done and not has_r and has_l:
                    node.out.append(left.out[node.li])
                    node.li += 1
                elif has_l and has_r:
                    test = node.test
                    if test is None:
                        node.test = _Test(left.out[node.li], right.out[node.ri])
                        break
                    if test.winner is None:
                        break
                    node.out.append(test.winner)
                    if test.winner == test.a:
                        node.li += 1
                    else:
                        node.ri += 1
                    node.test = None
                else:
                    break

    def _pace(self, extra: int) -> list[float]:
        """How many extra judgments levels 1..l may have spent together: the extra budget split
        by each level's comparisons x its threshold (about the votes it needs). Early levels run
        first; without this they would spend what the deciding late comparisons need."""
        weight = [0.0] * (self.depth + 1)
        for node in self._nodes:
            if node.left >= 0:
                weight[node.level] += node.limit * self._thresholds[node.level]
        total = sum(weight) or 1.0
        caps, running = [], 0.0
        for w in weight:
            running += w
            caps.append(extra * running / total)
        return caps

    def _may_spend_extra(self, level: int) -> bool:
        if self._used + len(self._in_flight) + self._reserve() >= self.budget:
            return False
        return sum(self._extra_spent[: level + 1]) + 1 <= self._extra_cap[level]

    def _reserve(self) -> int:
        """First judgments still owed: one per output a merge may still need, minus the
        comparisons already under way (they had theirs)."""
        owed = 0
        for node in self._nodes:
            if node.left >= 0:
                owed += node.limit - len(node.out)
                if node.test is not None and node.test.votes + node.test.in_flight > 0:
                    owed -= 1
        return owed

    def _decide(self, index: int, test: _Test) -> None:
        """Name the test's winner (the sign of the evidence, else a seeded coin); `_settle`
        then moves it on."""
        if test.llr != 0.0:
            test.winner = test.a if test.llr > 0 else test.b
        else:
            test.winner = break_tie(test.a, test.b, None, seed=self.seed, salt=index)

    def _propose(self, index: int, test: _Test) -> PendingMatch:
        match = PendingMatch(self._next_id, self._nodes[index].level, test.votes, test.a, test.b)
        self._in_flight[self._next_id] = index
        self._next_id += 1
        test.in_flight += 1
        return match

    def take_ready(self) -> list[PendingMatch]:
        ready: list[PendingMatch] = []
        changed = True
        while changed:
            changed = False
            # Later merges first: their comparisons decide the top and get spare budget first.
            for index in sorted(range(len(self._nodes)), key=lambda i: -self._nodes[i].level):
                test = self._nodes[index].test
                if test is None or test.winner is not None or test.in_flight:
                    continue
                if test.votes == 0:
                    ready.append(self._propose(index, test))  # within the reserve
                elif self._may_spend_extra(self._nodes[index].level):
                    self._extra_spent[self._nodes[index].level] += 1
                    ready.append(self._propose(index, test))
                else:  # no spare judgment: decide on the evidence there is
                    self._decide(index, test)
                    changed = True
            if changed:
                self._settle()
        return ready

    def _evidence(self, outcome: Outcome, p_a: float | None) -> float:
        if p_a is not None and math.isfinite(p_a):
            p = min(max(p_a, 1.0 - self._clip), self._clip)
            return math.log(p / (1.0 - p))
        if outcome is Outcome.TIE:
            return 0.0
        return self._hard_llr if outcome is Outcome.A_WINS else -self._hard_llr

    def record(self, match_id: int, outcome: Outcome, p_a: float | None = None) -> None:
        index = self._in_flight.pop(match_id, None)
        if index is None:
            raise ValueError(f"match {match_id} is not in flight")
        node = self._nodes[index]
        test = node.test
        assert test is not None and test.winner is None
        outcome = Outcome(outcome)
        self._used += 1
        self._results.append(MatchResult(test.a, test.b, outcome, p_a))
        test.in_flight -= 1
        test.votes += 1
        test.llr += self._evidence(outcome, p_a)
        threshold = self._thresholds[node.level]
        if abs(test.llr) >= threshold or test.votes >= self.max_votes_per_pair:
            self._decide(index, test)
            self._settle()

    @property
    def judgments(self) -> int:
        return self._used

    @property
    def rounds_complete(self) -> int:
        complete = 0
        for level in range(1, self.depth + 1):
            if not all(x.done for x in self._nodes if x.level == level):
                break
            complete = level
        return complete

    @property
    def done(self) -> bool:
        return self._nodes[self._root].done

    def result(self) -> ScheduleResult:
        if not self.done:
            raise ValueError("the adaptive ranking is not finished")
        # Where each candidate got to: the highest merge that output it, and its place there.
        reached: dict[int, tuple[int, int]] = {}
        for node in self._nodes:
            for position, c in enumerate(node.out):
                reached[c] = max(reached.get(c, (-1, 0)), (node.level, -position))
        ranking = tuple(
            sorted(
                range(self.n),
                key=lambda c: (-reached[c][0], -reached[c][1], self._leaf_order[c]),
            )
        )
        place = {c: i for i, c in enumerate(ranking)}
        spread = max(self.n - 1, 1)
        won, lost = tally(self.n, self._results)
        return ScheduleResult(
            strategy="adaptive",
            n=self.n,
            ranking=ranking,
            scores=tuple((self.n - 1 - place[c]) / spread for c in range(self.n)),
            rewards=rank_rewards(ranking),
            wins=won,
            losses=lost,
            matches=tuple(self._results),
            rounds=self.depth,
        )

"""The options a strategy takes beyond its name: the adaptive ranking's budget and target, the
anchor / in-group reference candidate. Checked here, before a request is sent, so a bad value
fails at the caller's line with the option's name rather than as a status from the server."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from enum import IntEnum

from rrm.v1 import reward_pb2 as pb

from policy_adapter.results import Strategy

# Strategies that take `reference_index` (the anchor, or the in-group reference).
WITH_REFERENCE = frozenset({Strategy.ANCHORED_KNOCKOUT, Strategy.IN_GROUP_REFERENCE})


class OptionError(ValueError):
    """A strategy option that does not fit; `option` names it as the contract does
    ("adaptive.top_k", "reference_index"), for the CLI and the settings to show their own name."""

    def __init__(self, option: str, problem: str) -> None:
        super().__init__(f"{option} {problem}")
        self.option = option
        self.problem = problem


class AdaptiveTarget(IntEnum):
    """What the adaptive ranking settles: the best candidate, the best k in order, or all."""

    TOP_1 = pb.ADAPTIVE_TARGET_TOP_1
    TOP_K = pb.ADAPTIVE_TARGET_TOP_K
    FULL = pb.ADAPTIVE_TARGET_FULL

    @classmethod
    def parse(cls, name: str) -> AdaptiveTarget:
        """ "top-1", "top_k", "TOP-K", "full", ..."""
        key = name.strip().upper().replace("-", "_")
        try:
            return cls[key]
        except KeyError:
            choices = ", ".join(t.cli_name for t in cls)
            raise ValueError(f"unknown adaptive target {name!r}; choose one of {choices}") from None

    @property
    def cli_name(self) -> str:
        return self.name.lower().replace("_", "-")


@dataclass(frozen=True, slots=True)
class AdaptiveOptions:
    """`Strategy.ADAPTIVE`'s options; 0 / None leave the server default.

    judgment_budget: the most judgments (votes x orders) the ranking may use, never exceeded
    (0: 3x the comparisons the target may need; fewer than those is refused by the server).
    target / top_k: settle the best candidate, the best `top_k` in order, or the full order.
    confidence: the probability, within (0.5, 1), that the judge's p(A) must promise before a
    comparison stops early (None: 0.9). max_votes_per_pair: judgments one pair may get (0: 7).
    """

    judgment_budget: int = 0
    target: AdaptiveTarget = AdaptiveTarget.TOP_1
    top_k: int = 0
    confidence: float | None = None
    max_votes_per_pair: int = 0

    def __post_init__(self) -> None:
        for name in ("judgment_budget", "top_k", "max_votes_per_pair"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise OptionError(f"adaptive.{name}", f"is {value!r}, must be an integer >= 0")
        if not isinstance(self.target, AdaptiveTarget):
            raise OptionError("adaptive.target", f"is {self.target!r}, must be an AdaptiveTarget")
        if self.target is AdaptiveTarget.TOP_K and self.top_k < 1:
            raise OptionError("adaptive.top_k", "must be at least 1 with target top-k")
        if self.target is not AdaptiveTarget.TOP_K and self.top_k:
            raise OptionError(
                "adaptive.top_k", f"is only used with target top-k, not {self.target.cli_name}"
            )
        if self.confidence is not None and not (
            math.isfinite(self.confidence) and 0.5 < self.confidence < 1.0
        ):
            raise OptionError(
                "adaptive.confidence", f"is {self.confidence}, must be within (0.5, 1)"
            )

    def for_group(self, n: int) -> AdaptiveOptions:
        """The options for a group of `n` candidates: a top-k of k >= n is the full order, so k
        is capped at n (groups shrink when identical responses are judged once)."""
        if self.target is AdaptiveTarget.TOP_K and self.top_k > n >= 1:
            return replace(self, top_k=n)
        return self

    def to_pb(self) -> pb.AdaptiveOptions:
        options = pb.AdaptiveOptions(
            judgment_budget=self.judgment_budget,
            target=pb.AdaptiveTarget.ValueType(int(self.target)),
            top_k=self.top_k,
            max_votes_per_pair=self.max_votes_per_pair,
        )
        if self.confidence is not None:
            options.confidence = self.confidence
        return options


def check_strategy_options(
    strategy: Strategy,
    adaptive: AdaptiveOptions | None,
    reference_index: int | None,
    candidates: int | None = None,
) -> None:
    """`OptionError` (a ValueError) naming the option when it does not fit the strategy (or,
    given `candidates`, the group): adaptive options only with ADAPTIVE, a reference only with
    the anchored knockout or the in-group reference, and both within the group."""
    if adaptive is not None and strategy is not Strategy.ADAPTIVE:
        raise OptionError(
            "adaptive", f"options are only used with strategy adaptive, not {_name(strategy)}"
        )
    if reference_index is not None:
        if strategy not in WITH_REFERENCE:
            raise OptionError(
                "reference_index",
                "is only used with strategy anchored_knockout or in_group_reference, "
                f"not {_name(strategy)}",
            )
        if isinstance(reference_index, bool) or not isinstance(reference_index, int):
            raise OptionError("reference_index", f"is {reference_index!r}, must be an integer")
        if reference_index < 0 or (candidates is not None and reference_index >= candidates):
            bound = f"0..{candidates - 1}" if candidates is not None else ">= 0"
            raise OptionError(
                "reference_index", f"is {reference_index}, not a candidate index ({bound})"
            )
    if adaptive is not None and candidates is not None and adaptive.top_k > candidates:
        raise OptionError(
            "adaptive.top_k", f"is {adaptive.top_k}, more than the {candidates} candidates"
        )


def _name(strategy: Strategy) -> str:
    return "the server default" if strategy is Strategy.UNSPECIFIED else strategy.name.lower()

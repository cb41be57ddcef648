"""Request validation: every rejection names the offending field (e.g. "pairs[3].response_a").

Turns protobuf messages into validated, immutable `Comparison`s; the rest of the gateway never
sees raw request fields.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from rrm.v1 import reward_pb2 as pb

from reward_service.domain import Limits, Turn
from reward_service.errors import InvalidInput
from reward_service.gateway import budget
from reward_service.gateway.planner import Cascade, Comparison, OrderMode, derive_seed

ROLES = ("user", "assistant", "system")
MAX_REQUEST_ID_CHARS = 256


# A budget cascade's escalation threshold on |p(A) - 0.5| when the request leaves it unset
# (measured on the CPU judge: docs/benchmarks.md, "Budget cascade").
DEFAULT_CASCADE_THRESHOLD = 0.2
# CascadeOptions.short_reasoning_tokens = 0: this fraction of the full budget.
DEFAULT_CASCADE_SHORT_FRACTION = 4


@dataclass(frozen=True, slots=True)
class Defaults:
    max_reasoning_tokens: int
    temperature: float
    cascade_threshold: float = DEFAULT_CASCADE_THRESHOLD


def _field(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def check_text(value: str, field: str, limits: Limits, *, allow_empty: bool = False) -> str:
    if not allow_empty and not value.strip():
        raise InvalidInput(field, "must not be empty")
    if len(value) > limits.max_text_chars:
        raise InvalidInput(
            field, f"is {len(value)} characters, over the limit of {limits.max_text_chars}"
        )
    return value


def request_id_of(value: str, field: str) -> str:
    if len(value) > MAX_REQUEST_ID_CHARS:
        raise InvalidInput(field, f"is longer than {MAX_REQUEST_ID_CHARS} characters")
    return value or f"anon-{uuid.uuid4().hex}"


def history_of(messages: Sequence[pb.Message], prefix: str, limits: Limits) -> tuple[Turn, ...]:
    field = _field(prefix, "history")
    if len(messages) > limits.max_history_turns:
        raise InvalidInput(
            field, f"has {len(messages)} turns, over the limit of {limits.max_history_turns}"
        )
    turns = []
    for i, m in enumerate(messages):
        if m.role not in ROLES:
            raise InvalidInput(f"{field}[{i}].role", f"must be one of {', '.join(ROLES)}")
        turns.append(Turn(m.role, check_text(m.content, f"{field}[{i}].content", limits)))
    return tuple(turns)


def comparison_of(
    request_id: str,
    query: str,
    history: Sequence[pb.Message],
    response_a: str,
    response_b: str,
    options: pb.JudgeOptions,
    prefix: str,
    limits: Limits,
    defaults: Defaults,
) -> Comparison:
    opts = _field(prefix, "options")
    votes = options.votes or 1
    if votes > limits.max_votes:
        raise InvalidInput(f"{opts}.votes", f"is {votes}, over the limit of {limits.max_votes}")
    if options.order not in (pb.ORDER_RANDOM, pb.ORDER_AS_GIVEN, pb.ORDER_BOTH):
        raise InvalidInput(f"{opts}.order", f"unknown order {options.order}")
    budget = options.max_reasoning_tokens or defaults.max_reasoning_tokens
    if budget > limits.max_reasoning_tokens:
        raise InvalidInput(
            f"{opts}.max_reasoning_tokens",
            f"is {budget}, over the limit of {limits.max_reasoning_tokens}",
        )
    cascade = (
        cascade_of(options.cascade, budget, opts, defaults) if options.HasField("cascade") else None
    )
    temperature = options.temperature if options.HasField("temperature") else defaults.temperature
    if not (math.isfinite(temperature) and 0.0 <= temperature <= 2.0):
        raise InvalidInput(f"{opts}.temperature", f"is {temperature}, must be within [0, 2]")
    query = check_text(query, _field(prefix, "query"), limits)
    a = check_text(response_a, _field(prefix, "response_a"), limits)
    b = check_text(response_b, _field(prefix, "response_b"), limits)
    turns = history_of(history, prefix, limits)
    # Unset seed: derived from the content, as the reference seeds per item. The same comparison
    # then gets the same shown orders and vote seeds in every request, so the verdict cache can
    # answer it again; votes stay independent through their index.
    seed = options.seed if options.HasField("seed") else derive_seed(query, a, b)
    return Comparison(
        query=query,
        response_a=a,
        response_b=b,
        history=turns,
        votes=votes,
        order=OrderMode(options.order),
        max_reasoning_tokens=budget,
        temperature=float(temperature),
        seed=seed,
        return_reasoning=options.return_reasoning,
        use_cache=not options.no_cache,
        deadline_forcing=not options.no_deadline_forcing,
        force_verdict_on_stop=options.force_verdict_on_stop,
        cascade=cascade,
    )


def cascade_of(options: pb.CascadeOptions, full: int, prefix: str, defaults: Defaults) -> Cascade:
    """The cascade's short budget must be below the full one (`full`, already validated), else
    the short stage is the full stage twice; the threshold is a distance from 0.5."""
    field = f"{prefix}.cascade"
    short = options.short_reasoning_tokens or full // DEFAULT_CASCADE_SHORT_FRACTION
    if not 1 <= short < full:
        raise InvalidInput(
            f"{field}.short_reasoning_tokens",
            f"is {short}, must be within 1..{full - 1} (below the full budget of {full} tokens)",
        )
    threshold = options.threshold if options.HasField("threshold") else defaults.cascade_threshold
    if not (math.isfinite(threshold) and 0.0 <= threshold <= 0.5):
        raise InvalidInput(f"{field}.threshold", f"is {threshold}, must be within [0, 0.5]")
    return Cascade(short, float(threshold), options.short_both_orders)


def compare_request(
    req: pb.CompareRequest, prefix: str, limits: Limits, defaults: Defaults
) -> tuple[str, Comparison]:
    rid = request_id_of(req.request_id, _field(prefix, "request_id"))
    c = comparison_of(
        rid,
        req.query,
        req.history,
        req.response_a,
        req.response_b,
        req.options,
        prefix,
        limits,
        defaults,
    )
    return rid, c


STRATEGIES = {
    pb.STRATEGY_KNOCKOUT: "knockout",
    pb.STRATEGY_ELO: "elo",
    pb.STRATEGY_BRADLEY_TERRY: "bradley_terry",
    pb.STRATEGY_WIN_RATE: "win_rate",
    pb.STRATEGY_SWISS: "swiss",
    pb.STRATEGY_ANCHORED_KNOCKOUT: "anchored_knockout",
    pb.STRATEGY_IN_GROUP_REFERENCE: "in_group_reference",
    pb.STRATEGY_ADAPTIVE: "adaptive",
}
# Strategies that play every pair; the others play O(n log n) matches at most.
ROUND_ROBINS = frozenset({"elo", "bradley_terry", "win_rate"})
WITH_REFERENCE = frozenset({"anchored_knockout", "in_group_reference"})
DEFAULT_ADAPTIVE_CONFIDENCE = 0.9
DEFAULT_MAX_VOTES_PER_PAIR = 7


@dataclass(frozen=True, slots=True)
class AdaptiveSpec:
    """STRATEGY_ADAPTIVE's validated options; `budget` counts judgments (votes x orders)."""

    k: int
    budget: int
    confidence: float
    max_votes_per_pair: int


@dataclass(frozen=True, slots=True)
class RankSpec:
    """A validated tournament: the candidates and the comparison options every match uses."""

    candidates: tuple[str, ...]
    strategy: str  # a value of STRATEGIES
    template: Comparison  # response_a/response_b are filled per match
    adaptive: AdaptiveSpec | None = None
    reference_index: int | None = None  # anchor / in-group reference; None: seeded random

    @property
    def n(self) -> int:
        return len(self.candidates)


def rank_spec(
    request_id: str,
    query: str,
    history: Sequence[pb.Message],
    candidates: Sequence[str],
    strategy: int,
    options: pb.JudgeOptions,
    prefix: str,
    limits: Limits,
    defaults: Defaults,
    *,
    default_strategy: int = pb.STRATEGY_KNOCKOUT,
    adaptive: pb.AdaptiveOptions | None = None,
    reference_index: int | None = None,
) -> RankSpec:
    strategy = strategy or default_strategy
    if strategy not in STRATEGIES:
        raise InvalidInput(_field(prefix, "strategy"), f"unknown strategy {strategy}")
    name = STRATEGIES[strategy]
    limit = (
        limits.max_candidates_round_robin
        if name in ROUND_ROBINS
        else limits.max_candidates_knockout
    )
    field = _field(prefix, "candidates")
    if not candidates:
        raise InvalidInput(field, "must hold at least one candidate")
    if len(candidates) > limit:
        raise InvalidInput(
            field, f"has {len(candidates)} candidates, over the {name} limit of {limit}"
        )
    texts = tuple(check_text(c, f"{field}[{i}]", limits) for i, c in enumerate(candidates))
    # the template validates query, history and options once; its responses are placeholders
    template = comparison_of(
        request_id, query, history, texts[0], texts[0], options, prefix, limits, defaults
    )
    if reference_index is not None:
        if name not in WITH_REFERENCE:
            raise InvalidInput(
                _field(prefix, "reference_index"),
                "is only used with STRATEGY_ANCHORED_KNOCKOUT or STRATEGY_IN_GROUP_REFERENCE",
            )
        if reference_index >= len(texts):
            raise InvalidInput(
                _field(prefix, "reference_index"),
                f"is {reference_index}, not a candidate index (0..{len(texts) - 1})",
            )
    spec = None
    if name == "adaptive":
        spec = adaptive_spec(len(texts), adaptive or pb.AdaptiveOptions(), template, prefix, limits)
    elif adaptive is not None:
        raise InvalidInput(_field(prefix, "adaptive"), "is only used with STRATEGY_ADAPTIVE")
    return RankSpec(texts, name, template, spec, reference_index)


def adaptive_spec(
    n: int, options: pb.AdaptiveOptions, template: Comparison, prefix: str, limits: Limits
) -> AdaptiveSpec:
    field = _field(prefix, "adaptive")
    if template.votes > 1:
        raise InvalidInput(
            _field(prefix, "options.votes"),
            "must be 0 or 1 with STRATEGY_ADAPTIVE, which sets the votes per pair itself "
            "(see adaptive.max_votes_per_pair)",
        )
    target = options.target or pb.ADAPTIVE_TARGET_TOP_1
    if target == pb.ADAPTIVE_TARGET_TOP_K:
        if not 1 <= options.top_k <= n:
            raise InvalidInput(f"{field}.top_k", f"is {options.top_k}, must be within 1..{n}")
    elif options.top_k:
        raise InvalidInput(f"{field}.top_k", "is only used with ADAPTIVE_TARGET_TOP_K")
    elif target not in (pb.ADAPTIVE_TARGET_TOP_1, pb.ADAPTIVE_TARGET_FULL):
        raise InvalidInput(f"{field}.target", f"unknown target {target}")
    k = budget.adaptive_k(n, options)
    least = budget.adaptive_minimum(n, options, template.order is OrderMode.BOTH)
    judgments = budget.adaptive_budget(n, options, template.order is OrderMode.BOTH)
    if judgments < least:
        raise InvalidInput(
            f"{field}.judgment_budget",
            f"is {judgments}, below the {least} judgments the target may need (one per "
            "comparison of its merge tree)",
        )
    confidence = options.confidence if options.HasField("confidence") else None
    if confidence is None:
        confidence = DEFAULT_ADAPTIVE_CONFIDENCE
    elif not (math.isfinite(confidence) and 0.5 < confidence < 1.0):
        raise InvalidInput(f"{field}.confidence", f"is {confidence}, must be within (0.5, 1)")
    votes = options.max_votes_per_pair or min(DEFAULT_MAX_VOTES_PER_PAIR, limits.max_votes)
    if votes > limits.max_votes:
        raise InvalidInput(
            f"{field}.max_votes_per_pair", f"is {votes}, over the limit of {limits.max_votes}"
        )
    return AdaptiveSpec(k, judgments, float(confidence), votes)


def rank_request(
    req: pb.RankRequest, prefix: str, limits: Limits, defaults: Defaults
) -> tuple[str, RankSpec]:
    rid = request_id_of(req.request_id, _field(prefix, "request_id"))
    spec = rank_spec(
        rid,
        req.query,
        req.history,
        req.candidates,
        req.strategy,
        req.options,
        prefix,
        limits,
        defaults,
        adaptive=req.adaptive if req.HasField("adaptive") else None,
        reference_index=req.reference_index if req.HasField("reference_index") else None,
    )
    return rid, spec

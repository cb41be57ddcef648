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
from reward_service.gateway.planner import Comparison, OrderMode, derive_seed

ROLES = ("user", "assistant", "system")
MAX_REQUEST_ID_CHARS = 256


@dataclass(frozen=True, slots=True)
class Defaults:
    max_reasoning_tokens: int
    temperature: float


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
    )


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
}


@dataclass(frozen=True, slots=True)
class RankSpec:
    """A validated tournament: the candidates and the comparison options every match uses."""

    candidates: tuple[str, ...]
    strategy: str  # a value of STRATEGIES
    template: Comparison  # response_a/response_b are filled per match

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
) -> RankSpec:
    strategy = strategy or default_strategy
    if strategy not in STRATEGIES:
        raise InvalidInput(_field(prefix, "strategy"), f"unknown strategy {strategy}")
    name = STRATEGIES[strategy]
    limit = (
        limits.max_candidates_knockout if name == "knockout" else limits.max_candidates_round_robin
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
    return RankSpec(candidates=texts, strategy=name, template=template)


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
    )
    return rid, spec

"""Typed, immutable requests options and answers of the reward service, with their conversions
from and to the rrm.v1 messages. Callers of `policy_adapter` never handle raw protos."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING

from rrm.v1 import reward_pb2 as pb

from policy_adapter.errors import RewardServiceError, code_from_int, from_code

if TYPE_CHECKING:
    from policy_adapter.tournament import AdaptiveOptions


class Winner(IntEnum):
    UNDECIDED = pb.WINNER_UNDECIDED
    A = pb.WINNER_A
    B = pb.WINNER_B


class Order(IntEnum):
    RANDOM = pb.ORDER_RANDOM
    AS_GIVEN = pb.ORDER_AS_GIVEN
    BOTH = pb.ORDER_BOTH


class Strategy(IntEnum):
    UNSPECIFIED = pb.STRATEGY_UNSPECIFIED  # the server's default for the call
    KNOCKOUT = pb.STRATEGY_KNOCKOUT
    ELO = pb.STRATEGY_ELO
    BRADLEY_TERRY = pb.STRATEGY_BRADLEY_TERRY
    WIN_RATE = pb.STRATEGY_WIN_RATE
    SWISS = pb.STRATEGY_SWISS
    ANCHORED_KNOCKOUT = pb.STRATEGY_ANCHORED_KNOCKOUT
    IN_GROUP_REFERENCE = pb.STRATEGY_IN_GROUP_REFERENCE
    ADAPTIVE = pb.STRATEGY_ADAPTIVE  # the server's adaptive defaults: top-1, 3x budget

    @classmethod
    def parse(cls, name: str) -> Strategy:
        """A member's name in any case, "-" or "_" ("knockout", "bradley-terry", "swiss",
        "anchored_knockout", "in_group_reference", "adaptive", ...); "" = UNSPECIFIED."""
        key = name.strip().upper().replace("-", "_") or "UNSPECIFIED"
        try:
            return cls[key]
        except KeyError:
            choices = ", ".join(s.name.lower() for s in cls if s is not cls.UNSPECIFIED)
            raise ValueError(f"unknown strategy {name!r}; choose one of {choices}") from None


class ParseStatus(IntEnum):
    UNSPECIFIED = pb.PARSE_STATUS_UNSPECIFIED
    OK = pb.PARSE_STATUS_OK
    BUDGET_FORCED = pb.PARSE_STATUS_BUDGET_FORCED
    UNPARSEABLE = pb.PARSE_STATUS_UNPARSEABLE
    FAILED = pb.PARSE_STATUS_FAILED
    DEADLINE_FORCED = pb.PARSE_STATUS_DEADLINE_FORCED
    STOP_FORCED = pb.PARSE_STATUS_STOP_FORCED


@dataclass(frozen=True, slots=True)
class Turn:
    """An earlier turn of the conversation: role is "user", "assistant" or "system"."""

    role: str
    content: str


HistoryLike = Sequence[Turn] | Sequence[tuple[str, str]]


def history_pb(history: HistoryLike) -> list[pb.Message]:
    out = []
    for turn in history:
        role, content = (turn.role, turn.content) if isinstance(turn, Turn) else turn
        out.append(pb.Message(role=role, content=content))
    return out


@dataclass(frozen=True, slots=True)
class JudgeOptions:
    """Per-request judging options; None / 0 leave the server default."""

    votes: int = 0
    order: Order = Order.RANDOM
    max_reasoning_tokens: int = 0
    temperature: float | None = None
    seed: int | None = None
    return_reasoning: bool = False
    no_cache: bool = False

    def to_pb(self) -> pb.JudgeOptions:
        options = pb.JudgeOptions(
            votes=self.votes,
            order=pb.Order.ValueType(int(self.order)),
            max_reasoning_tokens=self.max_reasoning_tokens,
            return_reasoning=self.return_reasoning,
            no_cache=self.no_cache,
        )
        if self.temperature is not None:
            options.temperature = self.temperature
        if self.seed is not None:
            options.seed = self.seed
        return options


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0
    judgments: int = 0
    cache_hits: int = 0

    @classmethod
    def from_pb(cls, u: pb.Usage) -> Usage:
        return cls(
            u.prompt_tokens, u.completion_tokens, u.cached_prompt_tokens, u.judgments, u.cache_hits
        )


@dataclass(frozen=True, slots=True)
class Vote:
    a_first: bool  # A was shown as "Assistant 1"
    verdict: Winner
    p_a: float
    reasoning_tokens: int
    parse_status: ParseStatus
    reasoning: str
    error: str
    vote_index: int

    @classmethod
    def from_pb(cls, v: pb.Vote) -> Vote:
        return cls(
            a_first=v.shown_order != pb.SHOWN_ORDER_B_FIRST,
            verdict=Winner(v.verdict),
            p_a=v.p_a,
            reasoning_tokens=v.reasoning_tokens,
            parse_status=ParseStatus(v.parse_status),
            reasoning=v.reasoning,
            error=v.error,
            vote_index=v.vote_index,
        )


@dataclass(frozen=True, slots=True)
class Comparison:
    winner: Winner
    p_a: float  # probability that A is better (mean over decided votes)
    votes: tuple[Vote, ...]
    usage: Usage
    model: str
    template_version: str
    agreeing_votes: int
    order_consistent: bool
    request_id: str

    @property
    def p_b(self) -> float:
        return 1.0 - self.p_a

    @classmethod
    def from_pb(cls, r: pb.CompareResponse) -> Comparison:
        return cls(
            winner=Winner(r.winner),
            p_a=r.p_a,
            votes=tuple(Vote.from_pb(v) for v in r.votes),
            usage=Usage.from_pb(r.usage),
            model=r.model,
            template_version=r.template_version,
            agreeing_votes=r.agreeing_votes,
            order_consistent=r.order_consistent,
            request_id=r.request_id,
        )


@dataclass(frozen=True, slots=True)
class Match:
    a: int
    b: int
    winner: int | None  # a candidate index, None when no verdict could be made
    p_a: float  # probability that candidate a beats candidate b
    round: int
    votes: tuple[Vote, ...]

    def p_beats(self, i: int, j: int) -> float:
        """p(candidate i beats candidate j) for the two players of this match."""
        if (i, j) == (self.a, self.b):
            return self.p_a
        if (i, j) == (self.b, self.a):
            return 1.0 - self.p_a
        raise ValueError(f"match {self.a}-{self.b} is not between {i} and {j}")

    @classmethod
    def from_pb(cls, m: pb.Match) -> Match:
        return cls(
            a=m.a,
            b=m.b,
            winner=None if m.winner < 0 else m.winner,
            p_a=m.p_a,
            round=m.round,
            votes=tuple(Vote.from_pb(v) for v in m.votes),
        )


@dataclass(frozen=True, slots=True)
class RoundFinished:
    """A knockout round (or a round-robin progress tick) is complete."""

    round: int


@dataclass(frozen=True, slots=True)
class CandidateScore:
    index: int
    score: float  # Elo rating, Bradley-Terry strength, win rate or knockout round reached
    wins: int
    losses: int
    ci_low: float
    ci_high: float

    @classmethod
    def from_pb(cls, s: pb.CandidateScore) -> CandidateScore:
        return cls(s.index, s.score, s.wins, s.losses, s.ci_low, s.ci_high)


@dataclass(frozen=True, slots=True)
class Ranking:
    ranking: tuple[int, ...]  # candidate indices, best first
    scores: tuple[CandidateScore, ...]
    winner: int
    matches: tuple[Match, ...]
    comparisons: int
    rounds: int
    usage: Usage
    model: str
    template_version: str
    strategy: Strategy
    request_id: str

    def score_of(self, index: int) -> CandidateScore:
        return next(s for s in self.scores if s.index == index)

    def match_between(self, i: int, j: int) -> Match | None:
        return next((m for m in self.matches if {m.a, m.b} == {i, j}), None)

    @classmethod
    def from_pb(cls, r: pb.RankResponse) -> Ranking:
        return cls(
            ranking=tuple(r.ranking),
            scores=tuple(CandidateScore.from_pb(s) for s in r.scores),
            winner=r.winner,
            matches=tuple(Match.from_pb(m) for m in r.matches),
            comparisons=r.comparisons,
            rounds=r.rounds,
            usage=Usage.from_pb(r.usage),
            model=r.model,
            template_version=r.template_version,
            strategy=Strategy(r.strategy),
            request_id=r.request_id,
        )


@dataclass(frozen=True, slots=True)
class Scores:
    rewards: tuple[float, ...]  # one per candidate, in request order
    raw_scores: tuple[float, ...]  # rating / win rate / p(candidate beats the reference)
    ranking: Ranking | None  # group mode: the tournament behind the rewards
    usage: Usage
    model: str
    template_version: str
    request_id: str

    @classmethod
    def from_pb(cls, r: pb.ScoreResponse) -> Scores:
        return cls(
            rewards=tuple(r.rewards),
            raw_scores=tuple(r.raw_scores),
            ranking=Ranking.from_pb(r.rank) if r.HasField("rank") else None,
            usage=Usage.from_pb(r.usage),
            model=r.model,
            template_version=r.template_version,
            request_id=r.request_id,
        )


@dataclass(frozen=True, slots=True)
class Limits:
    max_text_chars: int
    max_pairs: int
    max_votes: int
    max_reasoning_tokens: int
    max_candidates_knockout: int
    max_candidates_round_robin: int
    max_history_turns: int
    max_message_bytes: int

    @classmethod
    def from_pb(cls, lim: pb.Limits) -> Limits:
        return cls(
            lim.max_text_chars,
            lim.max_pairs,
            lim.max_votes,
            lim.max_reasoning_tokens,
            lim.max_candidates_knockout,
            lim.max_candidates_round_robin,
            lim.max_history_turns,
            lim.max_message_bytes,
        )


@dataclass(frozen=True, slots=True)
class ServiceInfo:
    model: str
    judge_profile: str
    template_version: str
    limits: Limits
    server_version: str
    default_max_reasoning_tokens: int
    default_temperature: float

    @classmethod
    def from_pb(cls, r: pb.GetInfoResponse) -> ServiceInfo:
        return cls(
            r.model,
            r.judge_profile,
            r.template_version,
            Limits.from_pb(r.limits),
            r.server_version,
            r.default_max_reasoning_tokens,
            r.default_temperature,
        )


@dataclass(frozen=True, slots=True)
class ItemError:
    """One failed item of a CompareBatch / RankBatch answer (the other items stand)."""

    code: int  # a google.rpc.Code number
    message: str
    field: str

    def to_exception(self) -> RewardServiceError:
        return from_code(code_from_int(self.code), self.message, field=self.field)

    @classmethod
    def from_pb(cls, e: pb.ItemError) -> ItemError:
        return cls(e.code, e.message, e.field)


@dataclass(frozen=True, slots=True)
class PairRequest:
    """One item of `compare_batch`."""

    query: str
    response_a: str
    response_b: str
    history: HistoryLike = ()
    options: JudgeOptions | None = None
    request_id: str = ""


@dataclass(frozen=True, slots=True)
class RankQuery:
    """One item of `rank_batch`."""

    query: str
    candidates: Sequence[str]
    strategy: Strategy = Strategy.KNOCKOUT
    history: HistoryLike = ()
    options: JudgeOptions | None = None
    request_id: str = ""
    adaptive: AdaptiveOptions | None = None  # Strategy.ADAPTIVE only
    reference_index: int | None = None  # anchored knockout / in-group reference


RankEvent = Match | RoundFinished | Ranking  # RankStream: matches as they finish, then the result


def rank_event(e: pb.RankEvent) -> RankEvent:
    kind = e.WhichOneof("event")
    if kind == "match":
        return Match.from_pb(e.match)
    if kind == "round_finished":
        return RoundFinished(e.round_finished)
    if kind == "result":
        return Ranking.from_pb(e.result)
    raise ValueError(f"RankEvent with no event set: {e!r}")

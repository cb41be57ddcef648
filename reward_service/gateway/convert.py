"""Domain results -> rrm.v1 messages (the only place that builds response protos)."""

from __future__ import annotations

from rrm.v1 import reward_pb2 as pb

from reward_service.domain import Limits, ParseStatus
from reward_service.gateway.comparator import JudgeInfo
from reward_service.gateway.planner import ComparisonOutcome, MappedVote, Side, Stage
from reward_service.gateway.tournament import PlayedMatch, TournamentResult

_WINNER = {Side.UNDECIDED: pb.WINNER_UNDECIDED, Side.A: pb.WINNER_A, Side.B: pb.WINNER_B}
_PARSE = {
    ParseStatus.OK: pb.PARSE_STATUS_OK,
    ParseStatus.BUDGET_FORCED: pb.PARSE_STATUS_BUDGET_FORCED,
    ParseStatus.UNPARSEABLE: pb.PARSE_STATUS_UNPARSEABLE,
    ParseStatus.FAILED: pb.PARSE_STATUS_FAILED,
    ParseStatus.DEADLINE_FORCED: pb.PARSE_STATUS_DEADLINE_FORCED,
    ParseStatus.STOP_FORCED: pb.PARSE_STATUS_STOP_FORCED,
}

_STAGE = {
    Stage.NONE: pb.CASCADE_STAGE_UNSPECIFIED,
    Stage.SHORT: pb.CASCADE_STAGE_SHORT,
    Stage.FULL: pb.CASCADE_STAGE_FULL,
}


def winner_pb(side: Side) -> pb.Winner.ValueType:
    return _WINNER[side]


def vote_pb(v: MappedVote) -> pb.Vote:
    r = v.result
    return pb.Vote(
        shown_order=pb.SHOWN_ORDER_A_FIRST if v.a_first else pb.SHOWN_ORDER_B_FIRST,
        verdict=_WINNER[v.verdict],
        p_a=0.5 if v.p_a is None else v.p_a,
        reasoning_tokens=r.reasoning_tokens,
        parse_status=_PARSE[r.status],
        reasoning=r.reasoning or "",
        error=r.error or "",
        vote_index=v.vote_index,
        stage=_STAGE[v.stage],
    )


def usage_pb(outcomes: list[ComparisonOutcome]) -> pb.Usage:
    usage = pb.Usage()
    for o in outcomes:
        for v in o.votes:
            r = v.result
            usage.prompt_tokens += r.prompt_tokens
            usage.completion_tokens += r.completion_tokens
            usage.cached_prompt_tokens += r.cached_prompt_tokens
            usage.cache_hits += int(r.cache_hit)
            usage.judgments += int(r.status is not ParseStatus.FAILED and not r.cache_hit)
    return usage


def compare_response(o: ComparisonOutcome, info: JudgeInfo, request_id: str) -> pb.CompareResponse:
    return pb.CompareResponse(
        winner=_WINNER[o.winner],
        p_a=o.p_a,
        votes=[vote_pb(v) for v in o.votes],
        usage=usage_pb([o]),
        model=info.model,
        template_version=info.template_version,
        agreeing_votes=o.agreeing,
        order_consistent=o.order_consistent,
        request_id=request_id,
        decided_by=_STAGE[o.decided_by],
    )


def limits_pb(limits: Limits) -> pb.Limits:
    return pb.Limits(
        max_text_chars=limits.max_text_chars,
        max_pairs=limits.max_pairs,
        max_votes=limits.max_votes,
        max_reasoning_tokens=limits.max_reasoning_tokens,
        max_candidates_knockout=limits.max_candidates_knockout,
        max_candidates_round_robin=limits.max_candidates_round_robin,
        max_history_turns=limits.max_history_turns,
        max_message_bytes=limits.max_message_bytes,
        max_judgments_per_call=limits.max_judgments_per_call,
    )


_STRATEGY_PB = {
    "knockout": pb.STRATEGY_KNOCKOUT,
    "elo": pb.STRATEGY_ELO,
    "bradley_terry": pb.STRATEGY_BRADLEY_TERRY,
    "win_rate": pb.STRATEGY_WIN_RATE,
    "swiss": pb.STRATEGY_SWISS,
    "anchored_knockout": pb.STRATEGY_ANCHORED_KNOCKOUT,
    "in_group_reference": pb.STRATEGY_IN_GROUP_REFERENCE,
    "adaptive": pb.STRATEGY_ADAPTIVE,
}


def match_pb(m: PlayedMatch) -> pb.Match:
    return pb.Match(
        a=m.a,
        b=m.b,
        winner=-1 if m.winner is None else m.winner,
        p_a=m.p_a,
        round=m.round,
        votes=[vote_pb(v) for v in m.outcome.votes],
        advanced=-1 if m.advanced is None else m.advanced,
        decided_by=_STAGE[m.outcome.decided_by],
    )


def rank_response(r: TournamentResult, info: JudgeInfo, request_id: str) -> pb.RankResponse:
    scores = []
    for i, s in enumerate(r.stats):
        entry = pb.CandidateScore(index=i, score=s.score, wins=s.wins, losses=s.losses)
        if s.ci_low is not None and s.ci_high is not None:
            entry.ci_low, entry.ci_high = s.ci_low, s.ci_high
        scores.append(entry)
    return pb.RankResponse(
        ranking=list(r.ranking),
        scores=scores,
        winner=r.winner,
        matches=[match_pb(m) for m in r.matches],
        comparisons=len(r.matches),
        rounds=r.rounds,
        usage=usage_pb([m.outcome for m in r.matches]),
        model=info.model,
        template_version=info.template_version,
        strategy=_STRATEGY_PB[r.strategy],
        request_id=request_id,
    )

"""An HTTP reward endpoint speaking OpenRLHF's remote-RM protocol, backed by the reward service.

`POST /get_reward {"query": [...], "prompts": [...], "labels": [...]}` answers
`{"rewards": [...], "scores": [...], "extra_logs": {...}}`. OpenRLHF sends one sample per
request; in group mode the samples of a prompt (or of a group id carried in the label as
`{"group": ...}`) are buffered into a cohort of `n`, ranked once, and every waiting request is
answered. One process buffers in memory; several replicas share their cohorts through Redis
(`cohort_redis.py`), where a retry of a dead replica's request is told apart from a new
occurrence. A cohort of one sample is judged against the label's reference, else answered as
configured (an error, or the documented neutral reward), counted and logged; never a silent 0.
Any failure is a non-2xx answer (OpenRLHF retries it), never a reward. `GET /health` checks that
the reward service answers; `GET /metrics` counts cohorts in Prometheus' text format.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from policy_adapter.client import AsyncRewardClient
from policy_adapter.cohort import CohortBuffer, Cohorts
from policy_adapter.cohort_redis import (
    Codec,
    GroupFailed,
    RedisCohortConfig,
    RedisCohorts,
    connect,
)
from policy_adapter.errors import (
    DeadlineExceeded,
    InvalidArgument,
    Overloaded,
    RewardServiceError,
    ServiceUnavailable,
)
from policy_adapter.group import (
    GROUP_LOG_KEYS,
    SampleReward,
    group_sample_rewards,
    openrlhf_payload,
    reference_sample_rewards,
)
from policy_adapter.results import Strategy
from policy_adapter.texts import conversation_of, judgeable, parse_label, response_of
from policy_adapter.tournament import AdaptiveOptions, check_strategy_options

log = logging.getLogger(__name__)

# OpenRLHF gives up on a request after 180 s; a cohort must be judged well before that.
OPENRLHF_TIMEOUT_S = 180.0

# (templated prompt, group id, reference answer); "" when the label carries none
CohortKey = tuple[str, str, str]


@dataclass(frozen=True, slots=True)
class RemoteRMConfig:
    mode: Literal["group", "reference"] = "group"
    # Group mode: samples per cohort (--rollout.n_samples_per_prompt) and how long a partly
    # filled cohort waits before it is judged as is.
    n: int = 8
    flush_timeout_s: float = 60.0
    strategy: Strategy = Strategy.UNSPECIFIED
    # The strategy's options: adaptive (budget, target) and the anchor / in-group reference
    # (an index into a cohort's distinct samples, in arrival order; unset: a seeded random one).
    adaptive: AdaptiveOptions | None = None
    reference_index: int | None = None
    # Group mode: a plain-string label is a group id (else only {"group": ...} labels are).
    label_as_group: bool = False
    # Group mode: a cohort of one sample with no reference in its label is answered with an
    # error ("error") or rewarded `neutral_reward` ("neutral"); either way counted and logged.
    # A cohort of several identical samples is a tie: each gets `neutral_reward`.
    undersized: Literal["error", "neutral"] = "error"
    neutral_reward: float = 0.0
    # Group mode across replicas: cohorts kept in this Redis (None: in this process).
    redis_url: str | None = None
    shared: RedisCohortConfig = field(default_factory=RedisCohortConfig)

    def __post_init__(self) -> None:
        check_strategy_options(self.strategy, self.adaptive, self.reference_index)
        if self.n < 1:
            raise ValueError("n must be at least 1")
        if self.flush_timeout_s >= OPENRLHF_TIMEOUT_S:
            raise ValueError(
                f"flush_timeout_s must stay below OpenRLHF's {OPENRLHF_TIMEOUT_S:.0f} s timeout"
            )


class BadPayload(ValueError):
    pass


class UndersizedGroup(RuntimeError):
    """A cohort closed with a single sample and nothing to judge it against."""


def _reward_codec() -> Codec[CohortKey, SampleReward]:
    def decode_key(text: str) -> CohortKey:
        prompt, group, reference = json.loads(text)
        return (prompt, group, reference)

    def decode(text: str) -> SampleReward:
        fields = json.loads(text)
        return SampleReward(fields["reward"], fields["score"], fields["extra_logs"])

    return Codec(
        encode_key=lambda key: json.dumps(list(key)),
        decode_key=decode_key,
        encode=lambda r: json.dumps(
            {"reward": r.reward, "score": r.score, "extra_logs": r.extra_logs}
        ),
        decode=decode,
    )


def _brief(prompt: str) -> str:
    return conversation_of(prompt).query[:120]


@dataclass
class RemoteRM:
    config: RemoteRMConfig
    client: AsyncRewardClient
    cohorts: Cohorts[CohortKey, SampleReward] = field(init=False)
    # Cohorts that closed with fewer than two distinct samples, by how they were answered.
    undersized: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        group = self.config.mode == "group"
        if group and self.config.redis_url:
            replica = uuid.uuid4().hex[:12]
            self.cohorts = RedisCohorts(
                connect(self.config.redis_url, replica),
                self._judge_group,
                _reward_codec(),
                size=self.config.n,
                timeout_s=self.config.flush_timeout_s,
                replica_id=replica,
                config=self.config.shared,
            )
            return
        self.cohorts = CohortBuffer(
            self._judge_group if group else self._judge_reference,
            size=self.config.n if group else 1,
            timeout_s=self.config.flush_timeout_s,
        )

    async def start(self) -> None:
        if isinstance(self.cohorts, RedisCohorts):
            await self.cohorts.start()

    def key_of(self, prompt: str, label: object) -> CohortKey:
        if self.config.mode == "reference":
            reference = parse_label(label, plain="reference").reference
            if not reference:
                raise BadPayload(f"reference mode needs the reference answer as label: {label!r}")
            return (prompt, "", reference)
        parsed = parse_label(label, plain="group" if self.config.label_as_group else "ignore")
        return (prompt, parsed.group or "", parsed.reference or "")

    async def rewards(
        self, queries: Sequence[str], prompts: Sequence[str], labels: Sequence[object]
    ) -> list[SampleReward]:
        keyed = [
            (self.key_of(p, label), judgeable(response_of(q, p)))
            for q, p, label in zip(queries, prompts, labels, strict=True)
        ]
        return list(await asyncio.gather(*(self.cohorts.submit(k, t) for k, t in keyed)))

    async def _judge_group(
        self, key: CohortKey, texts: Sequence[str], members: int
    ) -> list[SampleReward]:
        if len(texts) < 2:
            return await self._undersized(key, texts, members)
        conversation = conversation_of(key[0])
        started = time.monotonic()
        scores = await self.client.score(
            conversation.query,
            list(texts),
            history=conversation.history,
            strategy=self.config.strategy,
            adaptive=self.config.adaptive and self.config.adaptive.for_group(len(texts)),
            reference_index=self.config.reference_index,
        )
        rewards = group_sample_rewards(scores, list(range(len(texts))))
        log.info(
            "ranked a cohort of %d in %.1f s: %s",
            len(texts),
            time.monotonic() - started,
            [round(r.reward, 3) for r in rewards],
        )
        return rewards

    async def _undersized(
        self, key: CohortKey, texts: Sequence[str], members: int
    ) -> list[SampleReward]:
        """Nothing to rank: a tie of identical samples, or one sample alone (a lost sample, a
        timeout), judged against the label's reference when it has one."""
        prompt, _, reference = key
        if members >= 2:
            self.undersized["tie"] += 1
            log.info("cohort of %r: %d identical samples, a tie", _brief(prompt), members)
            return [self._neutral(members)]
        outcome = "reference" if reference else self.config.undersized
        self.undersized[outcome] += 1
        log.warning(
            "cohort of prompt %r closed with 1 sample (of %d): %s",
            _brief(prompt),
            self.config.n,
            {
                "reference": "judged against the label's reference",
                "error": "answered with an error (--undersized error)",
                "neutral": f"rewarded the neutral {self.config.neutral_reward}",
            }[outcome],
        )
        if outcome == "neutral":
            return [self._neutral(members)]
        if outcome == "error":
            raise UndersizedGroup(
                f"the cohort of prompt {_brief(prompt)!r} closed with 1 of {self.config.n} "
                "samples and its label has no reference to judge it against "
                "(rrm remote-rm --undersized neutral rewards such samples a neutral value)"
            )
        conversation = conversation_of(prompt)
        scores = await self.client.score(
            conversation.query, list(texts), reference=reference, history=conversation.history
        )
        [alone] = reference_sample_rewards(scores)
        p = alone.reward
        logs = {k: 0.0 for k in GROUP_LOG_KEYS} | {
            "rrm_rating": p,
            "rrm_wins": float(p > 0.5),
            "rrm_losses": float(p < 0.5),
            "rrm_votes": alone.extra_logs["rrm_votes"],
            "rrm_reasoning_tokens": alone.extra_logs["rrm_reasoning_tokens"],
            "rrm_group_size": 1.0,
        }
        return [SampleReward(reward=p, score=p, extra_logs=logs)]

    def _neutral(self, members: int) -> SampleReward:
        logs = {k: 0.0 for k in GROUP_LOG_KEYS} | {"rrm_group_size": float(members)}
        return SampleReward(reward=self.config.neutral_reward, score=0.5, extra_logs=logs)

    async def _judge_reference(
        self, key: CohortKey, texts: Sequence[str], members: int
    ) -> list[SampleReward]:
        prompt, _, reference = key
        conversation = conversation_of(prompt)
        scores = await self.client.score(
            conversation.query, list(texts), reference=reference, history=conversation.history
        )
        return reference_sample_rewards(scores)

    def counters(self) -> dict[str, float]:
        c = self.cohorts
        out: dict[str, float] = {
            "rrm_remote_rm_cohorts_judged_total": c.judged_cohorts,
            "rrm_remote_rm_cohorts_timed_out_total": c.timed_out_cohorts,
        }
        if isinstance(c, RedisCohorts):
            out["rrm_remote_rm_cohorts_taken_over_total"] = c.taken_over_cohorts
            out["rrm_remote_rm_retries_adopted_total"] = c.adopted_calls
        return out


# A failed shared group's status by the closer's exception (Retry-After is the closer's alone).
_SHARED_FAILURE_STATUS = {
    "UndersizedGroup": 422,
    "InvalidArgument": 400,
    "Overloaded": 503,
    "ServiceUnavailable": 503,
    "DeadlineExceeded": 504,
}


def _error_response(exc: Exception) -> JSONResponse:
    status, headers = 500, {}
    if isinstance(exc, GroupFailed):  # judged by another replica: answer as it would have
        status = _SHARED_FAILURE_STATUS.get(exc.kind, 502)
    elif isinstance(exc, BadPayload | InvalidArgument):
        status = 400
    elif isinstance(exc, Overloaded):
        status = 503
        headers["Retry-After"] = str(max(1, round(exc.retry_after_s or 1)))
    elif isinstance(exc, ServiceUnavailable):
        status = 503
    elif isinstance(exc, DeadlineExceeded):
        status = 504
    elif isinstance(exc, UndersizedGroup):
        status = 422
    elif isinstance(exc, RewardServiceError):
        status = 502  # the judgment failed upstream (ABORTED) or another service error
    name = exc.code.name if isinstance(exc, RewardServiceError) else type(exc).__name__
    if isinstance(exc, GroupFailed) and exc.kind:
        name = exc.kind
    return JSONResponse({"error": name, "message": str(exc)}, status_code=status, headers=headers)


def _lists(body: object) -> tuple[list[str], list[str], list[object]]:
    if not isinstance(body, dict):
        raise BadPayload("the body must be a JSON object")
    queries, prompts = body.get("query"), body.get("prompts")
    labels = body.get("labels")
    if not isinstance(queries, list) or not all(isinstance(q, str) for q in queries):
        raise BadPayload('"query" must be a list of strings')
    if not isinstance(prompts, list) or len(prompts) != len(queries):
        raise BadPayload('"prompts" must be a list as long as "query"')
    if not all(isinstance(p, str) for p in prompts):
        raise BadPayload('"prompts" must be a list of strings')
    if labels is None:
        labels = [""] * len(queries)
    if not isinstance(labels, list) or len(labels) != len(queries):
        raise BadPayload('"labels" must be a list as long as "query"')
    return queries, prompts, labels


def create_app(config: RemoteRMConfig, client: AsyncRewardClient) -> Starlette:
    """The ASGI app. `client` is closed when the app shuts down."""
    rm = RemoteRM(config, client)

    async def get_reward(request: Request) -> JSONResponse:
        try:
            queries, prompts, labels = _lists(await request.json())
            if not queries:
                raise BadPayload('"query" is empty')
            samples = await rm.rewards(queries, prompts, labels)
        except ValueError as exc:  # BadPayload, JSON decoding, mismatched lists
            return _error_response(exc if isinstance(exc, BadPayload) else BadPayload(str(exc)))
        except Exception as exc:
            log.error("get_reward failed: %s", exc)
            return _error_response(exc)
        return JSONResponse(openrlhf_payload(samples))

    async def health(request: Request) -> JSONResponse:
        try:
            info = await client.info(timeout_s=5.0)
        except Exception as exc:
            return _error_response(exc)
        return JSONResponse(
            {
                "status": "ok",
                "model": info.model,
                "mode": config.mode,
                "n": config.n,
                "shared": isinstance(rm.cohorts, RedisCohorts),
                "judged_cohorts": rm.cohorts.judged_cohorts,
                "timed_out_cohorts": rm.cohorts.timed_out_cohorts,
                "undersized_cohorts": dict(rm.undersized),
            }
        )

    async def metrics(request: Request) -> PlainTextResponse:
        lines = []
        for name, value in rm.counters().items():
            lines += [f"# TYPE {name} counter", f"{name} {value}"]
        name = "rrm_remote_rm_undersized_cohorts_total"
        lines.append(f"# TYPE {name} counter")
        for outcome in ("reference", "error", "neutral", "tie"):
            lines.append(f'{name}{{outcome="{outcome}"}} {rm.undersized[outcome]}')
        return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await rm.start()
        yield
        await rm.cohorts.close()
        await client.close()

    app = Starlette(
        routes=[
            Route("/get_reward", get_reward, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.rm = rm
    return app


def serve(config: RemoteRMConfig, client: AsyncRewardClient, host: str, port: int) -> None:
    import uvicorn

    uvicorn.run(create_app(config, client), host=host, port=port, log_level="info")

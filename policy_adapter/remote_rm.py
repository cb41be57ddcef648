"""An HTTP reward endpoint speaking OpenRLHF's remote-RM protocol, backed by the reward service.

`POST /get_reward {"query": [...], "prompts": [...], "labels": [...]}` answers
`{"rewards": [...], "scores": [...], "extra_logs": {...}}`. OpenRLHF sends one sample per
request; in group mode the samples of a prompt (or of a group id carried in the label as
`{"group": ...}`) are buffered into a cohort of `n`, ranked once, and every waiting request is
answered. A repeated request for an answered sample gets the same answer without new judging.
Any failure is a non-2xx answer (OpenRLHF retries it), never a reward. `GET /health` checks that
the reward service answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from policy_adapter.client import AsyncRewardClient
from policy_adapter.cohort import CohortBuffer
from policy_adapter.errors import (
    DeadlineExceeded,
    InvalidArgument,
    Overloaded,
    RewardServiceError,
    ServiceUnavailable,
)
from policy_adapter.group import (
    SampleReward,
    group_sample_rewards,
    openrlhf_payload,
    reference_sample_rewards,
)
from policy_adapter.results import Strategy
from policy_adapter.texts import conversation_of, judgeable, parse_label, response_of

log = logging.getLogger(__name__)

# OpenRLHF gives up on a request after 180 s; a cohort must be judged well before that.
OPENRLHF_TIMEOUT_S = 180.0

CohortKey = tuple[str, str]  # (templated prompt, group id or reference answer)


@dataclass(frozen=True, slots=True)
class RemoteRMConfig:
    mode: Literal["group", "reference"] = "group"
    # Group mode: samples per cohort (--rollout.n_samples_per_prompt) and how long a partly
    # filled cohort waits before it is judged as is.
    n: int = 8
    flush_timeout_s: float = 60.0
    strategy: Strategy = Strategy.UNSPECIFIED
    # Group mode: a plain-string label is a group id (else only {"group": ...} labels are).
    label_as_group: bool = False
    result_ttl_s: float = 3600.0

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError("n must be at least 1")
        if self.flush_timeout_s >= OPENRLHF_TIMEOUT_S:
            raise ValueError(
                f"flush_timeout_s must stay below OpenRLHF's {OPENRLHF_TIMEOUT_S:.0f} s timeout"
            )


class BadPayload(ValueError):
    pass


@dataclass
class RemoteRM:
    config: RemoteRMConfig
    client: AsyncRewardClient
    buffer: CohortBuffer[CohortKey, SampleReward] = field(init=False)

    def __post_init__(self) -> None:
        group = self.config.mode == "group"
        self.buffer = CohortBuffer(
            self._judge_group if group else self._judge_reference,
            size=self.config.n if group else 1,
            timeout_s=self.config.flush_timeout_s,
            result_ttl_s=self.config.result_ttl_s,
        )

    def key_of(self, prompt: str, label: object) -> CohortKey:
        if self.config.mode == "reference":
            reference = parse_label(label, plain="reference").reference
            if not reference:
                raise BadPayload(f"reference mode needs the reference answer as label: {label!r}")
            return (prompt, reference)
        parsed = parse_label(label, plain="group" if self.config.label_as_group else "ignore")
        return (prompt, parsed.group or "")

    async def rewards(
        self, queries: Sequence[str], prompts: Sequence[str], labels: Sequence[object]
    ) -> list[SampleReward]:
        keyed = [
            (self.key_of(p, label), judgeable(response_of(q, p)))
            for q, p, label in zip(queries, prompts, labels, strict=True)
        ]
        return list(await asyncio.gather(*(self.buffer.submit(k, t) for k, t in keyed)))

    async def _judge_group(self, key: CohortKey, texts: Sequence[str]) -> list[SampleReward]:
        conversation = conversation_of(key[0])
        started = time.monotonic()
        scores = await self.client.score(
            conversation.query,
            list(texts),
            history=conversation.history,
            strategy=self.config.strategy,
        )
        rewards = group_sample_rewards(scores, list(range(len(texts))))
        log.info(
            "ranked a cohort of %d in %.1f s: %s",
            len(texts),
            time.monotonic() - started,
            [round(r.reward, 3) for r in rewards],
        )
        return rewards

    async def _judge_reference(self, key: CohortKey, texts: Sequence[str]) -> list[SampleReward]:
        prompt, reference = key
        conversation = conversation_of(prompt)
        scores = await self.client.score(
            conversation.query, list(texts), reference=reference, history=conversation.history
        )
        return reference_sample_rewards(scores)


def _error_response(exc: Exception) -> JSONResponse:
    status, headers = 500, {}
    if isinstance(exc, BadPayload | InvalidArgument):
        status = 400
    elif isinstance(exc, Overloaded):
        status = 503
        headers["Retry-After"] = str(max(1, round(exc.retry_after_s or 1)))
    elif isinstance(exc, ServiceUnavailable):
        status = 503
    elif isinstance(exc, DeadlineExceeded):
        status = 504
    elif isinstance(exc, RewardServiceError):
        status = 502  # the judgment failed upstream (ABORTED) or another service error
    name = exc.code.name if isinstance(exc, RewardServiceError) else type(exc).__name__
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
                "judged_cohorts": rm.buffer.judged_cohorts,
                "timed_out_cohorts": rm.buffer.timed_out_cohorts,
            }
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await rm.buffer.close()
        await client.close()

    app = Starlette(
        routes=[
            Route("/get_reward", get_reward, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.rm = rm
    return app


def serve(config: RemoteRMConfig, client: AsyncRewardClient, host: str, port: int) -> None:
    import uvicorn

    uvicorn.run(create_app(config, client), host=host, port=port, log_level="info")

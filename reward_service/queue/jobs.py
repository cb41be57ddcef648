"""Content-derived job ids and the explicit JSON codec for job envelopes and results.

Ids hash everything that determines a vote (request id, pair, options, shown order, vote index,
whether the reasoning is kept), so a redelivered job or a client retry with the same request id
maps to the same stored result.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from typing import Any

from reward_service.domain import Pair, ParseStatus, Turn, Verdict, VoteResult, VoteTask
from reward_service.errors import RRMError
from reward_service.queue.base import ENVELOPE_VERSION, JobEnvelope


class PoisonMessage(RRMError):
    """A queue message that cannot be decoded; it goes to the dead-letter stream."""


def _digest(*parts: str) -> str:
    h = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8", "surrogatepass")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def task_fingerprint(task: VoteTask, *, model: str, template_version: str) -> str:
    """Everything that determines a vote's distribution and what its stored answer holds (the
    verdict-cache key). `return_reasoning` is part of it: the worker keeps the reasoning only when
    asked, so a stored answer must never be handed to a caller who asked for the other kind."""
    pair = task.pair
    history = json.dumps([[t.role, t.content] for t in pair.history], ensure_ascii=False)
    return _digest(
        model,
        template_version,
        f"{task.max_reasoning_tokens}|{task.temperature!r}|{task.seed}|{task.vote_index}"
        f"|reasoning={int(task.return_reasoning)}{_non_default_options(task)}",
        history,
        pair.query,
        pair.first,
        pair.second,
    )


def _non_default_options(task: VoteTask) -> str:
    """Options added after the first release, only when they differ from their defaults: the
    ids and cache keys of jobs that do not use them stay what they were."""
    parts = [
        "|no_deadline_forcing" if not task.deadline_forcing else "",
        "|force_verdict_on_stop" if task.force_verdict_on_stop else "",
    ]
    return "".join(parts)


def job_id(request_id: str, task: VoteTask) -> str:
    """Deterministic id of one vote of one request; reruns of the same request share it."""
    return "j-" + _digest(request_id, task_fingerprint(task, model="", template_version=""))[:40]


def encode_task(task: VoteTask) -> dict[str, Any]:
    # By hand: dataclasses.asdict deep-copies every field (~15% of gateway CPU per job).
    pair = task.pair
    return {
        "pair": {
            "query": pair.query,
            "first": pair.first,
            "second": pair.second,
            "history": [{"role": t.role, "content": t.content} for t in pair.history],
        },
        "max_reasoning_tokens": task.max_reasoning_tokens,
        "temperature": task.temperature,
        "seed": task.seed,
        "return_reasoning": task.return_reasoning,
        "vote_index": task.vote_index,
        "deadline_forcing": task.deadline_forcing,
        "force_verdict_on_stop": task.force_verdict_on_stop,
    }


def decode_task(data: dict[str, Any]) -> VoteTask:
    pair = data["pair"]
    return VoteTask(
        pair=Pair(
            query=str(pair["query"]),
            first=str(pair["first"]),
            second=str(pair["second"]),
            history=tuple(Turn(str(t["role"]), str(t["content"])) for t in pair["history"]),
        ),
        max_reasoning_tokens=int(data["max_reasoning_tokens"]),
        temperature=float(data["temperature"]),
        seed=None if data["seed"] is None else int(data["seed"]),
        return_reasoning=bool(data["return_reasoning"]),
        vote_index=int(data["vote_index"]),
        # absent in jobs from gateways older than these options: their defaults
        deadline_forcing=bool(data.get("deadline_forcing", True)),
        force_verdict_on_stop=bool(data.get("force_verdict_on_stop", False)),
    )


def encode_envelope(env: JobEnvelope) -> bytes:
    body = {
        "v": env.version,
        "id": env.job_id,
        "task": encode_task(env.task),
        "deadline": env.deadline,
        "enqueued_at": env.enqueued_at,
        "tries": env.tries,
        "reply_to": env.reply_to,
        "use_cache": env.use_cache,
    }
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def decode_envelope(raw: bytes | str) -> JobEnvelope:
    """Raises PoisonMessage for anything that is not a well-formed envelope of a known version."""
    try:
        body = json.loads(raw)
        if body.get("v") != ENVELOPE_VERSION:
            raise PoisonMessage(f"unsupported envelope version {body.get('v')!r}")
        return JobEnvelope(
            job_id=str(body["id"]),
            task=decode_task(body["task"]),
            deadline=float(body["deadline"]),
            enqueued_at=float(body["enqueued_at"]),
            tries=int(body["tries"]),
            reply_to=str(body["reply_to"]),
            use_cache=bool(body["use_cache"]),
        )
    except PoisonMessage:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise PoisonMessage(f"undecodable job: {type(exc).__name__}: {exc}") from exc


def encode_result(result: VoteResult) -> bytes:
    body = asdict(result)
    body["verdict"] = int(result.verdict)
    body["status"] = str(result.status)
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()


def decode_result(raw: bytes | str) -> VoteResult:
    body = json.loads(raw)
    body["verdict"] = Verdict(body["verdict"])
    body["status"] = ParseStatus(body["status"])
    return VoteResult(**body)

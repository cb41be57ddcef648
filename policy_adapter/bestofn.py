"""Best-of-N and DPO data: sample N responses per prompt from a policy (any OpenAI-compatible
server) or read pre-generated ones, rank them through the reward service, and write

- `sft.jsonl`: the best response per prompt (`--data.input_key prompt --data.output_key response`),
- `dpo.jsonl`: `{prompt, chosen, rejected}` rows for `openrlhf.cli.train_dpo --data.prompt_key
  prompt` (best vs worst, or every adjacent pair of the ranking),
- `rankings.jsonl`: the ledger, one line per finished prompt (ranking, matches, pairs).

A prompt is in the ledger only once its SFT and DPO rows are written, so a rerun skips what is
done and redoes what is not (rows of a prompt cut off mid-write are dropped first).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx

from policy_adapter.client import AsyncRewardClient
from policy_adapter.preference import Agreement, PairMode, PreferencePair, select_pairs
from policy_adapter.results import JudgeOptions, Ranking, Strategy, Turn
from policy_adapter.texts import judgeable
from policy_adapter.tournament import AdaptiveOptions, check_strategy_options

log = logging.getLogger(__name__)

Messages = list[dict[str, str]]


@dataclass(frozen=True, slots=True)
class PromptRow:
    id: str
    prompt: str | Messages
    responses: tuple[str, ...] | None  # None: sample them from the policy


def prompt_id(prompt: object) -> str:
    blob = json.dumps(prompt, sort_keys=True, ensure_ascii=False).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def read_rows(
    path: Path, *, prompt_key: str = "prompt", responses_key: str = "responses", limit: int = 0
) -> list[PromptRow]:
    rows: list[PromptRow] = []
    seen: set[str] = set()
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            data = json.loads(line)
            prompt = data.get(prompt_key)
            if not (isinstance(prompt, str) and prompt.strip()) and not isinstance(prompt, list):
                raise ValueError(f"{path}:{line_no}: {prompt_key!r} must be a string or messages")
            responses = data.get(responses_key)
            if responses is not None and not (
                isinstance(responses, list) and all(isinstance(r, str) for r in responses)
            ):
                raise ValueError(f"{path}:{line_no}: {responses_key!r} must be a list of strings")
            row_id = str(data.get("id") or prompt_id(prompt))
            if row_id in seen:
                continue
            seen.add(row_id)
            rows.append(PromptRow(row_id, prompt, None if responses is None else tuple(responses)))
            if limit and len(rows) >= limit:
                break
    return rows


def messages_of(prompt: str | Messages) -> Messages:
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)


def judge_conversation(prompt: str | Messages) -> tuple[tuple[Turn, ...], str]:
    """(history, query) for the judge: the last user message and the turns before it."""
    messages = messages_of(prompt)
    users = [i for i, m in enumerate(messages) if m.get("role") == "user"]
    if not users:
        raise ValueError("the prompt has no user message")
    last = users[-1]
    history = tuple(Turn(m["role"], m["content"]) for m in messages[:last] if m.get("content"))
    return history, messages[last]["content"]


@dataclass(frozen=True, slots=True)
class SamplingConfig:
    base_url: str  # e.g. http://127.0.0.1:8000/v1
    model: str = ""  # "" = the first model the server lists
    n: int = 4
    temperature: float = 1.0
    top_p: float = 1.0
    max_tokens: int = 512
    separate_calls: bool = False  # N calls with n=1, for servers without `n`
    api_key: str = ""
    timeout_s: float = 300.0


class PolicySampler:
    """Samples from an OpenAI-compatible chat/completions endpoint."""

    def __init__(self, config: SamplingConfig) -> None:
        self.config = config
        headers = {"Authorization": f"Bearer {config.api_key}"} if config.api_key else {}
        self.http = httpx.AsyncClient(
            base_url=config.base_url.rstrip("/"), headers=headers, timeout=config.timeout_s
        )
        self._model = config.model

    async def close(self) -> None:
        await self.http.aclose()

    async def model(self) -> str:
        if not self._model:
            reply = await self.http.get("/models")
            reply.raise_for_status()
            self._model = str(reply.json()["data"][0]["id"])
        return self._model

    async def _complete(self, messages: Messages, n: int) -> tuple[list[str], int]:
        body = {
            "model": await self.model(),
            "messages": messages,
            "n": n,
            "temperature": self.config.temperature,
            "top_p": self.config.top_p,
            "max_tokens": self.config.max_tokens,
        }
        reply = await self.http.post("/chat/completions", json=body)
        reply.raise_for_status()
        data = reply.json()
        texts = [str(c["message"]["content"] or "") for c in data["choices"]]
        return texts, int(data.get("usage", {}).get("completion_tokens", 0))

    async def sample(self, prompt: str | Messages) -> tuple[list[str], int]:
        """N responses and the completion tokens they took."""
        messages = messages_of(prompt)
        if not self.config.separate_calls:
            return await self._complete(messages, self.config.n)
        parts = await asyncio.gather(*(self._complete(messages, 1) for _ in range(self.config.n)))
        return [t for texts, _ in parts for t in texts], sum(tokens for _, tokens in parts)


@dataclass(frozen=True, slots=True)
class BestOfNConfig:
    out_dir: Path
    strategy: Strategy = Strategy.KNOCKOUT
    pairs: PairMode = PairMode.BEST_WORST
    min_confidence: float = 0.0
    format: Literal["chat", "text"] = "chat"
    concurrency: int = 4
    options: JudgeOptions | None = None
    # The strategy's options: adaptive (budget, target) and the anchor / in-group reference
    # (an index into a prompt's distinct responses; unset: a seeded random one).
    adaptive: AdaptiveOptions | None = None
    reference_index: int | None = None

    def __post_init__(self) -> None:
        check_strategy_options(self.strategy, self.adaptive, self.reference_index)


@dataclass(frozen=True, slots=True)
class PromptResult:
    row: PromptRow
    responses: tuple[str, ...]  # distinct responses, as ranked
    ranking: Ranking
    pairs: tuple[PreferencePair, ...]
    dropped_pairs: int
    policy_tokens: int


@dataclass
class RunSummary:
    prompts: int = 0
    resumed: int = 0  # already in the ledger, skipped
    done: int = 0
    failed: int = 0
    comparisons: int = 0
    judge_prompt_tokens: int = 0
    judge_completion_tokens: int = 0
    policy_tokens: int = 0
    sft_rows: int = 0
    dpo_rows: int = 0
    dropped_pairs: int = 0
    seconds: float = 0.0
    agreement: Agreement = field(default_factory=Agreement)
    errors: list[str] = field(default_factory=list)


class OutputFiles:
    def __init__(self, out_dir: Path) -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        self.sft = out_dir / "sft.jsonl"
        self.dpo = out_dir / "dpo.jsonl"
        self.ledger = out_dir / "rankings.jsonl"

    def done_ids(self) -> set[str]:
        """Ids in the ledger; SFT/DPO rows of prompts missing from it are removed."""
        done = {json.loads(line)["id"] for line in _lines(self.ledger)}
        for path in (self.sft, self.dpo):
            lines = _lines(path)
            kept = [line for line in lines if json.loads(line)["id"] in done]
            if len(kept) != len(lines):
                log.warning(
                    "%s: dropping %d rows of unfinished prompts", path, len(lines) - len(kept)
                )
                path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
        return done

    def write(self, result: PromptResult, fmt: Literal["chat", "text"]) -> tuple[int, int]:
        row, responses, ranking = result.row, result.responses, result.ranking
        # chat: always a message list (train_dpo concatenates it with the answer's list);
        # text: a plain string (the last user message of a conversation)
        prompt: object = messages_of(row.prompt)
        if fmt == "text":
            prompt = (
                row.prompt if isinstance(row.prompt, str) else judge_conversation(row.prompt)[1]
            )

        def answer(text: str) -> object:
            return [{"role": "assistant", "content": text}] if fmt == "chat" else text

        dpo = [
            {
                "id": row.id,
                "prompt": prompt,
                "chosen": answer(responses[p.chosen]),
                "rejected": answer(responses[p.rejected]),
                "p_chosen": p.p,
            }
            for p in result.pairs
        ]
        sft = [{"id": row.id, "prompt": prompt, "response": answer(responses[ranking.winner])}]
        _append(self.dpo, dpo)
        _append(self.sft, sft)
        _append(self.ledger, [_ledger_row(result)])
        return len(sft), len(dpo)


def _lines(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _append(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
        f.flush()


def _ledger_row(result: PromptResult) -> dict[str, Any]:
    r = result.ranking
    return {
        "id": result.row.id,
        "prompt": result.row.prompt,
        "responses": list(result.responses),
        "ranking": list(r.ranking),
        "scores": [r.score_of(i).score for i in range(len(result.responses))],
        "strategy": r.strategy.name.lower(),
        "model": r.model,
        "matches": [{"a": m.a, "b": m.b, "winner": m.winner, "p_a": m.p_a} for m in r.matches],
        "pairs": [{"chosen": p.chosen, "rejected": p.rejected, "p": p.p} for p in result.pairs],
    }


async def process_row(
    row: PromptRow,
    config: BestOfNConfig,
    client: AsyncRewardClient,
    sampler: PolicySampler | None,
) -> PromptResult:
    policy_tokens = 0
    if row.responses is not None:
        sampled = list(row.responses)
    elif sampler is not None:
        sampled, policy_tokens = await sampler.sample(row.prompt)
    else:
        raise ValueError(f"prompt {row.id} has no responses and no policy endpoint was given")
    responses = tuple(dict.fromkeys(sampled))  # identical samples are one candidate
    if not responses:
        raise ValueError(f"prompt {row.id}: no responses")
    history, query = judge_conversation(row.prompt)
    ranking = await client.rank(
        query,
        [judgeable(r) for r in responses],
        strategy=config.strategy,
        adaptive=config.adaptive and config.adaptive.for_group(len(responses)),
        reference_index=config.reference_index,
        history=history,
        options=config.options,
    )
    kept = select_pairs(ranking, config.pairs, config.min_confidence)
    every = select_pairs(ranking, config.pairs, 0.0)
    return PromptResult(row, responses, ranking, tuple(kept), len(every) - len(kept), policy_tokens)


async def run_bestofn(
    rows: Sequence[PromptRow],
    config: BestOfNConfig,
    client: AsyncRewardClient,
    sampler: PolicySampler | None = None,
    on_progress: Callable[[RunSummary], None] | None = None,
) -> RunSummary:
    """Process every row not already in the ledger, `concurrency` prompts at a time."""
    started = time.monotonic()
    files = OutputFiles(config.out_dir)
    done = files.done_ids()
    todo = [r for r in rows if r.id not in done]
    summary = RunSummary(prompts=len(rows), resumed=len(rows) - len(todo))
    if on_progress:
        on_progress(summary)
    gate = asyncio.Semaphore(max(1, config.concurrency))

    async def one(row: PromptRow) -> PromptResult | BaseException:
        async with gate:
            try:
                return await process_row(row, config, client, sampler)
            except Exception as exc:
                return exc

    tasks = {asyncio.ensure_future(one(r)): r for r in todo}
    for finished in asyncio.as_completed(tasks):
        outcome = await finished
        if isinstance(outcome, BaseException):
            summary.failed += 1
            summary.errors.append(str(outcome))
            log.error("prompt failed: %s", outcome)
        else:
            sft_rows, dpo_rows = files.write(outcome, config.format)
            summary.done += 1
            summary.sft_rows += sft_rows
            summary.dpo_rows += dpo_rows
            summary.dropped_pairs += outcome.dropped_pairs
            summary.policy_tokens += outcome.policy_tokens
            usage = outcome.ranking.usage
            summary.comparisons += outcome.ranking.comparisons
            summary.judge_prompt_tokens += usage.prompt_tokens
            summary.judge_completion_tokens += usage.completion_tokens
            summary.agreement.add([outcome.ranking])
        summary.seconds = time.monotonic() - started
        if on_progress:
            on_progress(summary)
    summary.seconds = time.monotonic() - started
    return summary

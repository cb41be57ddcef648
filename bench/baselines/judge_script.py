"""(3) The judge-script status quo (RewardBench / LLM-as-judge scripts): a ThreadPoolExecutor of
OpenAI-compatible `/v1/chat/completions` calls to a vLLM api_server, plain-text messages.

Per pair, the same two steps as the service: (a) the judge's system + user messages, sampled up
to the budget; parse the last `\\boxed{Assistant N}`; (b) the verdict read: the assistant message
continued (`continue_final_message`) up to "\\boxed{Assistant " (after the completion's own box,
or after the whole completion when the budget ran out), 1 token, top-20 logprobs.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.common import Latencies, to_pair
from policy_adapter.hh_rlhf import PreferencePair
from reward_service.judge.prompt import SYSTEM_PROMPT, user_message

BOXED = re.compile(r"\\boxed\{Assistant ([12])\}")
VERDICT_PREFIX = "\\boxed{Assistant "


def verdict_continuation(completion: str, finish_reason: str) -> tuple[str, bool]:
    """The assistant text to continue for the read, and whether the judge gave a verdict."""
    found = list(BOXED.finditer(completion))
    if found:
        return completion[: found[-1].start()] + VERDICT_PREFIX, True
    return completion + "\n\n" + VERDICT_PREFIX, False


def p_first(top_logprobs: Sequence[dict[str, Any]]) -> float | None:
    """p("1") renormalised over "1" and "2" from the read's top-20 (tokens with or without a
    leading space)."""
    probs = {"1": 0.0, "2": 0.0}
    for entry in top_logprobs:
        token = entry["token"].strip()
        if token in probs:
            probs[token] += math.exp(entry["logprob"])
    total = probs["1"] + probs["2"]
    return probs["1"] / total if total > 0 else None


def judge_pair(
    client: Any, model: str, pair: PreferencePair, budget: int, read_verdict: bool = True
) -> dict[str, Any]:
    """`read_verdict=False`: the one-call status quo (the verdict parsed, no probability)."""
    messages = [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": user_message(to_pair(pair))},
    ]
    gen = client.chat.completions.create(
        model=model, messages=messages, max_tokens=budget, temperature=0.6
    )
    choice = gen.choices[0]
    text, natural = verdict_continuation(choice.message.content or "", choice.finish_reason)
    usage = {"gen_tokens": gen.usage.completion_tokens, "prompt_tokens": gen.usage.prompt_tokens}
    if not read_verdict:
        return {"p_first": None, "natural": natural, "requests": 1} | usage
    read = client.chat.completions.create(
        model=model,
        messages=[*messages, {"role": "assistant", "content": text}],
        max_tokens=1,
        temperature=1.0,
        logprobs=True,
        top_logprobs=20,
        extra_body={"continue_final_message": True, "add_generation_prompt": False},
    )
    top = [t.model_dump() for t in read.choices[0].logprobs.content[0].top_logprobs]
    return {"p_first": p_first(top), "natural": natural, "requests": 2} | usage


class JudgeScript:
    """The script's thread pool and per-thread OpenAI clients, kept across bursts."""

    def __init__(
        self, base_url: str, model: str, budget: int, threads: int, read_verdict: bool = True
    ) -> None:
        from openai import OpenAI

        self.model, self.budget, self.threads = model, budget, threads
        self.read_verdict = read_verdict
        self._local = threading.local()
        self._client = lambda: OpenAI(
            base_url=base_url, api_key="EMPTY", timeout=900, max_retries=0
        )
        self.pool = ThreadPoolExecutor(max_workers=threads)

    def close(self) -> None:
        self.pool.shutdown()

    def burst(self, pairs: Sequence[PreferencePair], budget: int = 0) -> dict[str, float]:
        latencies = Latencies()
        budget = budget or self.budget

        def one(pair: PreferencePair) -> dict[str, Any]:
            if not hasattr(self._local, "client"):
                self._local.client = self._client()
            started = time.perf_counter()
            out = judge_pair(self._local.client, self.model, pair, budget, self.read_verdict)
            latencies.add(time.perf_counter() - started)
            return out

        started = time.perf_counter()
        results = list(self.pool.map(one, pairs))
        elapsed = time.perf_counter() - started
        return {
            "judgments": len(pairs),
            "seconds": elapsed,
            "judgments_per_s": len(pairs) / elapsed,
            "p50_s": latencies.p50,
            "p99_s": latencies.p99,
            "gen_tokens": sum(r["gen_tokens"] for r in results),
            "natural_verdicts": sum(r["natural"] for r in results),
            "engine_requests": sum(r["requests"] for r in results),
        }

"""(2) The RL-framework status quo: an HTTP reward server in the pattern of OpenRLHF's
`serve_rm` (`POST /get_reward`, `{"query", "prompts", "labels"}` in, `{"rewards", "scores",
"extra_logs"}` out), running ONE judgment per request on an in-process vLLM `AsyncLLM`.

A sample is judged against a reference answer (OpenRLHF's "labels" field), HH-RLHF style:
`prompts` = "\\n\\nHuman: ...\\n\\nAssistant:", `query` = prompt + " " + response (as OpenRLHF
sends it), `labels` = the reference. The reward is p(response beats reference). The judgment is
the judge's two steps (reasoning, then the verdict read), rendered by the same `Judge`.

    python -m bench.baselines.http_rm --port 8011 --budget 128
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
from collections.abc import AsyncIterator
from typing import Any, Protocol

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from policy_adapter.hh_rlhf import PreferencePair, split_dialogue
from reward_service.domain import Pair, ParseStatus, Turn
from reward_service.judge import Judge

_ROLE = {"user": "Human", "assistant": "Assistant"}


def encode_sample(p: PreferencePair) -> tuple[str, str, str]:
    """(query, prompt, label) as OpenRLHF would send them for response `chosen`, reference
    `rejected`."""
    turns = [*p.history, ("user", p.query)]
    prompt = "".join(f"\n\n{_ROLE[role]}: {text}" for role, text in turns) + "\n\nAssistant:"
    return f"{prompt} {p.chosen}", prompt, p.rejected


def decode_sample(query: str, label: str) -> Pair:
    turns = split_dialogue(query)
    *context, (_, response) = turns
    *history, (_, question) = context
    return Pair(question, response, label, tuple(Turn(r, c) for r, c in history))


class Generate(Protocol):
    """The slice of `vllm.AsyncLLM.generate` the handler uses (a fake in the smoke test)."""

    def generate(self, prompt: Any, params: Any, request_id: str) -> AsyncIterator[Any]: ...


async def judge_one(llm: Generate, judge: Judge, pair: Pair, budget: int, rid: str) -> dict:
    """Reasoning sample, then the one-token verdict read with top-20 logprobs."""
    from vllm import SamplingParams
    from vllm.inputs import tokens_input
    from vllm.sampling_params import RequestOutputKind

    prompt = judge.render(pair)
    final = None
    params = SamplingParams(
        max_tokens=budget, temperature=0.6, output_kind=RequestOutputKind.FINAL_ONLY
    )
    async for out in llm.generate(tokens_input(prompt), params, rid):
        final = out
    assert final is not None
    text, gen_ids = final.outputs[0].text, list(final.outputs[0].token_ids)
    parsed = judge.parse(text)
    if parsed.status is ParseStatus.OK:
        read_ids = [*prompt, *judge.reread_ids(text, parsed)]
    else:
        read_ids = [*prompt, *gen_ids, *judge.forced_suffix_ids(text)]
    read_params = SamplingParams(
        max_tokens=1, temperature=1.0, logprobs=20, output_kind=RequestOutputKind.FINAL_ONLY
    )
    read = None
    async for out in llm.generate(tokens_input(read_ids), read_params, f"{rid}/verdict"):
        read = out
    assert read is not None and read.outputs[0].logprobs
    top = {tok: lp.logprob for tok, lp in read.outputs[0].logprobs[0].items()}
    p = judge.p_first(top)
    return {"reward": 0.5 if p is None else p, "gen_tokens": len(gen_ids)}


def build_app(llm_factory: Any, judge: Judge, budget: int) -> Starlette:
    """`llm_factory()` builds the engine at startup (uvicorn opens the port only after)."""
    state: dict[str, Any] = {}
    ids = itertools.count()

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        state["llm"] = llm_factory()
        yield
        shutdown = getattr(state["llm"], "shutdown", None)
        if shutdown is not None:
            shutdown()

    async def get_reward(request: Request) -> JSONResponse:
        data = await request.json()
        rewards, tokens = [], []
        n_tokens = int(data.get("budget", budget))  # not OpenRLHF's: for the benchmark's warm-up
        for query, label in zip(data["query"], data["labels"], strict=True):
            out = await judge_one(
                state["llm"], judge, decode_sample(query, label), n_tokens, f"rm-{next(ids)}"
            )
            rewards.append(out["reward"])
            tokens.append(out["gen_tokens"])
        return JSONResponse(
            {"rewards": rewards, "scores": rewards, "extra_logs": {"gen_tokens": tokens}}
        )

    async def health(_request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    return Starlette(
        routes=[Route("/get_reward", get_reward, methods=["POST"]), Route("/health", health)],
        lifespan=lifespan,
    )


def main() -> None:
    import uvicorn
    from transformers import AutoTokenizer
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.v1.engine.async_llm import AsyncLLM

    from bench.common import ENGINE, model_dir
    from reward_service.judge import detect_profile

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--budget", type=int, default=128)
    args = ap.parse_args()
    model = model_dir()
    tokenizer = AutoTokenizer.from_pretrained(model)
    judge = Judge(tokenizer, detect_profile(tokenizer))

    def engine() -> AsyncLLM:
        return AsyncLLM.from_engine_args(
            AsyncEngineArgs(model=model, disable_log_stats=True, **ENGINE.vllm_kwargs())
        )

    app = build_app(engine, judge, args.budget)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()

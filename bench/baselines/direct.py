"""(1) The physical limit: `vllm.LLM.generate` on all prompts at once, in two batches (reasoning,
then the 1-token verdict read on prompt + completion (+ forced suffix)), the judge's two steps.

Runs as its own process (the engine is torn down with it); prints one JSON line.

    python -m bench.baselines.direct --pairs 128 --budget 128
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from bench.common import ENGINE, ForeignCpu, measured_pairs, model_dir, to_pair, warm_pairs
from reward_service.domain import ParseStatus


def run(pairs: int, budget: int, warm_budget: int) -> dict[str, float]:
    from transformers import AutoTokenizer
    from vllm import LLM, SamplingParams, TokensPrompt

    from reward_service.judge import Judge, detect_profile

    model = model_dir()
    tokenizer = AutoTokenizer.from_pretrained(model)
    judge = Judge(tokenizer, detect_profile(tokenizer))
    llm = LLM(model=model, **ENGINE.vllm_kwargs())
    llm.generate([TokensPrompt(prompt_token_ids=[1, 2, 3])], SamplingParams(max_tokens=4))
    if warm_budget:
        warm = [judge.render(to_pair(p)) for p in warm_pairs(pairs)]
        print(f"warm-up: {one_round(llm, judge, warm, warm_budget)}", flush=True)
    prompts = [judge.render(to_pair(p)) for p in measured_pairs(pairs)]
    with ForeignCpu() as foreign:
        row = one_round(llm, judge, prompts, budget)
    return row | {"foreign_cores": foreign.cores}


def one_round(llm: Any, judge: Any, prompts: list[list[int]], budget: int) -> dict[str, float]:
    from vllm import SamplingParams, TokensPrompt

    started = time.perf_counter()
    gens = llm.generate(
        [TokensPrompt(prompt_token_ids=ids) for ids in prompts],
        SamplingParams(max_tokens=budget, temperature=0.6),
        use_tqdm=False,
    )
    reads = []
    for ids, out in zip(prompts, gens, strict=True):
        text, gen_ids = out.outputs[0].text, list(out.outputs[0].token_ids)
        parsed = judge.parse(text)
        if parsed.status is ParseStatus.OK:
            reads.append([*ids, *judge.reread_ids(text, parsed)])
        else:
            reads.append([*ids, *gen_ids, *judge.forced_suffix_ids(text)])
    llm.generate(
        [TokensPrompt(prompt_token_ids=ids) for ids in reads],
        SamplingParams(max_tokens=1, temperature=1.0, logprobs=20),
        use_tqdm=False,
    )
    elapsed = time.perf_counter() - started
    return {
        "judgments": len(prompts),
        "seconds": elapsed,
        "judgments_per_s": len(prompts) / elapsed,
        "p50_s": elapsed,  # one batch: every judgment ends together
        "p99_s": elapsed,
        "gen_tokens": sum(len(o.outputs[0].token_ids) for o in gens),
        "prompt_tokens": sum(map(len, prompts)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=128)
    ap.add_argument("--budget", type=int, default=128)
    ap.add_argument("--warm-budget", type=int, default=16, help="0: no warm-up burst")
    args = ap.parse_args()
    print("RESULT " + json.dumps(run(args.pairs, args.budget, args.warm_budget)), flush=True)


if __name__ == "__main__":
    main()

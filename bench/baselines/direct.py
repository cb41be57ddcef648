"""(1) The physical limit: `vllm.LLM.generate` on all prompts at once, one batch per step of the
judgment. `--judging` picks the procedure, everything else equal:

  two-call  reasoning, then a 1-token verdict read for every verdict (natural or forced)
  one-call  reasoning with top-20 logprobs; p(first) of a natural verdict read at its token, a
            second batch only for forced verdicts (and verdicts written in another tokenisation)
  text      the status quo one-call judge: reasoning only, the verdict parsed from the text, no
            probability and no forced verdict

Runs as its own process (the engine is torn down with it); prints one JSON line.

    python -m bench.baselines.direct --pairs 128 --budget 128 --judging one-call
    python -m bench.baselines.direct --pairs 32 --budget 48 --interleaved 2  # all, one engine
    RRM_ENGINE__MODEL=.cache/models/tiny-rrm \
        python -m bench.baselines.direct --pairs 64 --budget 64 --interleaved 2 --synthetic

`--synthetic`: `rrm_synthetic`'s pairs (a quarter past any budget) instead of HH-RLHF, for a judge
trained on them (the tiny RRM of `make rrm-model`, which writes its verdicts).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from typing import Any

from bench.common import ENGINE, ForeignCpu, measured_pairs, model_dir, to_pair, warm_pairs
from reward_service.domain import Pair, ParseStatus

JUDGING = ("two-call", "one-call", "text")


def run(pairs: int, budget: int, warm_budget: int, judging: str) -> dict[str, float]:
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
        print(f"warm-up: {one_round(llm, judge, warm, warm_budget, judging)}", flush=True)
    prompts = [judge.render(to_pair(p)) for p in measured_pairs(pairs)]
    with ForeignCpu() as foreign:
        row = one_round(llm, judge, prompts, budget, judging)
    return row | {"foreign_cores": foreign.cores, "judging": judging}


def block_pairs(n: int, block: int, synthetic: bool) -> list[Pair]:
    """The `block`-th set of n pairs: no two blocks share a prompt."""
    from bench.common import bench_pairs
    from reward_service.testing.rrm_synthetic import make_judgment

    if not synthetic:
        return [to_pair(p) for p in bench_pairs(n, block * n)]
    rng = random.Random(1000 + block)
    return [make_judgment(rng, long=rng.random() < 0.25).pair for _ in range(n)]


def interleaved(pairs: int, budget: int, rounds: int, synthetic: bool = False) -> dict[str, Any]:
    """Every procedure on ONE engine, alternating, each on pairs that engine has not seen: on a
    shared machine the noise falls on all of them alike (separate engines minutes apart do not
    see the same load). Returns per procedure the summed work and time of its rounds."""
    from transformers import AutoTokenizer
    from vllm import LLM, SamplingParams, TokensPrompt

    from reward_service.judge import Judge, detect_profile

    tokenizer = AutoTokenizer.from_pretrained(model_dir())
    judge = Judge(tokenizer, detect_profile(tokenizer))
    llm = LLM(model=model_dir(), **ENGINE.vllm_kwargs())
    llm.generate([TokensPrompt(prompt_token_ids=[1, 2, 3])], SamplingParams(max_tokens=4))
    warm = [judge.render(p) for p in block_pairs(pairs, 0, synthetic)]
    one_round(llm, judge, warm, 8, "two-call")
    totals: dict[str, dict[str, Any]] = {}
    block = 1
    for r in range(rounds):
        order = JUDGING if r % 2 == 0 else JUDGING[::-1]
        for judging in order:
            prompts = [judge.render(p) for p in block_pairs(pairs, block, synthetic)]
            block += 1
            row = one_round(llm, judge, prompts, budget, judging)
            print(f"round {r} {judging}: {row}", flush=True)
            total = totals.setdefault(judging, {"rounds": []})
            total["rounds"].append(row)
    for total in totals.values():
        runs = total["rounds"]
        for key in ("judgments", "seconds", "gen_tokens", "engine_requests", "forced_verdicts"):
            total[key] = sum(x[key] for x in runs)
        total["natural_verdicts"] = sum(x["natural_verdicts"] for x in runs)
        total["probabilities"] = sum(x["probabilities"] for x in runs)
        total["judgments_per_s"] = total["judgments"] / total["seconds"]
        total["gen_tokens_per_s"] = total["gen_tokens"] / total["seconds"]
    return totals


def one_round(
    llm: Any, judge: Any, prompts: list[list[int]], budget: int, judging: str
) -> dict[str, Any]:
    from vllm import SamplingParams, TokensPrompt

    started = time.perf_counter()
    top = 20 if judging == "one-call" else None
    gens = llm.generate(
        [TokensPrompt(prompt_token_ids=ids) for ids in prompts],
        SamplingParams(max_tokens=budget, temperature=0.6, logprobs=top, flat_logprobs=bool(top)),
        use_tqdm=False,
    )
    reads, natural, forced, probabilities = [], 0, 0, 0
    for ids, out in zip(prompts, gens, strict=True):
        completion = out.outputs[0]
        text, gen_ids = completion.text, list(completion.token_ids)
        parsed = judge.parse(text)
        natural += parsed.status is ParseStatus.OK
        if judging == "text":
            continue
        if parsed.status is ParseStatus.OK:
            at = judge.verdict_position(gen_ids, text, parsed) if top else None
            if at is None:
                reads.append([*ids, *judge.reread_ids(text, parsed)])
            else:
                logprobs = {k: v.logprob for k, v in completion.logprobs[at].items()}
                probabilities += judge.p_first(logprobs) is not None
        elif completion.finish_reason == "length":
            forced += 1
            reads.append([*ids, *gen_ids, *judge.forced_suffix_ids(text)])
    if reads:
        read_outs = llm.generate(
            [TokensPrompt(prompt_token_ids=ids) for ids in reads],
            SamplingParams(max_tokens=1, temperature=1.0, logprobs=20),
            use_tqdm=False,
        )
        probabilities += sum(
            judge.p_first({k: v.logprob for k, v in o.outputs[0].logprobs[0].items()}) is not None
            for o in read_outs
        )
    elapsed = time.perf_counter() - started
    return {
        "judgments": len(prompts),
        "seconds": elapsed,
        "judgments_per_s": len(prompts) / elapsed,
        "p50_s": elapsed,  # one batch per step: every judgment ends together
        "p99_s": elapsed,
        "gen_tokens": sum(len(o.outputs[0].token_ids) for o in gens),
        "prompt_tokens": sum(map(len, prompts)),
        "engine_requests": len(prompts) + len(reads),
        "natural_verdicts": natural,
        "forced_verdicts": forced,
        "probabilities": probabilities,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=128)
    ap.add_argument("--budget", type=int, default=128)
    ap.add_argument("--warm-budget", type=int, default=16, help="0: no warm-up burst")
    ap.add_argument("--judging", choices=JUDGING, default="two-call")
    ap.add_argument("--interleaved", type=int, default=0, help="rounds of every procedure")
    ap.add_argument("--synthetic", action="store_true", help="rrm_synthetic pairs (interleaved)")
    args = ap.parse_args()
    if args.interleaved:
        totals = interleaved(args.pairs, args.budget, args.interleaved, args.synthetic)
        print("RESULT " + json.dumps(totals), flush=True)
        base = totals["text"]
        for judging, t in totals.items():
            print(
                f"{judging:9s} {t['judgments_per_s']:.3f} judgments/s "
                f"({t['judgments_per_s'] / base['judgments_per_s']:.2f}x text), "
                f"{t['gen_tokens_per_s']:.1f} gen tok/s "
                f"({t['gen_tokens_per_s'] / base['gen_tokens_per_s']:.2f}x text), "
                f"{t['engine_requests'] / t['judgments']:.3f} requests/judgment, "
                f"forced {t['forced_verdicts']}, natural {t['natural_verdicts']}, "
                f"with p {t['probabilities']}",
                flush=True,
            )
        return
    row = run(args.pairs, args.budget, args.warm_budget, args.judging)
    print("RESULT " + json.dumps(row), flush=True)


if __name__ == "__main__":
    main()

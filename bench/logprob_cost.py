"""Where per-token logprobs cost in vLLM 0.32 on CPU, per decode step of a batch, without an
engine: the parts vLLM adds when a reasoning request asks for logprobs, timed for top-20, top-5,
top-2 and the two verdict tokens only (`logprob_token_ids`), interleaved so that a busy
machine's noise falls on all alike.

- sampler: `log_softmax` over the vocabulary (any logprob request), then `topk(k)` + the sampled
  token's rank (top-k) or a gather of the listed ids + rank (`logprob_token_ids`);
- output processor (in the process that owns the engine: the worker): every candidate id is
  detokenised on its own (`convert_ids_list_to_tokens`: a `decode([id])` per id) and appended.

    python -m bench.logprob_cost --batch 64 --rounds 5
"""

from __future__ import annotations

import argparse
import itertools
import time
from typing import Any

import torch
from transformers import AutoTokenizer
from vllm.logprobs import FlatLogprobs
from vllm.tokenizers.detokenizer_utils import convert_ids_list_to_tokens
from vllm.v1.sample.sampler import Sampler

from bench.common import model_dir
from reward_service.judge import Judge, detect_profile

ASKS: dict[str, int | None] = {"top20": 20, "top5": 5, "top2": 2, "ids": None, "softmax": 0}


def sampler_step(logits: torch.Tensor, sampled: torch.Tensor, k: int | None, ids: list[int]) -> Any:
    logprobs = Sampler.compute_logprobs(logits)
    if k == 0:  # log_softmax alone: what any logprob request pays before top-k or ids
        return None
    if k is not None:
        return Sampler.gather_logprobs(logprobs, k, token_ids=sampled)
    sampler = Sampler.__new__(Sampler)
    sampler.pin_memory = False
    by_row = dict.fromkeys(range(logits.shape[0]), ids)
    return sampler.gather_specific_token_logprobs(logprobs, by_row, sampled)


def output_step(tokenizer: Any, tensors: Any) -> None:
    """What vLLM's LogprobsProcessor does per request per step (flat logprobs)."""
    if tensors is None:
        return
    ids_rows = tensors.logprob_token_ids.tolist()
    value_rows = tensors.logprobs.tolist()
    for ids, values in zip(ids_rows, value_rows, strict=True):
        decoded = convert_ids_list_to_tokens(tokenizer, ids)
        FlatLogprobs().append_fast(ids, values, itertools.chain(range(len(ids))), decoded)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64, help="sequences per decode step")
    ap.add_argument("--steps", type=int, default=20, help="steps per measurement")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(model_dir())
    verdict_ids = list(Judge(tokenizer, detect_profile(tokenizer)).verdict_token_ids)
    vocab = len(tokenizer)
    logits = torch.randn(args.batch, vocab) * 4
    sampled = torch.randint(0, vocab, (args.batch,))
    totals = {name: {"sampler": 0.0, "output": 0.0} for name in ASKS}
    names = list(ASKS)
    for name in names:  # warm-up: first calls compile or allocate
        output_step(tokenizer, sampler_step(logits, sampled, ASKS[name], verdict_ids))
    for r in range(args.rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            k = ASKS[name]
            started = time.perf_counter()
            for _ in range(args.steps):
                tensors = sampler_step(logits, sampled, k, verdict_ids)
            middle = time.perf_counter()
            for _ in range(args.steps):
                output_step(tokenizer, tensors)
            ended = time.perf_counter()
            totals[name]["sampler"] += middle - started
            totals[name]["output"] += ended - middle
    steps = args.steps * args.rounds
    base = sum(totals["top20"].values())
    threads = torch.get_num_threads()
    print(f"batch {args.batch}, vocab {vocab}, {steps} steps each, torch threads {threads}")
    print("ask    sampler ms/step  output ms/step  total ms/step  x top20")
    for name, t in totals.items():
        total = t["sampler"] + t["output"]
        print(
            f"{name:6s} {1000 * t['sampler'] / steps:15.2f} {1000 * t['output'] / steps:15.2f} "
            f"{1000 * total / steps:14.2f} {total / base:8.2f}"
        )


if __name__ == "__main__":
    main()

"""Service vs. the engine alone: the same judgments through `rrm serve` and through
`vllm.LLM.generate`, in one run on one machine, with their ratio.

Both sides do the same work per judgment: sample the reasoning (temperature 0.6, up to
--max-reasoning-tokens), then one verdict read (1 token, top-20 logprobs) on the completion plus
the verdict prefix. The direct side batches all prompts at once: the physical limit here.

    .venv/bin/python bench/bench_service.py --pairs 64 --max-reasoning-tokens 128
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
from rich.console import Console
from rich.table import Table
from rrm.v1 import reward_pb2 as pb
from rrm.v1 import reward_pb2_grpc as pb_grpc

from policy_adapter.hh_rlhf import PreferencePair, load_pairs
from reward_service.domain import Pair, ParseStatus, Turn
from reward_service.settings import Settings
from reward_service.testing.serve_process import rrm_serve

ROOT = Path(__file__).resolve().parents[1]
console = Console()


def pairs_for(n: int) -> list[PreferencePair]:
    pairs = list(load_pairs(ROOT / "examples" / "hh-rlhf-harmless-256.jsonl"))
    return [pairs[i % len(pairs)] for i in range(n)]


def direct(
    model: str, pairs: list[PreferencePair], budget: int, max_model_len: int
) -> dict[str, float]:
    """All judgments through vllm.LLM.generate at once (reasoning batch, then verdict batch)."""
    from transformers import AutoTokenizer
    from vllm import LLM, SamplingParams, TokensPrompt

    from reward_service.engine.cpu_env import apply_cpu_env
    from reward_service.judge import Judge, detect_profile

    settings = Settings()
    apply_cpu_env(settings.cache_dir, settings.engine.cpu_kvcache_gib)
    tokenizer = AutoTokenizer.from_pretrained(model)
    judge = Judge(tokenizer, detect_profile(tokenizer))
    llm = LLM(
        model=model,
        enforce_eager=True,
        max_model_len=max_model_len,
        enable_prefix_caching=True,
        max_logprobs=20,
    )
    prompts = [
        judge.render(Pair(p.query, p.chosen, p.rejected, tuple(Turn(r, c) for r, c in p.history)))
        for p in pairs
    ]
    llm.generate([TokensPrompt(prompt_token_ids=prompts[0])], SamplingParams(max_tokens=4))
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
    generated = sum(len(o.outputs[0].token_ids) for o in gens)
    del llm
    gc.collect()
    return {"judgments_per_s": len(pairs) / elapsed, "seconds": elapsed, "tokens": generated}


def through_service(pairs: list[PreferencePair], budget: int) -> dict[str, float]:
    """The same judgments as concurrent Compare calls to `rrm serve` (ORDER_AS_GIVEN, 1 vote)."""
    with tempfile.TemporaryDirectory() as logs, rrm_serve(Path(logs)) as service:
        channel = grpc.insecure_channel(service.address)
        stub = pb_grpc.RewardServiceStub(channel)

        def call(i: int) -> tuple[float, pb.CompareResponse]:
            p = pairs[i]
            t0 = time.perf_counter()
            reply = stub.Compare(
                pb.CompareRequest(
                    request_id=f"bench-{time.time_ns()}-{i}",
                    query=p.query,
                    history=[pb.Message(role=r, content=c) for r, c in p.history],
                    response_a=p.chosen,
                    response_b=p.rejected,
                    options=pb.JudgeOptions(
                        order=pb.ORDER_AS_GIVEN, max_reasoning_tokens=budget, temperature=0.6
                    ),
                ),
                timeout=900,
            )
            return time.perf_counter() - t0, reply

        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=len(pairs)) as pool:
            results = list(pool.map(call, range(len(pairs))))
        elapsed = time.perf_counter() - started
        channel.close()
    latencies = sorted(r[0] for r in results)
    return {
        "judgments_per_s": len(pairs) / elapsed,
        "seconds": elapsed,
        "tokens": sum(r[1].votes[0].reasoning_tokens for r in results),
        "p50_s": statistics.median(latencies),
        "p99_s": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=64)
    ap.add_argument("--max-reasoning-tokens", type=int, default=128)
    ap.add_argument("--out", type=Path, default=ROOT / ".cache" / "bench" / "service.json")
    args = ap.parse_args()
    settings = Settings()
    pairs = pairs_for(args.pairs)
    console.print(f"[bold]{args.pairs} judgments, budget {args.max_reasoning_tokens} tokens[/]")
    with console.status("direct: vllm.LLM.generate on all prompts at once"):
        base = direct(settings.model_path(), pairs, args.max_reasoning_tokens, 2048)
    with console.status("service: rrm serve, concurrent Compare calls"):
        svc = through_service(pairs, args.max_reasoning_tokens)
    table = Table(title="judgments/s, same pairs, same budget, same machine, one run")
    for col in ("path", "judgments/s", "wall s", "gen tokens", "p50 s", "p99 s", "ratio to direct"):
        table.add_column(col)
    table.add_row(
        "vllm.LLM.generate (direct)",
        f"{base['judgments_per_s']:.2f}",
        f"{base['seconds']:.1f}",
        str(base["tokens"]),
        "-",
        "-",
        "1.00",
    )
    table.add_row(
        "rrm serve (gRPC, queue, worker)",
        f"{svc['judgments_per_s']:.2f}",
        f"{svc['seconds']:.1f}",
        str(svc["tokens"]),
        f"{svc['p50_s']:.1f}",
        f"{svc['p99_s']:.1f}",
        f"{svc['judgments_per_s'] / base['judgments_per_s']:.2f}",
    )
    console.print(table)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"direct": base, "service": svc, "args": vars(args)}, default=str, indent=2)
    )


if __name__ == "__main__":
    main()

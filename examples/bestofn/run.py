"""`make bestofn-demo`: best-of-N -> DPO data end to end on the CPU.

Starts the judge (`rrm serve` on SmolLM2-135M-Instruct) and a policy (a vLLM OpenAI api_server
on the same small model), samples 4 responses per prompt of `prompts.jsonl`, ranks them through
the reward service with `rrm bestofn` (knockout), and writes SFT and DPO JSONL that
`openrlhf.cli.train_dpo --data.prompt_key prompt --data.apply_chat_template` reads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from rich.console import Console

from reward_service.engine.cpu_env import cpu_env_defaults
from reward_service.testing.serve_process import free_port, rrm_serve

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CACHE = Path(os.environ.get("RRM_CACHE_DIR", ROOT / ".cache"))
MODEL = CACHE / "models" / "SmolLM2-135M-Instruct"
OUT = Path(os.environ.get("BESTOFN_OUT", CACHE / "examples" / "bestofn"))
N = os.environ.get("BESTOFN_N", "4")
BUDGET = os.environ.get("BESTOFN_MAX_REASONING_TOKENS", "64")
console = Console()


def start_policy(log_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, **cpu_env_defaults(CACHE, kvcache_gib=1)}
    command = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(MODEL), "--host", "127.0.0.1", "--port", str(port),
        "--enforce-eager", "--max-model-len", "2048",
    ]  # fmt: skip
    log = (log_dir / "policy.log").open("wb")
    return subprocess.Popen(command, env=env, stdout=log, stderr=log), f"http://127.0.0.1:{port}"


def wait_policy(process: subprocess.Popen[bytes], root_url: str, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"the policy server exited with code {process.returncode}")
        try:
            if httpx.get(f"{root_url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    sys.exit("the policy server did not become healthy in time")


def main() -> None:
    if not (MODEL / "config.json").exists():
        sys.exit(f"{MODEL} is missing: run `make model` first")
    OUT.mkdir(parents=True, exist_ok=True)
    logs = Path(tempfile.mkdtemp(prefix="bestofn-"))
    policy, policy_url = start_policy(logs)  # loads while the judge loads
    try:
        console.print("starting the judge (rrm serve) and the policy (vLLM), ~1 minute...")
        with rrm_serve(logs, RRM_LOG_LEVEL="WARNING") as judge:
            wait_policy(policy, policy_url)
            run(judge.address, f"{policy_url}/v1")
    finally:
        policy.terminate()
        policy.wait(timeout=60)


def run(target: str, policy_url: str) -> None:
    command = [
        sys.executable, "-m", "policy_adapter.cli", "bestofn", str(HERE / "prompts.jsonl"),
        "--out-dir", str(OUT), "--target", target, "--policy-url", policy_url,
        "-n", N, "--max-tokens", "96", "--temperature", "1.0",
        "--strategy", "knockout", "--pairs", "best-worst",
        "--max-reasoning-tokens", BUDGET,
    ]  # fmt: skip
    console.print("[bold]$[/bold] rrm " + " ".join(command[3:]))
    subprocess.run(command, check=True)
    rows = [json.loads(line) for line in (OUT / "dpo.jsonl").read_text().splitlines()]
    console.print(f"\n{len(rows)} DPO rows in {OUT / 'dpo.jsonl'}; the first:")
    console.print_json(json.dumps(rows[0], ensure_ascii=False))
    console.print(
        "\nTrain on it (GPU): deepspeed --module openrlhf.cli.train_dpo "
        f"--data.dataset {OUT / 'dpo.jsonl'} --data.prompt_key prompt "
        "--data.chosen_key chosen --data.rejected_key rejected --data.apply_chat_template "
        "--model.model_name_or_path <policy> --ckpt.output_dir ./ckpt/dpo"
    )
    console.print("(a rerun skips the prompts already in the output; delete it to start over)")


if __name__ == "__main__":
    main()

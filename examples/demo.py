"""`make demo`: start rrm-serve, judge real HH-RLHF pairs through gRPC, print a table, stop.

Runs the same `rrm serve` a user would run (gateway + embedded queue + worker + vLLM on the CPU
default judge), waits for its health check to report SERVING, then sends the pairs concurrently.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from rich.console import Console
from rich.table import Table
from rrm.v1 import reward_pb2 as pb
from rrm.v1 import reward_pb2_grpc as pb_grpc

from policy_adapter.hh_rlhf import PreferencePair, load_pairs

ROOT = Path(__file__).resolve().parent
PAIRS = int(os.environ.get("DEMO_PAIRS", "12"))
BUDGET = int(os.environ.get("DEMO_MAX_REASONING_TOKENS", "128"))
console = Console(width=120)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_serving(channel: grpc.Channel, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    started = time.monotonic()
    with console.status("starting rrm serve (loading the judge model, warm-up judgment)..."):
        while time.monotonic() - started < timeout_s:
            if proc.poll() is not None:
                sys.exit(f"rrm serve exited with code {proc.returncode}")
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=2)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    console.print(f"rrm serve is SERVING after {time.monotonic() - started:.0f} s")
                    return
            except grpc.RpcError:
                pass
            time.sleep(1)
    sys.exit("rrm serve did not become healthy in time")


def request_for(i: int, pair: PreferencePair) -> pb.CompareRequest:
    return pb.CompareRequest(
        request_id=f"demo-{i}",
        query=pair.query,
        history=[pb.Message(role=r, content=c) for r, c in pair.history],
        response_a=pair.chosen,
        response_b=pair.rejected,
        options=pb.JudgeOptions(votes=1, max_reasoning_tokens=BUDGET),
    )


def main() -> None:
    pairs = list(load_pairs(ROOT / "hh-rlhf-harmless-256.jsonl", limit=PAIRS))
    port = free_port()
    env = dict(os.environ, RRM_GATEWAY__PORT=str(port))
    log_path = ROOT.parent / ".cache" / "demo-serve.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    console.print(f"service log: {log_path}")
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "reward_service.cli", "serve"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            wait_serving(channel, proc, timeout_s=600)
            stub = pb_grpc.RewardServiceStub(channel)
            info = stub.GetInfo(pb.GetInfoRequest())
            started = time.monotonic()
            with ThreadPoolExecutor(max_workers=len(pairs)) as pool:
                replies = list(
                    pool.map(
                        lambda ip: stub.Compare(request_for(*ip), timeout=600), enumerate(pairs)
                    )
                )
            elapsed = time.monotonic() - started
        show(pairs, replies, info, elapsed)
    finally:
        proc.terminate()
        code = proc.wait(timeout=120)
        console.print(f"rrm serve stopped (exit code {code})")


def show(
    pairs: list[PreferencePair],
    replies: list[pb.CompareResponse],
    info: pb.GetInfoResponse,
    elapsed: float,
) -> None:
    table = Table(title=f"{info.model} ({info.judge_profile}, {info.template_version})")
    table.add_column("query", no_wrap=True, overflow="ellipsis", max_width=44)
    for col in ("verdict", "p(chosen)", "tokens", "how", "agrees with human"):
        table.add_column(col, no_wrap=True)
    agree = 0
    for pair, reply in zip(pairs, replies, strict=True):
        vote = reply.votes[0]
        verdict = {pb.WINNER_A: "chosen", pb.WINNER_B: "rejected"}.get(reply.winner, "undecided")
        agree += reply.winner == pb.WINNER_A
        query = " ".join(pair.query.split())
        table.add_row(
            query,
            verdict,
            f"{reply.p_a:.2f}",
            str(vote.reasoning_tokens),
            pb.ParseStatus.Name(vote.parse_status).removeprefix("PARSE_STATUS_").lower(),
            "yes" if reply.winner == pb.WINNER_A else "no",
        )
    console.print(table)
    console.print(
        f"{len(pairs)} judgments in {elapsed:.1f} s; the judge agrees with the human label on "
        f"{agree}/{len(pairs)} (a 135M model: expect near chance; RRM-7B reaches ~80% on such data)"
    )


if __name__ == "__main__":
    main()

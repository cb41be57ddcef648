"""The status-quo baselines' own logic, without an engine: the OpenRLHF-style HTTP reward server
(with a fake AsyncLLM) driven by OpenRLHF's own client code, and the judge script's parsing."""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from bench.baselines import http_rm, judge_script
from bench.common import bench_pairs, to_pair
from reward_service.testing.serve_process import free_port

MODEL = Path(__file__).resolve().parents[2] / ".cache" / "models" / "SmolLM2-135M-Instruct"


def test_openrlhf_payload_round_trips_every_example_pair() -> None:
    for p in bench_pairs(256):
        query, prompt, label = http_rm.encode_sample(p)
        assert query.startswith(prompt)
        assert http_rm.decode_sample(query, label) == to_pair(p)


class FakeLLM:
    """AsyncLLM.generate's shape: reasoning with a natural verdict, then a verdict read."""

    def __init__(self, first_id: int, second_id: int) -> None:
        self.ids = (first_id, second_id)
        self.calls: list[int] = []

    async def generate(self, prompt: Any, params: Any, request_id: str) -> AsyncIterator[Any]:
        self.calls.append(params.max_tokens)
        await asyncio.sleep(0.01)
        if params.max_tokens == 1:
            top = {
                self.ids[0]: SimpleNamespace(logprob=math.log(0.8)),
                self.ids[1]: SimpleNamespace(logprob=math.log(0.2)),
            }
            out = SimpleNamespace(text="1", token_ids=[self.ids[0]], logprobs=[top])
        else:
            out = SimpleNamespace(text="Fine. \\boxed{Assistant 1}", token_ids=[1, 2, 3, 4])
        yield SimpleNamespace(outputs=[out])


@pytest.fixture(scope="module")
def judge() -> Any:
    if not MODEL.exists():
        pytest.skip("the CPU judge is not converted (make model)")
    from transformers import AutoTokenizer

    from reward_service.judge import Judge, detect_profile

    tokenizer = AutoTokenizer.from_pretrained(MODEL)
    return Judge(tokenizer, detect_profile(tokenizer))


@pytest.fixture
def http_rm_url(judge: Any) -> Iterator[tuple[str, FakeLLM]]:
    import uvicorn

    llm = FakeLLM(*judge.verdict_token_ids)
    port = free_port()
    app = http_rm.build_app(lambda: llm, judge, budget=16)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}/get_reward", llm
    server.should_exit = True
    thread.join(10)


async def test_http_rm_answers_openrlhf_client_one_judgment_per_call(
    http_rm_url: tuple[str, FakeLLM],
) -> None:
    pytest.importorskip("openrlhf.utils.agent")
    from bench.baselines.openrlhf_client import reward_all

    url, llm = http_rm_url
    samples = [http_rm.encode_sample(p) for p in bench_pairs(6)]
    results, latencies = await reward_all(url, samples)
    assert [r["rewards"] for r in results] == [[pytest.approx(0.8)]] * 6
    assert len(latencies.seconds) == 6
    assert sorted(llm.calls) == [1] * 6 + [16] * 6, "reasoning + verdict read per sample"


def test_judge_script_continues_after_the_last_box_or_the_whole_completion() -> None:
    text, natural = judge_script.verdict_continuation("so \\boxed{Assistant 2} ok", "stop")
    assert (text, natural) == ("so \\boxed{Assistant ", True)
    text, natural = judge_script.verdict_continuation("still thinking", "length")
    assert (text, natural) == ("still thinking\n\n\\boxed{Assistant ", False)
    top = [
        {"token": "1", "logprob": math.log(0.3)},
        {"token": " 2", "logprob": math.log(0.1)},
        {"token": "x", "logprob": math.log(0.6)},
    ]
    assert judge_script.p_first(top) == pytest.approx(0.75)
    assert judge_script.p_first([{"token": "x", "logprob": 0.0}]) is None

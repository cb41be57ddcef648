"""Verdicts within the caller's deadline on a remote engine: the OpenAI-compatible engine streams a
generation that has a deadline, keeps what arrives, and closes the stream at the deadline, which
aborts the request on the vLLM api_server. One real api_server (CPU judge) for the module, used
directly and behind the real service (`rrm serve` with the openai engine)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from rrm.v1 import reward_pb2 as pb
from rrm.v1 import reward_pb2_grpc as pb_grpc
from transformers import PreTrainedTokenizerBase

from reward_service.engine.base import SamplingSpec
from reward_service.engine.openai_engine import OpenAIEngine
from reward_service.testing.serve_process import RunningService, rrm_serve
from tests.engine.support import STORY, ApiServer, RenderPrompt, wait_until
from tests.engine.test_openai_engine import running_requests

pytestmark = pytest.mark.engine


@pytest.fixture(scope="module")
def remote_service(
    vllm_server: ApiServer, model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningService]:
    """`rrm serve` (gateway + embedded queue + worker) judging on the module's api_server; the
    reasoning call asks for logprobs, so a natural verdict's p comes from the streamed ones."""
    log_dir = Path(tmp_path_factory.mktemp("rrm-serve-openai"))
    with rrm_serve(
        log_dir,
        RRM_GATEWAY__METRICS_PORT="0",
        RRM_ENGINE__KIND="openai",
        RRM_ENGINE__BASE_URL=vllm_server.base_url,
        RRM_ENGINE__MODEL=str(model_dir),
        RRM_JUDGE__VERDICT_IN_REASONING_CALL="true",
        # on a loaded 2-core machine a judge prompt can take 10 s to prefill and the forced read
        # as long again: more room than the default 5 s (the mechanism is the same)
        RRM_WORKER__DEADLINE_MARGIN_S="20",
    ) as service:
        yield service


async def test_a_streamed_generation_equals_the_plain_one(
    openai_engine: OpenAIEngine, chat_prompt: RenderPrompt
) -> None:
    """Same tokens, text, per-token logprobs and usage whether streamed (it has a deadline,
    far away) or not: a natural verdict's probability and the token accounting hold."""
    prompt = chat_prompt(f"{time.time_ns()} " + "The sky is blue. " * 60 + "Why is it blue?")
    plain_spec = SamplingSpec(max_tokens=24, temperature=0.0, logprobs=5)
    streamed_spec = SamplingSpec(
        max_tokens=24, temperature=0.0, logprobs=5, end_by=time.time() + 120
    )

    plain = await openai_engine.generate(prompt, plain_spec, "o-plain")
    streamed = await openai_engine.generate(prompt, streamed_spec, "o-streamed")

    assert streamed.finish_reason == plain.finish_reason == "length"
    assert streamed.token_ids == plain.token_ids and len(streamed.token_ids) == 24
    assert streamed.text == plain.text
    assert streamed.prompt_tokens == plain.prompt_tokens == len(prompt)
    # the plain call put the prompt in the prefix cache; the stream's last chunk says so
    assert streamed.cached_prompt_tokens >= len(prompt) // 2
    assert streamed.logprobs is not None and plain.logprobs is not None
    assert len(streamed.logprobs) == len(plain.logprobs) == 24
    for remote, local in zip(streamed.logprobs, plain.logprobs, strict=True):
        assert remote.keys() == local.keys()
        for token_id, logprob in local.items():
            assert remote[token_id] == pytest.approx(logprob, abs=1e-3)


async def test_the_deadline_cuts_the_request_and_keeps_what_was_generated(
    openai_engine: OpenAIEngine,
    vllm_server: ApiServer,
    chat_prompt: RenderPrompt,
    tokenizer: PreTrainedTokenizerBase,
) -> None:
    spec = SamplingSpec(max_tokens=1900, temperature=1.0, logprobs=5, end_by=time.time() + 10.0)
    task = asyncio.create_task(openai_engine.generate(chat_prompt(STORY), spec, "o-cut"))
    # the server runs it (on a loaded machine it may even be cut before the gauge shows it)
    await wait_until(lambda: task.done() or running_requests(vllm_server) == 1, timeout_s=20)
    gen = await task
    returned_at = time.time()

    assert returned_at - spec.end_by < 1.0, "returned late"
    assert gen.finish_reason == "deadline"
    assert 0 < len(gen.token_ids) < 1900
    assert gen.logprobs is not None and len(gen.logprobs) == len(gen.token_ids)
    for sampled, position in zip(gen.token_ids, gen.logprobs, strict=True):
        assert sampled in position
    decoded = tokenizer.decode(list(gen.token_ids), skip_special_tokens=True)
    assert gen.text and decoded.startswith(gen.text)
    # closing the stream aborted the request on the server (it would run ~1900 tokens)
    waited = await wait_until(lambda: running_requests(vllm_server) == 0, timeout_s=3)
    print(f"{len(gen.token_ids)} tokens by the deadline; server aborted {waited:.2f} s after")


async def test_a_deadline_already_passed_sends_nothing(openai_engine: OpenAIEngine) -> None:
    spec = SamplingSpec(max_tokens=64, end_by=time.time() - 1)
    gen = await openai_engine.generate([1, 2, 3], spec, "o-late")
    assert (gen.token_ids, gen.finish_reason) == ((), "deadline")


def long_compare(budget: int, *, opt_out: bool = False) -> pb.CompareRequest:
    return pb.CompareRequest(
        request_id=f"remote-deadline-{time.time_ns()}",
        query=f"{time.time_ns()} Write a very long essay about the history of lighthouses.",
        response_a="Lighthouses guided ships for centuries, from Pharos to LED beacons.",
        response_b="idk",
        options=pb.JudgeOptions(
            max_reasoning_tokens=budget,
            votes=2,
            order=pb.ORDER_AS_GIVEN,
            no_deadline_forcing=opt_out,
        ),
    )


@pytest.mark.timeout(480)  # up to 3 calls of 60 s, after `rrm serve` starts for this module
async def test_the_service_answers_a_long_judgment_before_the_deadline(
    remote_service: RunningService, vllm_server: ApiServer
) -> None:
    """A 1500-token budget takes the CPU judge far longer than the 60 s the caller gives: its
    votes are cut near (deadline - 20 s margin), their reasoning so far is kept and the verdict
    forced from it; the server's reasoning requests were aborted, not left running."""
    # The CPU judge sometimes stops by itself (UNPARSEABLE) before the cut: then nothing was
    # forced and the call proves nothing about the cut, so it is asked again (at most 3 calls).
    forced: list[pb.Vote] = []
    statuses: list[list[int]] = []
    with grpc.insecure_channel(remote_service.address) as channel:
        stub = pb_grpc.RewardServiceStub(channel)
        for _ in range(3):
            started = time.monotonic()
            reply = await asyncio.to_thread(stub.Compare, long_compare(1500), timeout=60.0)
            assert time.monotonic() - started < 60.0
            statuses.append([v.parse_status for v in reply.votes])
            forced = [v for v in reply.votes if v.parse_status == pb.PARSE_STATUS_DEADLINE_FORCED]
            if forced:
                break
    assert forced, statuses
    for vote in forced:  # the others stopped by themselves first
        assert vote.verdict in (pb.WINNER_A, pb.WINNER_B)
        assert 0.0 < vote.p_a < 1.0
        # it reasoned for a while (the partial reasoning was kept), not to its budget
        assert 0 < vote.reasoning_tokens < 1500
    await wait_until(lambda: running_requests(vllm_server) == 0, timeout_s=2)


async def test_opting_out_of_deadline_forcing_misses_the_deadline(
    remote_service: RunningService, vllm_server: ApiServer
) -> None:
    with grpc.insecure_channel(remote_service.address) as channel:
        stub = pb_grpc.RewardServiceStub(channel)
        with pytest.raises(grpc.RpcError) as err:
            await asyncio.to_thread(stub.Compare, long_compare(1500, opt_out=True), timeout=8.0)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    # the worker drops the expired job, which closes its request: the server is idle again
    await wait_until(lambda: running_requests(vllm_server) == 0, timeout_s=15)

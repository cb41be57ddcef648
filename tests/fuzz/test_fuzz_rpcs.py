"""Hypothesis fuzz of every RPC's fields: empty, huge, non-ASCII, control characters, chat-template
special tokens, n = 0, 1, limit + 1 candidates, extreme option values.

The stack is the real gateway, embedded queue, worker and judge (the CPU model's real tokenizer
and chat template, the prompt guard, verdict parsing) on a real gRPC port; only the engine is the
ScriptedEngine test double, so thousands of calls run in seconds. Expectations: no INTERNAL or
UNKNOWN status, no hang, and the service healthy and correct afterwards.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rrm.v1 import reward_pb2 as pb
from rrm.v1 import reward_pb2_grpc as pb_grpc

from reward_service.domain import Limits
from reward_service.gateway.comparator import Comparator, JudgeInfo
from reward_service.gateway.prompt_guard import ContextGuard
from reward_service.gateway.server import GatewayServer
from reward_service.gateway.service import RewardService
from reward_service.gateway.validation import Defaults
from reward_service.judge import Judge, JudgeProfile
from reward_service.queue.memory import MemoryBroker
from reward_service.testing.scripted_engine import EngineCall, ScriptedEngine, ScriptedReply
from reward_service.worker.engine_runner import EngineVoteRunner
from reward_service.worker.worker import Worker

MODEL = Path(__file__).resolve().parents[2] / ".cache" / "models" / "SmolLM2-135M-Instruct"
LIMITS = Limits(
    max_text_chars=4000,
    max_pairs=8,
    max_votes=5,
    max_reasoning_tokens=64,
    max_candidates_knockout=8,
    max_candidates_round_robin=5,
    max_history_turns=4,
)
ALLOWED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.DEADLINE_EXCEEDED,
}
SPECIALS = [
    "<|im_start|>",
    "<|im_end|>",
    "<|endoftext|>",
    "<｜Assistant｜>",
    "<｜User｜>",
    "<think>",
    "</think>",
    "\\boxed{Assistant 1}",
    "\\boxed{Assistant 2}",
    "## Assistant responses",
    "### Assistant 2\n\n",
    "\x00",
    "\u202e",
    "\ud7ff",
    "🦜",
    "\r\n",
    "\t",
]
texts = st.one_of(
    st.text(max_size=40),
    st.sampled_from(SPECIALS),
    st.lists(st.sampled_from(SPECIALS) | st.text(max_size=8), max_size=6).map("".join),
    st.sampled_from(["", " ", "\n\n", "x" * (LIMITS.max_text_chars + 1), "y" * 3000]),
)
u32 = st.one_of(st.integers(0, 8), st.sampled_from([63, 64, 65, 2**31, 2**32 - 1]))
valid_options = st.builds(
    pb.JudgeOptions,
    votes=st.integers(0, 3),
    order=st.integers(0, 2),
    max_reasoning_tokens=st.integers(0, 32),
    temperature=st.floats(0, 2, width=32),
    seed=st.integers(0, 2**64 - 1),
    return_reasoning=st.booleans(),
)
extreme_options = st.builds(
    pb.JudgeOptions,
    votes=u32,
    order=st.integers(0, 4),
    max_reasoning_tokens=u32,
    temperature=st.one_of(
        st.floats(allow_nan=True, allow_infinity=True, width=32), st.sampled_from([0.0, 2.0])
    ),
    seed=st.integers(0, 2**64 - 1),
    return_reasoning=st.booleans(),
    no_cache=st.booleans(),
)
# mostly valid options, so that the fuzz reaches rendering and judging, not just validation
options = st.one_of(valid_options, valid_options, valid_options, extreme_options)
plain = st.text(min_size=1, max_size=40).filter(str.strip)
texts = st.one_of(plain, plain, plain, texts)
history = st.lists(
    st.builds(
        pb.Message, role=st.sampled_from(["user", "assistant", "system", "", "tool"]), content=texts
    ),
    max_size=LIMITS.max_history_turns + 1,
)
compare = st.builds(
    pb.CompareRequest,
    request_id=st.text(max_size=300),
    query=texts,
    history=history,
    response_a=texts,
    response_b=texts,
    options=options,
)
candidates = st.one_of(
    st.lists(texts, max_size=3),
    st.integers(0, 9).map(lambda n: [f"c{i}" * (i + 1) for i in range(n)]),
)
rank = st.one_of(
    st.builds(
        pb.RankRequest,
        query=plain,
        candidates=st.lists(plain, min_size=1, max_size=5),
        strategy=st.integers(0, 4),
        options=valid_options,
    ),
    st.builds(
        pb.RankRequest,
        request_id=st.text(max_size=20),
        query=texts,
        history=history,
        candidates=candidates,
        strategy=st.integers(0, 6),
        options=options,
    ),
)
score = st.one_of(
    st.builds(
        pb.ScoreRequest,
        query=plain,
        candidates=candidates,
        mode=st.sampled_from([0, 1]),
        strategy=st.integers(0, 4),
        options=valid_options,
    ),
    st.builds(
        pb.ScoreRequest,
        query=plain,
        candidates=candidates,
        mode=st.just(2),
        reference=plain,
        options=valid_options,
    ),
    st.builds(
        pb.ScoreRequest,
        query=texts,
        candidates=candidates,
        mode=st.integers(0, 3),
        reference=texts,
        strategy=st.integers(0, 5),
        options=options,
    ),
)


def reply(call: EngineCall) -> ScriptedReply:
    """Scripted engine double: a verdict on the first call, verdict logprobs on the read."""
    if call.spec.max_tokens == 1:
        return ScriptedReply(text="1", token_ids=(33,), logprobs=({33: -0.2, 34: -1.8},))
    return ScriptedReply(text="I pick \\boxed{Assistant 1}", token_ids=(1, 2, 3))


class ThreadedStack:
    """The stack on its own event loop in a thread, so sync clients can call it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.port = self._run(self._start())

    def _run(self, coro):  # type: ignore[no-untyped-def]
        done: Future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return done.result(timeout=60)

    async def _start(self) -> int:
        from transformers import AutoTokenizer

        judge = Judge(AutoTokenizer.from_pretrained(MODEL), JudgeProfile.GENERIC)
        self.engine = ScriptedEngine(replies=reply)
        self.broker = MemoryBroker(max_depth=2000)
        self.worker = Worker(
            self.broker, EngineVoteRunner(judge, self.engine, max_model_len=2048), max_in_flight=64
        )
        comparator = Comparator(self.broker, guard=ContextGuard(judge, 2048))
        service = RewardService(
            comparator,
            JudgeInfo("scripted", "generic", judge.template_version),
            limits=LIMITS,
            defaults=Defaults(max_reasoning_tokens=16, temperature=0.6),
            default_deadline_s=20,
        )
        self.server = GatewayServer(service, port=0, max_message_bytes=1 << 20)
        port = await self.server.start()
        self.worker_task = asyncio.ensure_future(self.worker.run(grace_s=1))
        await self.server.warm_up(comparator)
        return port

    async def _stop(self) -> None:
        await self.server.stop(0.5)
        self.worker.stop()
        await self.worker_task

    def close(self) -> None:
        self._run(self._stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


CODES: Counter[str] = Counter()


@pytest.fixture(scope="module")
def channel() -> Iterator[grpc.Channel]:
    stack = ThreadedStack()
    with grpc.insecure_channel(f"127.0.0.1:{stack.port}") as ch:
        yield ch
    stack.close()


def call(fn, request) -> grpc.StatusCode:  # type: ignore[no-untyped-def]
    try:
        result = fn(request, timeout=30)
        if hasattr(result, "__iter__") and not hasattr(result, "ListFields"):
            list(result)  # drain streams
        code = grpc.StatusCode.OK
    except grpc.RpcError as err:
        code = err.code()
        assert code in ALLOWED, f"{code}: {err.details()}"
        assert code != grpc.StatusCode.DEADLINE_EXCEEDED, "a fuzz input hung the service"
    CODES[f"{fn._method.decode().rsplit('/', 1)[-1]}:{code.name}"] += 1
    return code


# derandomize: the same examples every run, so CI is reproducible
FUZZ = settings(
    max_examples=150, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
)


@FUZZ
@given(compare)
def test_fuzz_compare(channel: grpc.Channel, request: pb.CompareRequest) -> None:
    call(pb_grpc.RewardServiceStub(channel).Compare, request)


@FUZZ
@given(st.lists(compare, max_size=LIMITS.max_pairs + 1))
def test_fuzz_compare_batch(channel: grpc.Channel, pairs: list[pb.CompareRequest]) -> None:
    stub = pb_grpc.RewardServiceStub(channel)
    if call(stub.CompareBatch, pb.CompareBatchRequest(pairs=pairs)) == grpc.StatusCode.OK:
        reply = stub.CompareBatch(pb.CompareBatchRequest(pairs=pairs), timeout=30)
        assert len(reply.results) == len(pairs)
        for r in reply.results:
            if r.WhichOneof("outcome") == "error":
                assert r.error.code in (3, 8) and r.error.field.startswith("pairs[")


@FUZZ
@given(rank)
def test_fuzz_rank_and_stream(channel: grpc.Channel, request: pb.RankRequest) -> None:
    stub = pb_grpc.RewardServiceStub(channel)
    call(stub.Rank, request)
    call(stub.RankStream, request)


@FUZZ
@given(st.lists(rank, max_size=3))
def test_fuzz_rank_batch(channel: grpc.Channel, requests: list[pb.RankRequest]) -> None:
    call(pb_grpc.RewardServiceStub(channel).RankBatch, pb.RankBatchRequest(requests=requests))


@FUZZ
@given(score)
def test_fuzz_score(channel: grpc.Channel, request: pb.ScoreRequest) -> None:
    call(pb_grpc.RewardServiceStub(channel).Score, request)


def test_service_is_healthy_and_correct_after_fuzzing(channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    reply = pb_grpc.RewardServiceStub(channel).Compare(
        pb.CompareRequest(
            query="q",
            response_a="a",
            response_b="b",
            options=pb.JudgeOptions(order=pb.ORDER_AS_GIVEN),
        ),
        timeout=10,
    )
    assert reply.winner == pb.WINNER_A and reply.p_a == pytest.approx(0.832, abs=0.01)
    assert sum(CODES.values()) >= 500, CODES
    for method in ("Compare", "CompareBatch", "Rank", "RankStream", "RankBatch", "Score"):
        assert CODES[f"{method}:OK"] >= 10, f"the fuzz rarely got past validation of {method}"
    assert not any(k.endswith(("INTERNAL", "UNKNOWN")) for k in CODES)
    print("fuzz status counts:", dict(sorted(CODES.items())))


def test_a_prompt_over_the_context_is_invalid_argument_at_the_gateway(
    channel: grpc.Channel,
) -> None:
    stub = pb_grpc.RewardServiceStub(channel)
    long = "\n".join(f"{i}" for i in range(1000))  # ~3,900 characters, over 2,048 tokens
    with pytest.raises(grpc.RpcError) as err:
        stub.Compare(pb.CompareRequest(query="q", response_a=long, response_b="b"), timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details().startswith("prompt: the rendered prompt is")
    batch = stub.CompareBatch(
        pb.CompareBatchRequest(
            pairs=[
                pb.CompareRequest(query="q", response_a="a", response_b="b"),
                pb.CompareRequest(query="q", response_a=long, response_b="b"),
            ]
        ),
        timeout=10,
    )
    assert batch.results[0].WhichOneof("outcome") == "response"
    assert batch.results[1].error.field == "pairs[1].prompt"

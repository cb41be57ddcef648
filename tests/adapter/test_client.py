"""RewardClient / AsyncRewardClient over a real gRPC channel to the scripted service stack."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from rrm.v1 import reward_pb2 as pb

from policy_adapter import (
    AsyncRewardClient,
    InvalidArgument,
    ItemError,
    JudgeOptions,
    JudgmentFailed,
    Overloaded,
    PairRequest,
    RankQuery,
    RetryPolicy,
    RewardClient,
    ServiceUnavailable,
    Strategy,
    TLSConfig,
    Unauthenticated,
    Winner,
)
from policy_adapter.errors import DeadlineExceeded
from policy_adapter.results import Match, Ranking, RoundFinished
from reward_service.gateway.auth import AuthInterceptor
from reward_service.gateway.server import GatewayServer, tls_credentials
from tests.adapter.conftest import address_of
from tests.adapter.harness import free_socket
from tests.gateway.conftest import Stack, close_stack, make_stack

CANDIDATES = ["xxx", "xxxxxxxxx", "x", "xxxxxxx"]  # the longest (index 1) wins
FAST_RETRY = RetryPolicy(max_attempts=3, initial_backoff_s=0.05, max_backoff_s=0.1)


async def test_every_call_returns_typed_results(scripted: Stack) -> None:
    async with AsyncRewardClient(address_of(scripted)) as client:
        compared = await client.compare("q", "a long answer", "short", request_id="c1")
        assert compared.winner is Winner.A and compared.p_a == pytest.approx(0.9)
        assert compared.p_b == pytest.approx(0.1)
        assert compared.request_id == "c1" and compared.model == "scripted"
        assert compared.votes[0].verdict is Winner.A and compared.usage.judgments == 1

        ranked = await client.rank("q", CANDIDATES, history=[("user", "hi"), ("assistant", "yo")])
        assert ranked.winner == 1 and ranked.ranking[0] == 1
        assert ranked.strategy is Strategy.KNOCKOUT and ranked.comparisons == 3
        assert ranked.score_of(1).wins == 2
        final = next(m for m in ranked.matches if m.round == ranked.rounds)
        assert final.winner == 1 and final.p_beats(1, final.a if final.b == 1 else final.b) > 0.5

        group = await client.score("q", CANDIDATES, strategy=Strategy.WIN_RATE)
        assert group.ranking is not None and group.ranking.winner == 1
        assert group.rewards[1] == max(group.rewards) and group.rewards[2] == min(group.rewards)

        ref = await client.score("q", ["a long answer", "s"], reference="ref")
        assert ref.ranking is None and ref.rewards == pytest.approx((0.9, 0.1))

        info = await client.info()
        assert info.model == "scripted" and info.limits.max_pairs == 8


async def test_batches_keep_per_item_errors_in_place(scripted: Stack) -> None:
    async with AsyncRewardClient(address_of(scripted)) as client:
        pairs = await client.compare_batch(
            [PairRequest("q", "longer one", "s"), PairRequest("q", "", "s")]
        )
        assert pairs[0].winner is Winner.A  # type: ignore[union-attr]
        error = pairs[1]
        assert isinstance(error, ItemError) and error.field == "pairs[1].response_a"
        assert isinstance(error.to_exception(), InvalidArgument)

        ranks = await client.rank_batch(
            [RankQuery("q", ["a", "aaa", "aa"]), RankQuery("q", [], strategy=Strategy.ELO)]
        )
        assert ranks[0].winner == 1  # type: ignore[union-attr]
        assert isinstance(ranks[1], ItemError) and ranks[1].field == "requests[1].candidates"


async def test_blocking_client_shares_one_channel_across_threads(scripted: Stack) -> None:
    def work() -> list[float]:
        with RewardClient(address_of(scripted), options=JudgeOptions(votes=1)) as client:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(4) as pool:
                replies = list(
                    pool.map(lambda i: client.compare("q", "x" * (i + 2), "x"), range(8))
                )
            return [r.p_a for r in replies]

    assert await asyncio.to_thread(work) == pytest.approx([0.9] * 8)


async def test_rank_stream_yields_matches_rounds_then_the_ranking(scripted: Stack) -> None:
    async with AsyncRewardClient(address_of(scripted)) as client:
        events = [e async for e in client.rank_stream("q", CANDIDATES, request_id="s1")]
    matches = [e for e in events if isinstance(e, Match)]
    rounds = [e.round for e in events if isinstance(e, RoundFinished)]
    *_, last = events
    assert isinstance(last, Ranking) and last.winner == 1 and last.request_id == "s1"
    assert len(matches) == 3 and rounds == [1, 2], "knockout of 4: 3 matches in 2 rounds"
    assert sorted((m.a, m.b, m.winner) for m in matches) == sorted(
        (m.a, m.b, m.winner) for m in last.matches
    ), "the streamed matches are the result's matches"
    # every match of round 1 arrives before round 1 is reported finished
    first_done = events.index(RoundFinished(1))
    assert all(events.index(m) < first_done for m in matches if m.round == 1)

    def blocking() -> list[object]:
        with RewardClient(address_of(scripted)) as client:
            return list(client.rank_stream("q", CANDIDATES, strategy=Strategy.ELO))

    streamed = await asyncio.to_thread(blocking)
    assert isinstance(streamed[-1], Ranking) and streamed[-1].winner == 1
    assert sum(isinstance(e, Match) for e in streamed) == 6, "round robin of 4: 6 matches"


async def test_rank_stream_errors_are_typed(scripted: Stack) -> None:
    async with AsyncRewardClient(address_of(scripted)) as client:
        with pytest.raises(InvalidArgument, match="candidates"):
            [e async for e in client.rank_stream("q", [])]
    with free_socket() as sock:  # nothing listening: retried, then raised
        client = AsyncRewardClient(f"127.0.0.1:{sock.getsockname()[1]}", retry=FAST_RETRY)
        with pytest.raises(ServiceUnavailable):
            [e async for e in client.rank_stream("q", CANDIDATES)]
        await client.close()


async def test_calls_shed_by_the_server_with_cancelled_are_retried() -> None:
    """The server here is a TEST DOUBLE (a generic handler that sheds its first two calls with
    CANCELLED, as gRPC's server core does under a flood: seen against the real gateway in
    bench/bench_queue.py); the thing under test is the client's retry."""
    calls = 0

    async def get_info(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
        nonlocal calls
        calls += 1
        if calls <= 2:
            await context.abort(grpc.StatusCode.CANCELLED, "CANCELLED")
        return pb.GetInfoResponse(model="shedding-double").SerializeToString()

    handler = grpc.method_handlers_generic_handler(
        "rrm.v1.RewardService", {"GetInfo": grpc.unary_unary_rpc_method_handler(get_info)}
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with AsyncRewardClient(f"127.0.0.1:{port}", retry=FAST_RETRY) as client:
            info = await client.info()
        assert info.model == "shedding-double" and calls == 3
    finally:
        await server.stop(0)


async def test_invalid_argument_names_the_field(scripted: Stack) -> None:
    async with AsyncRewardClient(address_of(scripted)) as client:
        with pytest.raises(InvalidArgument) as err:
            await client.rank("q", ["fine", ""])
    assert err.value.field == "candidates[1]"
    assert err.value.code is grpc.StatusCode.INVALID_ARGUMENT


async def test_a_failed_judgment_raises_and_is_not_retried(failing: Stack) -> None:
    async with AsyncRewardClient(address_of(failing), retry=FAST_RETRY) as client:
        with pytest.raises(JudgmentFailed, match="engine exploded") as err:
            await client.score("q", ["a", "bb"], reference="ref")
        assert err.value.code is grpc.StatusCode.ABORTED
        with pytest.raises(JudgmentFailed):
            await client.compare("q", "a", "bb")


async def test_resource_exhausted_is_retried_after_the_servers_delay() -> None:
    # a queue of depth 1: while one slow judgment runs, the next call is turned away with
    # RESOURCE_EXHAUSTED + RetryInfo(1 s); the client waits at least that long, then succeeds
    stack = await make_stack(latency_s=1.0, max_depth=1)
    try:
        async with AsyncRewardClient(address_of(stack), retry=FAST_RETRY) as client:
            first = asyncio.create_task(client.compare("q", "first long", "f", request_id="one"))
            await asyncio.sleep(0.2)
            started = time.monotonic()
            second = await client.compare("q", "second long", "s", request_id="two")
            waited = time.monotonic() - started
            assert (await first).winner is Winner.A and second.winner is Winner.A
        assert waited >= 1.0  # not FAST_RETRY's 0.05 s: the server's RetryInfo delay

        async with AsyncRewardClient(address_of(stack), retry=RetryPolicy(max_attempts=1)) as c:
            first = asyncio.create_task(c.compare("q", "third long", "t", request_id="three"))
            await asyncio.sleep(0.2)
            with pytest.raises(Overloaded) as err:
                await c.compare("q", "fourth long", "f", request_id="four")
            assert err.value.retry_after_s == pytest.approx(1.0)
            await first
    finally:
        await close_stack(stack)


async def test_unavailable_is_retried_then_raised() -> None:
    with free_socket() as sock:  # bound, never listening: connections are refused
        address = f"127.0.0.1:{sock.getsockname()[1]}"
        client = AsyncRewardClient(address, retry=FAST_RETRY, timeout_s=5)
        started = time.monotonic()
        with pytest.raises(ServiceUnavailable):
            await client.info()
        await client.close()
    assert time.monotonic() - started >= 0.05 + 0.1  # two waits between three attempts


async def test_unavailable_then_up_succeeds_on_retry() -> None:
    with free_socket() as sock:
        port = sock.getsockname()[1]
    stack_box: list[Stack] = []

    async def start_later() -> None:
        await asyncio.sleep(0.5)
        stack = await make_stack()
        # move the scripted gateway to the port the client is already retrying
        await stack.server.stop(0)
        service = stack.server.service
        stack.server = GatewayServer(service, host="127.0.0.1", port=port)
        await stack.server.start()
        await stack.server.warm_up(stack.comparator)
        stack_box.append(stack)

    starter = asyncio.create_task(start_later())
    retry = RetryPolicy(max_attempts=20, initial_backoff_s=0.1, max_backoff_s=0.2)
    async with AsyncRewardClient(f"127.0.0.1:{port}", retry=retry, timeout_s=20) as client:
        info = await client.info()
    await starter
    assert info.model == "scripted"
    await close_stack(stack_box[0])


async def test_the_deadline_covers_the_whole_call() -> None:
    stack = await make_stack(latency_s=1.0)
    try:
        async with AsyncRewardClient(address_of(stack), timeout_s=0.3) as client:
            started = time.monotonic()
            with pytest.raises(DeadlineExceeded):
                await client.compare("q", "a", "bb")
            assert time.monotonic() - started < 0.9
    finally:
        await close_stack(stack)


def test_retry_delays_back_off_honour_the_server_and_jitter() -> None:
    policy = RetryPolicy(initial_backoff_s=0.1, max_backoff_s=1.0, multiplier=2.0, jitter=0.2)
    rng = random.Random(0)
    for retry, base in [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.8), (5, 1.0), (9, 1.0)]:
        delay = policy.delay_s(retry, None, rng)
        assert base <= delay <= base * 1.2
    assert 3.0 <= policy.delay_s(1, 3.0, rng) <= 3.6  # the server's RetryInfo is a floor
    assert RetryPolicy(jitter=0).delay_s(1, None) == 0.25
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)


@pytest.fixture
async def guarded(scripted: Stack) -> AsyncIterator[int]:
    """The real gateway with the real AuthInterceptor (token "s3cret", 2 calls/s, burst 2)
    serving the scripted stack's service; yields its port."""
    gateway = GatewayServer(
        scripted.server.service,
        interceptors=[AuthInterceptor(["s3cret"], rate_limit_per_s=2.0, burst=2.0)],
    )
    port = await gateway.start()
    yield port
    await gateway.stop(0)


async def test_bearer_token_and_the_rate_limits_retry_info(guarded: int) -> None:
    address = f"127.0.0.1:{guarded}"
    async with AsyncRewardClient(address, token="s3cret", retry=FAST_RETRY) as client:
        started = time.monotonic()
        # 4 calls at once against 2 calls/s, burst 2: two are turned away with RetryInfo and
        # come back after the delay the gateway names (0.5 s or more), not FAST_RETRY's 0.05 s
        replies = await asyncio.gather(*(client.compare("q", "longer", "s") for _ in range(4)))
        assert all(r.winner is Winner.A for r in replies)
        assert time.monotonic() - started >= 0.5
    for token in (None, "wrong"):
        async with AsyncRewardClient(address, token=token) as client:
            with pytest.raises(Unauthenticated):
                await client.info()


def _pki(tmp: Path) -> dict[str, Path]:
    """A CA, a server certificate for localhost and a client certificate (PEM files)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def key() -> ec.EllipticCurvePrivateKey:
        return ec.generate_private_key(ec.SECP256R1())

    def cert(
        name: str, k: ec.EllipticCurvePrivateKey, issuer: x509.Name, signer: object, ca: bool
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(issuer)
            .public_key(k.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False
            )
        return builder.sign(signer, hashes.SHA256())  # type: ignore[arg-type]

    ca_key = key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rrm test CA")])
    ca = cert("rrm test CA", ca_key, ca_name, ca_key, True)
    files: dict[str, Path] = {}
    for name in ("server", "client"):
        k = key()
        c = cert("localhost" if name == "server" else "trainer", k, ca_name, ca_key, False)
        files[f"{name}.key"] = tmp / f"{name}.key"
        files[f"{name}.key"].write_bytes(
            k.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        files[f"{name}.crt"] = tmp / f"{name}.crt"
        files[f"{name}.crt"].write_bytes(c.public_bytes(serialization.Encoding.PEM))
    files["ca.crt"] = tmp / "ca.crt"
    files["ca.crt"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return files


async def test_mutual_tls_with_a_private_ca(scripted: Stack, tmp_path: Path) -> None:
    pki = _pki(tmp_path)
    # the real gateway, serving the scripted stack's service over mTLS
    gateway = GatewayServer(
        scripted.server.service,
        credentials=tls_credentials(
            str(pki["server.crt"]), str(pki["server.key"]), client_ca=str(pki["ca.crt"])
        ),
    )
    port = await gateway.start()
    try:
        tls = TLSConfig(
            root_ca=pki["ca.crt"],
            client_cert=pki["client.crt"],
            client_key=pki["client.key"],
            server_name="localhost",
        )
        async with AsyncRewardClient(f"127.0.0.1:{port}", tls=tls, token="t") as client:
            assert (await client.compare("q", "longer", "s")).winner is Winner.A

        def blocking() -> str:
            with RewardClient(f"127.0.0.1:{port}", tls=tls) as client:
                return client.info().model

        assert await asyncio.to_thread(blocking) == "scripted"

        # without a client certificate the gateway refuses the handshake
        no_cert = TLSConfig(root_ca=pki["ca.crt"], server_name="localhost")
        async with AsyncRewardClient(
            f"127.0.0.1:{port}", tls=no_cert, retry=RetryPolicy(max_attempts=1), timeout_s=5
        ) as client:
            with pytest.raises(ServiceUnavailable):
                await client.info()
    finally:
        await gateway.stop(0)
    with pytest.raises(ValueError):
        TLSConfig(client_cert=pki["client.crt"])

"""Every strategy's options reach the real gateway from each trainer-side surface: the client's
`AdaptiveOptions` / `reference_index`, `RRM_ADAPTIVE_*` / `RRM_REFERENCE_INDEX` (the OpenRLHF
bridges), `rrm bestofn` / `rrm remote-rm` flags. Bad values fail early naming the option (a
ValueError, a settings error, a usage error), or, when only the server can tell, as
INVALID_ARGUMENT naming the field.

The gateway, queue and worker are real (127.0.0.1); the judge is the ScriptedRunner TEST DOUBLE
(the longer response wins), made unsure (p = 0.6) where a test needs the adaptive ranking to
want more judgments than it may spend."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from click.testing import CliRunner
from pydantic import ValidationError
from rrm.v1 import reward_pb2 as pb

from policy_adapter import (
    AdaptiveOptions,
    AdaptiveTarget,
    AsyncRewardClient,
    InvalidArgument,
    RankQuery,
    Strategy,
)
from policy_adapter import remote_rm as remote_rm_module
from policy_adapter.cli import main as cli
from policy_adapter.remote_rm import RemoteRMConfig, create_app
from policy_adapter.retry import RetryPolicy
from policy_adapter.settings import AdapterSettings
from reward_service.domain import ParseStatus, Verdict, VoteResult, VoteTask
from tests.adapter.conftest import address_of
from tests.adapter.harness import AGENT_FILE, Rollout, ScriptedPolicy, chat_prompt, serving
from tests.adapter.rollouts import generate_samples
from tests.gateway.conftest import Stack

# By length, the scripted judge's taste: 1 > 6 > 3 > 4 > 7 > 0 > 5 > 2.
CANDIDATES = ["x" * n for n in (3, 9, 1, 7, 5, 2, 8, 4)]
TRUTH = sorted(range(8), key=lambda i: -len(CANDIDATES[i]))


def unsure(task: VoteTask) -> VoteResult:
    """The longer response wins, but with p = 0.6: never confident after one judgment."""
    first = len(task.pair.first) >= len(task.pair.second)
    return VoteResult(
        verdict=Verdict.FIRST if first else Verdict.SECOND,
        p_first=0.6 if first else 0.4,
        status=ParseStatus.OK,
        reasoning_tokens=1,
        prompt_tokens=1,
        completion_tokens=1,
    )


def client_of(stack: Stack) -> AsyncRewardClient:
    return AsyncRewardClient(address_of(stack))


# ---- the client ----


async def test_the_judgment_budget_is_never_exceeded(scripted: Stack) -> None:
    scripted.runner.script = unsure
    async with client_of(scripted) as client:
        free = await client.rank("q", CANDIDATES, strategy=Strategy.ADAPTIVE)
        capped = await client.rank(
            "q",
            CANDIDATES,
            strategy=Strategy.ADAPTIVE,
            adaptive=AdaptiveOptions(judgment_budget=10),
        )
        scored = await client.score(
            "q",
            CANDIDATES,
            strategy=Strategy.ADAPTIVE,
            adaptive=AdaptiveOptions(judgment_budget=9),
        )
    assert free.usage.judgments > 10  # the unsure judge wants more than the cap allows
    assert capped.usage.judgments == 10 and len(capped.matches) == 10  # one Match per judgment
    assert sum(len(m.votes) for m in capped.matches) == 10
    assert scored.ranking is not None and scored.usage.judgments == 9


async def test_the_target_decides_what_is_settled(scripted: Stack) -> None:
    one_vote = {"max_votes_per_pair": 1}  # one judgment per comparison: counts are comparisons
    async with client_of(scripted) as client:

        async def adaptive(**options: Any) -> Any:
            return await client.rank(
                "q",
                CANDIDATES,
                strategy=Strategy.ADAPTIVE,
                adaptive=AdaptiveOptions(**options, **one_vote),
            )

        top1 = await adaptive()
        top3 = await adaptive(target=AdaptiveTarget.TOP_K, top_k=3)
        full = await adaptive(target=AdaptiveTarget.FULL)
    assert top1.usage.judgments == 7  # a knockout of 8
    assert top1.ranking[0] == TRUTH[0] and list(top1.ranking) != TRUTH
    assert list(top3.ranking[:3]) == TRUTH[:3]
    assert list(full.ranking) == TRUTH
    assert 7 < top3.usage.judgments < full.usage.judgments


async def test_confidence_and_votes_per_pair_reach_the_server(scripted: Stack) -> None:
    async with client_of(scripted) as client:

        async def judgments(**options: Any) -> int:
            adaptive = AdaptiveOptions(**options)
            ranking = await client.rank(
                "q", CANDIDATES, strategy=Strategy.ADAPTIVE, adaptive=adaptive
            )
            return ranking.usage.judgments

        default, doubtful = await judgments(), await judgments(confidence=0.99)
        once = await judgments(max_votes_per_pair=1)
    assert doubtful > default > once == 7  # p = 0.9 votes: more of them for 0.99 than for 0.9


@pytest.mark.parametrize("reference", [0, 5, 7])
async def test_the_in_group_reference_is_the_given_candidate(
    scripted: Stack, reference: int
) -> None:
    async with client_of(scripted) as client:
        ranking = await client.rank(
            "q", CANDIDATES, strategy=Strategy.IN_GROUP_REFERENCE, reference_index=reference
        )
        scores = await client.score(
            "q", CANDIDATES, strategy=Strategy.IN_GROUP_REFERENCE, reference_index=reference
        )
    assert len(ranking.matches) == 7
    assert all(reference in (m.a, m.b) for m in ranking.matches)
    assert scores.ranking is not None
    assert all(reference in (m.a, m.b) for m in scores.ranking.matches)
    assert scores.rewards[reference] == 0.0


async def test_the_anchor_meets_every_candidate_first(scripted: Stack) -> None:
    async with client_of(scripted) as client:
        ranking = await client.rank(
            "q", CANDIDATES, strategy=Strategy.ANCHORED_KNOCKOUT, reference_index=2
        )
        [batched] = await client.rank_batch(
            [RankQuery("q", CANDIDATES, strategy=Strategy.ANCHORED_KNOCKOUT, reference_index=6)]
        )
    first_round = [m for m in ranking.matches if m.round == min(x.round for x in ranking.matches)]
    assert len(first_round) == 7 and all(2 in (m.a, m.b) for m in first_round)
    assert not isinstance(batched, Exception) and hasattr(batched, "matches")
    seeding = batched.matches[:7]  # type: ignore[union-attr]
    assert all(6 in (m.a, m.b) for m in seeding)


@pytest.mark.parametrize(
    ("make", "option"),
    [
        (lambda: AdaptiveOptions(confidence=1.0), "adaptive.confidence"),
        (lambda: AdaptiveOptions(confidence=0.5), "adaptive.confidence"),
        (lambda: AdaptiveOptions(target=AdaptiveTarget.TOP_K), "adaptive.top_k"),
        (lambda: AdaptiveOptions(top_k=3), "adaptive.top_k"),
        (lambda: AdaptiveOptions(judgment_budget=-1), "adaptive.judgment_budget"),
        (lambda: AdaptiveOptions(max_votes_per_pair=-2), "adaptive.max_votes_per_pair"),
        (lambda: AdaptiveTarget.parse("top-2"), "adaptive target"),
    ],
)
def test_bad_adaptive_options_fail_where_they_are_made(make: Any, option: str) -> None:
    with pytest.raises(ValueError, match=option):
        make()


@pytest.mark.parametrize(
    ("call", "option"),
    [
        ({"strategy": Strategy.KNOCKOUT, "adaptive": AdaptiveOptions()}, "adaptive options"),
        ({"strategy": Strategy.ELO, "reference_index": 1}, "reference_index is only used"),
        ({"strategy": Strategy.IN_GROUP_REFERENCE, "reference_index": 8}, "reference_index is 8"),
        ({"strategy": Strategy.ANCHORED_KNOCKOUT, "reference_index": -1}, "reference_index is -1"),
        (
            {
                "strategy": Strategy.ADAPTIVE,
                "adaptive": AdaptiveOptions(target=AdaptiveTarget.TOP_K, top_k=9),
            },
            "adaptive.top_k is 9",
        ),
    ],
)
async def test_options_that_do_not_fit_the_call_fail_before_it_is_sent(
    scripted: Stack, call: dict[str, Any], option: str
) -> None:
    before = len(scripted.runner.calls)
    async with client_of(scripted) as client:
        with pytest.raises(ValueError, match=option):
            await client.rank("q", CANDIDATES, **call)
        with pytest.raises(ValueError, match=option):
            await client.score("q", CANDIDATES, **call)
        with pytest.raises(ValueError, match=option):
            await client.rank_batch([RankQuery("q", CANDIDATES, **call)])
    assert len(scripted.runner.calls) == before


async def test_what_only_the_server_knows_is_invalid_argument_naming_the_field(
    scripted: Stack,
) -> None:
    async with client_of(scripted) as client:
        with pytest.raises(InvalidArgument, match="judgment_budget") as below:
            await client.rank(
                "q",
                CANDIDATES,
                strategy=Strategy.ADAPTIVE,
                adaptive=AdaptiveOptions(judgment_budget=3),  # a knockout of 8 needs 7
            )
        with pytest.raises(InvalidArgument) as too_many:
            await client.rank(
                "q",
                CANDIDATES,
                strategy=Strategy.ADAPTIVE,
                adaptive=AdaptiveOptions(max_votes_per_pair=8),  # the stack allows 7
            )
    assert below.value.field == "adaptive.judgment_budget"
    assert too_many.value.field == "adaptive.max_votes_per_pair"
    # a request built without the client's checks: the server names the field too
    request = pb.RankRequest(
        query="q", candidates=CANDIDATES, strategy=pb.STRATEGY_IN_GROUP_REFERENCE
    )
    request.reference_index = 8
    with pytest.raises(grpc.aio.AioRpcError) as raw:
        await scripted.stub.Rank(request)
    assert raw.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "reference_index" in (raw.value.details() or "")


# ---- RRM_* settings (the OpenRLHF bridges) ----


def test_settings_read_the_adaptive_options_and_the_reference(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in {
        "RRM_STRATEGY": "adaptive",
        "RRM_ADAPTIVE_TARGET": "top-k",
        "RRM_ADAPTIVE_TOP_K": "3",
        "RRM_ADAPTIVE_JUDGMENT_BUDGET": "40",
        "RRM_ADAPTIVE_CONFIDENCE": "0.95",
        "RRM_ADAPTIVE_MAX_VOTES_PER_PAIR": "5",
    }.items():
        monkeypatch.setenv(name, value)
    settings = AdapterSettings()
    assert settings.adaptive == AdaptiveOptions(
        judgment_budget=40,
        target=AdaptiveTarget.TOP_K,
        top_k=3,
        confidence=0.95,
        max_votes_per_pair=5,
    )
    assert settings.strategy_options(2)["adaptive"].top_k == 2  # a group of 2: its full order


def test_settings_without_options_leave_the_server_defaults() -> None:
    assert AdapterSettings(strategy="adaptive").adaptive is None
    reference = AdapterSettings(strategy="in-group-reference", reference_index=2)
    assert reference.strategy_options(4) == {
        "strategy": Strategy.IN_GROUP_REFERENCE,
        "adaptive": None,
        "reference_index": 2,
    }


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"RRM_STRATEGY": "elo", "RRM_ADAPTIVE_JUDGMENT_BUDGET": "40"}, "RRM_ADAPTIVE_*"),
        ({"RRM_STRATEGY": "adaptive", "RRM_ADAPTIVE_CONFIDENCE": "1.5"}, "RRM_ADAPTIVE_CONFIDENCE"),
        ({"RRM_STRATEGY": "adaptive", "RRM_ADAPTIVE_TARGET": "top-k"}, "RRM_ADAPTIVE_TOP_K"),
        ({"RRM_STRATEGY": "adaptive", "RRM_ADAPTIVE_TARGET": "best"}, "adaptive_target"),
        ({"RRM_STRATEGY": "adaptive", "RRM_ADAPTIVE_TOP_K": "-1"}, "adaptive_top_k"),
        ({"RRM_STRATEGY": "knockout", "RRM_REFERENCE_INDEX": "0"}, "RRM_REFERENCE_INDEX"),
        ({"RRM_REFERENCE_INDEX": "1"}, "RRM_REFERENCE_INDEX"),  # the server default, Elo
    ],
)
def test_bad_settings_fail_at_startup_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], named: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError, match=named.replace("*", r"\*")):
        AdapterSettings()


# ---- rrm bestofn and rrm remote-rm ----


def write_prompts(tmp_path: Path) -> Path:
    rows = [
        {"prompt": "Name a fruit.", "responses": CANDIDATES},
        {"prompt": "Say a colour.", "responses": ["red", "deep ocean blue"]},  # 2 < k
    ]
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def ledger(out: Path) -> dict[str, dict[str, Any]]:
    lines = (out / "rankings.jsonl").read_text(encoding="utf-8").splitlines()
    return {row["prompt"]: row for row in map(json.loads, lines)}


async def bestofn(*args: str, catch: bool = False) -> Any:
    """`rrm bestofn` in a thread (the gateway serves on this test's event loop)."""
    return await asyncio.to_thread(
        CliRunner().invoke, cli, ["bestofn", *args], catch_exceptions=catch
    )


async def test_bestofn_passes_the_adaptive_options(scripted: Stack, tmp_path: Path) -> None:
    scripted.runner.script = unsure
    prompts = write_prompts(tmp_path)
    common = ["--target", address_of(scripted), "--strategy", "adaptive"]
    top3 = ["--adaptive-target", "top-k", "--adaptive-k", "3"]
    capped, free = await asyncio.gather(
        bestofn(str(prompts), "--out-dir", str(tmp_path / "capped"), *common, *top3,
                "--judgment-budget", "20"),
        bestofn(str(prompts), "--out-dir", str(tmp_path / "free"), *common, *top3),
    )  # fmt: skip
    assert capped.exit_code == 0 and free.exit_code == 0, capped.output + free.output
    rows, uncapped = ledger(tmp_path / "capped"), ledger(tmp_path / "free")
    assert rows["Name a fruit."]["strategy"] == "adaptive"
    # one Match per judgment: within the budget, which the unsure judge would overspend
    judged = len(rows["Name a fruit."]["matches"])
    assert judged <= 20 < len(uncapped["Name a fruit."]["matches"])
    assert rows["Name a fruit."]["ranking"][:3] == TRUTH[:3]  # the top-3 is settled
    assert rows["Say a colour."]["ranking"] == [1, 0]  # top-3 of 2: their order


async def test_bestofn_passes_the_reference_index(scripted: Stack, tmp_path: Path) -> None:
    out = tmp_path / "reference"
    result = await bestofn(
        str(write_prompts(tmp_path)), "--out-dir", str(out), "--target", address_of(scripted),
        "--strategy", "in_group_reference", "--reference-index", "1",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    for row in ledger(out).values():
        assert row["matches"] and all(1 in (m["a"], m["b"]) for m in row["matches"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--strategy", "knockout", "--judgment-budget", "9"], "--adaptive-* options are only"),
        (["--strategy", "adaptive", "--adaptive-target", "top-k"], "--adaptive-top-k must be"),
        (["--strategy", "adaptive", "--adaptive-k", "2"], "--adaptive-top-k is only used"),
        (["--strategy", "elo", "--reference-index", "0"], "--reference-index is only used"),
        (["--strategy", "adaptive", "--adaptive-confidence", "1"], "--adaptive-confidence"),
    ],
)
async def test_bestofn_refuses_options_that_do_not_fit(
    scripted: Stack, tmp_path: Path, args: list[str], message: str
) -> None:
    before = len(scripted.runner.calls)
    result = await bestofn(
        str(write_prompts(tmp_path)), "--out-dir", str(tmp_path / "x"),
        "--target", address_of(scripted), *args, catch=True,
    )  # fmt: skip
    assert result.exit_code == 2 and message in result.output, result.output
    assert len(scripted.runner.calls) == before


def test_remote_rm_refuses_options_that_do_not_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    def serve(*args: Any) -> None:
        raise AssertionError("rrm remote-rm served with options that do not fit")

    monkeypatch.setattr(remote_rm_module, "serve", serve)
    result = CliRunner().invoke(cli, ["remote-rm", "--strategy", "swiss", "--reference-index", "0"])
    assert result.exit_code == 2 and "--reference-index is only used" in result.output
    with pytest.raises(ValueError, match="adaptive options"):
        RemoteRMConfig(strategy=Strategy.ELO, adaptive=AdaptiveOptions())


# ---- the OpenRLHF bridges: agent executor (RRM_*) and remote RM ----

SAMPLES = ["a short one", "the longest answer of them all", "tiny", "a middling reply"]


async def agent_rollouts(
    rollout: Rollout, tokenizer: Any, texts: list[str], latency: Any = lambda _: 0.0
) -> list[dict[str, Any]]:
    executor = rollout.load_agent_executor(str(AGENT_FILE))  # OpenRLHF's loader
    actor = rollout.actor(executor, ScriptedPolicy(tokenizer, texts, latency=latency))
    prompt = chat_prompt(tokenizer, "Explain rain.")
    return await generate_samples(actor, tokenizer, prompt, len(texts), "")


async def test_the_agent_spends_at_most_its_judgment_budget(
    scripted: Stack, rollout: Rollout, tokenizer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    scripted.runner.script = unsure
    monkeypatch.setenv("RRM_ADDRESS", address_of(scripted))
    monkeypatch.setenv("RRM_N_SAMPLES_PER_PROMPT", "4")
    monkeypatch.setenv("RRM_STRATEGY", "adaptive")
    judged = []
    for budget in ("", "5"):
        monkeypatch.setenv("RRM_ADAPTIVE_JUDGMENT_BUDGET", budget or "0")
        before = len(scripted.runner.calls)
        outputs = await agent_rollouts(rollout, tokenizer, SAMPLES)
        judged.append(len(scripted.runner.calls) - before)
        best = max(range(4), key=lambda i: outputs[i]["reward"])
        assert SAMPLES[1] in tokenizer.decode(outputs[best]["observation_tokens"])
    assert judged[1] == 5 < judged[0]  # the server default (3x the 3 comparisons) is more


async def test_the_agent_compares_with_the_configured_reference(
    scripted: Stack, rollout: Rollout, tokenizer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RRM_ADDRESS", address_of(scripted))
    monkeypatch.setenv("RRM_N_SAMPLES_PER_PROMPT", "4")
    monkeypatch.setenv("RRM_STRATEGY", "in_group_reference")
    for reference in range(4):  # a seeded random reference would miss some of them
        monkeypatch.setenv("RRM_REFERENCE_INDEX", str(reference))
        # samples finish in order, so the group's k-th sample is SAMPLES[k]
        outputs = await agent_rollouts(
            rollout, tokenizer, SAMPLES, latency=lambda t: 0.1 * SAMPLES.index(t)
        )
        votes = [o["extra_logs"]["rrm_votes"] for o in outputs]
        others = [i for i in range(4) if i != reference]
        assert outputs[reference]["reward"] == 0.0
        assert all(outputs[i]["reward"] != 0.0 for i in others)
        assert all(votes[reference] == 3 * votes[i] for i in others)  # it met every other

    monkeypatch.setenv("RRM_REFERENCE_INDEX", "5")  # past a group of 4
    with pytest.raises(ValueError, match="RRM_REFERENCE_INDEX is 5"):
        await agent_rollouts(rollout, tokenizer, SAMPLES)


async def test_the_remote_rm_passes_its_strategy_options(scripted: Stack) -> None:
    scripted.runner.script = unsure
    client = AsyncRewardClient(address_of(scripted), retry=RetryPolicy(max_attempts=1))
    config = RemoteRMConfig(
        n=4, strategy=Strategy.ADAPTIVE, adaptive=AdaptiveOptions(judgment_budget=5)
    )
    prompt = "<|im_start|>user\nExplain rain.<|im_end|>\n<|im_start|>assistant\n"
    async with serving(create_app(config, client)) as url, httpx.AsyncClient() as http:
        before = len(scripted.runner.calls)
        replies = await asyncio.gather(
            *(
                http.post(
                    f"{url}/get_reward",
                    json={"query": [prompt + t], "prompts": [prompt], "labels": [""]},
                    timeout=30,
                )
                for t in SAMPLES
            )
        )
        assert [r.status_code for r in replies] == [200] * 4
        assert len(scripted.runner.calls) - before == 5
    rewards = [r.json()["rewards"][0] for r in replies]
    assert max(range(4), key=lambda i: rewards[i]) == 1

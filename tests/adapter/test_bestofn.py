"""Best-of-N / DPO data from pre-generated responses, ranked by the scripted service stack; the
DPO file is loaded the way `openrlhf.cli.train_dpo` loads it (blending_datasets + RewardDataset)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner
from openrlhf.datasets import RewardDataset
from openrlhf.datasets.utils import blending_datasets

from policy_adapter import AsyncRewardClient, JudgeOptions, Strategy
from policy_adapter.bestofn import BestOfNConfig, read_rows, run_bestofn
from policy_adapter.cli import main as cli
from policy_adapter.preference import PairMode
from tests.adapter.conftest import address_of, fail_every_vote
from tests.gateway.conftest import Stack

ROWS: list[dict[str, Any]] = [
    {"prompt": "Name a fruit.", "responses": ["fig", "a ripe mango", "pear", "kiwi fruit"]},
    {
        "prompt": [
            {"role": "system", "content": "Be helpful."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello! How can I help?"},
            {"role": "user", "content": "Say a colour."},
        ],
        "responses": ["red", "deep ocean blue", "red"],
    },
    {"id": "one", "prompt": "Only one answer?", "responses": ["yes", "yes"]},
]


def write_input(tmp_path: Path) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS), encoding="utf-8")
    return path


def jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


async def run(stack: Stack, tmp_path: Path, **config: Any) -> Any:
    rows = read_rows(write_input(tmp_path))
    out = tmp_path / "out"
    async with AsyncRewardClient(address_of(stack)) as client:
        return await run_bestofn(rows, BestOfNConfig(out_dir=out, **config), client)


async def test_best_and_worst_of_each_prompt(scripted: Stack, tmp_path: Path) -> None:
    summary = await run(scripted, tmp_path)
    assert (summary.done, summary.failed, summary.prompts) == (3, 0, 3)
    assert summary.comparisons == 3 + 1 + 0  # knockouts of 4, 2 (deduplicated) and 1
    out = tmp_path / "out"
    dpo = {r["id"]: r for r in jsonl(out / "dpo.jsonl")}
    sft = {r["id"]: r for r in jsonl(out / "sft.jsonl")}
    first = read_rows(write_input(tmp_path))[0].id
    assert dpo[first]["chosen"] == [{"role": "assistant", "content": "a ripe mango"}]
    assert dpo[first]["rejected"][0]["content"] in ("fig", "pear")  # first-round losers
    assert dpo[first]["prompt"] == [{"role": "user", "content": "Name a fruit."}]
    assert dpo[first]["p_chosen"] == pytest.approx(0.9)
    assert "one" not in dpo and sft["one"]["response"][0]["content"] == "yes"
    second = read_rows(write_input(tmp_path))[1].id
    assert dpo[second]["prompt"] == ROWS[1]["prompt"]
    assert sft[second]["response"][0]["content"] == "deep ocean blue"
    ledger = jsonl(out / "rankings.jsonl")
    assert {r["id"] for r in ledger} == {first, second, "one"}
    assert summary.agreement.decided == summary.agreement.matches == 4


async def test_dpo_rows_load_with_openrlhfs_reward_dataset(
    scripted: Stack, tmp_path: Path, tokenizer: Any
) -> None:
    await run(scripted, tmp_path / "chat")
    await run(scripted, tmp_path / "text", format="text", pairs=PairMode.ADJACENT)
    for fmt, template in (("chat", True), ("text", False)):
        data = SimpleNamespace(
            prompt_key="prompt",
            chosen_key="chosen",
            rejected_key="rejected",
            apply_chat_template=template,
            tokenizer_chat_template=None,
        )
        strategy = SimpleNamespace(
            args=SimpleNamespace(data=data, use_ms=False),
            print=lambda *a: None,
            is_rank_0=lambda: False,
        )
        # exactly what train_dpo does with --data.dataset FILE --data.prompt_key prompt
        raw = blending_datasets(str(tmp_path / fmt / "out" / "dpo.jsonl"), None, strategy)
        dataset = RewardDataset(raw, tokenizer, 512, strategy, is_dpo=True, num_processors=1)
        assert len(dataset) == (2 if fmt == "chat" else 3 + 1)  # adjacent: 3 pairs + 1 pair
        chosen_ids, _, _, _, prompt_len = dataset[0]
        chosen = tokenizer.decode(chosen_ids[0])
        assert "a ripe mango" in chosen or "deep ocean blue" in chosen or fmt == "text"
        assert prompt_len > 0 and chosen_ids[0][-1] == tokenizer.eos_token_id
        if template:
            assert "<|im_start|>assistant\n" in chosen  # the chat template framed the answer
        batch = dataset.collate_fn([dataset[i] for i in range(len(dataset))])
        assert batch[0].shape[0] == len(dataset)


async def test_a_rerun_resumes_and_drops_half_written_rows(scripted: Stack, tmp_path: Path) -> None:
    await run(scripted, tmp_path)
    out = tmp_path / "out"
    cut_off = {"id": "cut-off", "prompt": "x", "chosen": "a", "rejected": "b"}  # a crash mid-prompt
    dpo_file = out / "dpo.jsonl"
    dpo_file.write_text(dpo_file.read_text() + json.dumps(cut_off) + "\n")
    calls = len(scripted.runner.calls)
    summary = await run(scripted, tmp_path)
    assert (summary.resumed, summary.done) == (3, 0)
    assert len(scripted.runner.calls) == calls
    assert "cut-off" not in {r["id"] for r in jsonl(out / "dpo.jsonl")}
    assert len(jsonl(out / "dpo.jsonl")) == 2


async def test_min_confidence_and_adjacent_pairs(scripted: Stack, tmp_path: Path) -> None:
    strict = await run(scripted, tmp_path / "strict", min_confidence=0.95)
    assert strict.dpo_rows == 0 and strict.dropped_pairs == 2
    adjacent = await run(
        scripted, tmp_path / "adj", pairs=PairMode.ADJACENT, strategy=Strategy.ELO,
        options=JudgeOptions(votes=1),
    )  # fmt: skip
    assert adjacent.dpo_rows == 3 + 1
    rows = jsonl(tmp_path / "adj" / "out" / "dpo.jsonl")
    assert all(r["p_chosen"] == pytest.approx(0.9) for r in rows)  # round robin: direct matches
    fruit = [r for r in rows if r["prompt"][-1]["content"] == "Name a fruit."]
    assert [r["chosen"][0]["content"] for r in fruit][:2] == ["a ripe mango", "kiwi fruit"]


async def test_failed_prompts_are_reported_and_redone_by_a_rerun(
    scripted: Stack, tmp_path: Path
) -> None:
    script = scripted.runner.script
    scripted.runner.script = fail_every_vote
    summary = await run(scripted, tmp_path)
    assert summary.failed == 2 and summary.done == 1  # the one-answer prompt needs no judging
    assert "engine exploded" in summary.errors[0]
    scripted.runner.script = script
    summary = await run(scripted, tmp_path)
    assert (summary.resumed, summary.done, summary.failed) == (1, 2, 0)


async def test_cli_prints_a_summary(scripted: Stack, tmp_path: Path) -> None:
    args = [
        "bestofn", str(write_input(tmp_path)), "--out-dir", str(tmp_path / "cli"),
        "--target", address_of(scripted), "--strategy", "win_rate", "--concurrency", "2",
    ]  # fmt: skip
    result = await asyncio.to_thread(CliRunner().invoke, cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "comparisons" in result.output and "DPO rows (best-worst)" in result.output
    assert len(jsonl(tmp_path / "cli" / "dpo.jsonl")) == 2

    missing = await asyncio.to_thread(
        CliRunner().invoke,
        cli,
        ["bestofn", str(write_input(tmp_path)), "--out-dir", str(tmp_path), "--responses-key", "x"],
    )
    assert missing.exit_code == 2 and "--policy-url" in missing.output

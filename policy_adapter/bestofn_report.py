"""The terminal side of `rrm bestofn`: a progress bar while it runs, a summary table at the end."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from policy_adapter.bestofn import (
    BestOfNConfig,
    PolicySampler,
    PromptRow,
    RunSummary,
    run_bestofn,
)
from policy_adapter.client import AsyncRewardClient


def summary_table(s: RunSummary, config: BestOfNConfig) -> Table:
    a = s.agreement
    prompts = f"{s.done} / {s.resumed} / {s.failed} of {s.prompts}"
    tokens = f"{s.judge_prompt_tokens} / {s.judge_completion_tokens}"
    agreeing = f"{a.agreeing_votes} of {a.votes} ({a.vote_agreement:.0%})"
    table = Table(title="best-of-N", show_header=False)
    table.add_column("", style="bold")
    table.add_column("", justify="right")
    rows = [
        ("prompts (done / resumed / failed)", prompts),
        ("strategy", config.strategy.name.lower()),
        ("comparisons", str(s.comparisons)),
        ("judge tokens (prompt / completion)", tokens),
        ("policy completion tokens", str(s.policy_tokens)),
        ("SFT rows", str(s.sft_rows)),
        (f"DPO rows ({config.pairs.value})", str(s.dpo_rows)),
        (f"pairs below p {config.min_confidence:g}", str(s.dropped_pairs)),
        ("matches decided", f"{a.decided} of {a.matches} ({a.decided_rate:.0%})"),
        ("mean judge confidence max(p, 1-p)", f"{a.mean_confidence:.3f}"),
        ("votes agreeing with their match", agreeing),
        ("votes budget-forced / unparseable", f"{a.budget_forced} / {a.unparseable}"),
        ("time", f"{s.seconds:.1f} s"),
        ("output", str(config.out_dir)),
    ]  # fmt: skip
    for name, value in rows:
        table.add_row(name, value)
    return table


async def run_with_progress(
    rows: Sequence[PromptRow],
    config: BestOfNConfig,
    client: AsyncRewardClient,
    sampler: PolicySampler | None,
    console: Console | None = None,
) -> RunSummary:
    """`run_bestofn` with a progress bar; closes the client and the sampler."""
    console = console or Console(stderr=True)
    progress = Progress(
        TextColumn("[bold]best-of-N"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[note]}"),
        TimeElapsedColumn(),
        console=console,
    )
    task = progress.add_task("prompts", total=len(rows), note="")

    def update(s: RunSummary) -> None:
        progress.update(
            task,
            completed=s.resumed + s.done + s.failed,
            note=f"{s.comparisons} comparisons, {s.failed} failed",
        )

    try:
        with progress:
            summary = await run_bestofn(rows, config, client, sampler, on_progress=update)
    finally:
        await client.close()
        if sampler is not None:
            await sampler.close()
    console.print(summary_table(summary, config))
    return summary

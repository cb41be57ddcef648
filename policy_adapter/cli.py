"""Trainer-side commands of `rrm`: `rrm remote-rm` (OpenRLHF's HTTP reward endpoint) and
`rrm bestofn` (best-of-N / DPO data). `python -m policy_adapter.cli` runs them standalone."""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, cast

import click

from policy_adapter.channel import TLSConfig
from policy_adapter.client import AsyncRewardClient
from policy_adapter.results import JudgeOptions, Strategy
from policy_adapter.retry import RetryPolicy
from policy_adapter.tournament import (
    AdaptiveOptions,
    AdaptiveTarget,
    OptionError,
    check_strategy_options,
)

STRATEGIES = [s.name.lower() for s in Strategy if s is not Strategy.UNSPECIFIED]


def _connection_options(f: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option("--target", default="127.0.0.1:50051", show_default=True,
                     help="The reward service, host:port."),
        click.option("--token", envvar="RRM_TOKEN", default=None,
                     help="Bearer token (env RRM_TOKEN)."),
        click.option("--tls-ca", type=click.Path(exists=True, path_type=Path), default=None,
                     help="Root CA (PEM): connect with TLS."),
        click.option("--tls-cert", type=click.Path(exists=True, path_type=Path), default=None,
                     help="Client certificate (PEM) for mutual TLS."),
        click.option("--tls-key", type=click.Path(exists=True, path_type=Path), default=None,
                     help="Client key (PEM) for mutual TLS."),
        click.option("--votes", type=int, default=0,
                     help="Votes per comparison (0: server default)."),
        click.option("--max-reasoning-tokens", type=int, default=0,
                     help="Judge reasoning budget (0: server default)."),
        click.option("--timeout", "timeout_s", type=float, default=600.0, show_default=True,
                     help="Deadline of one call to the service, retries included."),
    ]  # fmt: skip
    for option in reversed(options):
        f = option(f)
    return f


def _strategy_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The options of --strategy adaptive and of the strategies played around one candidate."""
    options = [
        click.option("--adaptive-target", type=click.Choice([t.cli_name for t in AdaptiveTarget]),
                     default=None,
                     help="--strategy adaptive: settle the best one (top-1, the default), the "
                     "best --adaptive-top-k in order (top-k), or the full order."),
        click.option("--adaptive-top-k", "--adaptive-k", "adaptive_top_k",
                     type=click.IntRange(min=0), default=0,
                     help="--adaptive-target top-k: how many."),
        click.option("--adaptive-judgment-budget", "--judgment-budget", "adaptive_judgment_budget",
                     type=click.IntRange(min=0), default=0,
                     help="--strategy adaptive: the most judgments per ranking, never exceeded "
                     "(0: the server's, 3x the comparisons the target may need)."),
        click.option("--adaptive-confidence",
                     type=click.FloatRange(0.5, 1.0, min_open=True, max_open=True), default=None,
                     help="--strategy adaptive: the p(A) confidence a comparison needs to stop "
                     "early (server default 0.9)."),
        click.option("--adaptive-max-votes-per-pair", type=click.IntRange(min=0), default=0,
                     help="--strategy adaptive: judgments one pair may get (0: the server's, 7)."),
        click.option("--reference-index", type=click.IntRange(min=0), default=None,
                     help="--strategy anchored_knockout / in_group_reference: the candidate (an "
                     "index into the distinct responses) the others meet first / are compared "
                     "with (default: a seeded random one)."),
    ]  # fmt: skip
    for option in reversed(options):
        f = option(f)
    return f


# A strategy option's flag, by the contract's name of the option.
_FLAGS = {"adaptive": "--adaptive-*", "reference_index": "--reference-index"}


_TOURNAMENT = (
    "adaptive_target",
    "adaptive_top_k",
    "adaptive_judgment_budget",
    "adaptive_confidence",
    "adaptive_max_votes_per_pair",
    "reference_index",
)


def _tournament(
    strategy: Strategy, kwargs: dict[str, Any]
) -> tuple[AdaptiveOptions | None, int | None]:
    """(adaptive options, reference index), popped from a command's keyword arguments; an
    option that does not fit is a usage error naming its flag."""
    given = {name: kwargs.pop(name) for name in _TOURNAMENT}
    adaptive = None
    try:
        if any(given[name] not in (0, None) for name in _TOURNAMENT[:-1]):
            adaptive = AdaptiveOptions(
                judgment_budget=given["adaptive_judgment_budget"],
                target=AdaptiveTarget.parse(given["adaptive_target"] or "top-1"),
                top_k=given["adaptive_top_k"],
                confidence=given["adaptive_confidence"],
                max_votes_per_pair=given["adaptive_max_votes_per_pair"],
            )
        check_strategy_options(strategy, adaptive, given["reference_index"])
    except OptionError as exc:
        flag = _FLAGS.get(exc.option) or "--" + exc.option.replace(".", "-").replace("_", "-")
        raise click.UsageError(f"{flag} {exc.problem}") from None
    return adaptive, given["reference_index"]


def _client(
    target: str,
    token: str | None,
    tls_ca: Path | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    votes: int,
    max_reasoning_tokens: int,
    timeout_s: float,
) -> AsyncRewardClient:
    tls = None
    if tls_ca or tls_cert:
        tls = TLSConfig(root_ca=tls_ca, client_cert=tls_cert, client_key=tls_key)
    return AsyncRewardClient(
        target,
        tls=tls,
        token=token,
        timeout_s=timeout_s,
        retry=RetryPolicy(),
        options=JudgeOptions(votes=votes, max_reasoning_tokens=max_reasoning_tokens),
    )


def _logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )


@click.command("remote-rm")
@_connection_options
@click.option("--host", default="0.0.0.0", show_default=True, help="HTTP bind address.")
@click.option("--port", type=int, default=5000, show_default=True, help="HTTP port.")
@click.option(
    "--mode",
    type=click.Choice(["group", "reference"]),
    default="group",
    show_default=True,
    help="group: rank each prompt's n samples; reference: p(sample beats the label).",
)
@click.option(
    "--n",
    "n",
    type=int,
    default=8,
    show_default=True,
    help="Samples per cohort: OpenRLHF's --rollout.n_samples_per_prompt.",
)
@click.option(
    "--flush-timeout",
    type=float,
    default=60.0,
    show_default=True,
    help="Seconds a partly filled cohort waits before it is judged as is.",
)
@click.option(
    "--strategy",
    type=click.Choice(STRATEGIES),
    default=None,
    help="Tournament of a cohort (default: the server's, round-robin Elo).",
)
@_strategy_options
@click.option(
    "--label-as-group",
    is_flag=True,
    help='A plain-string label is a group id (else only {"group": ...} labels).',
)
@click.option(
    "--undersized",
    type=click.Choice(["error", "neutral"]),
    default="error",
    show_default=True,
    help="A cohort of one sample whose label has no reference: answer an error (HTTP 422) "
    "or reward it --neutral-reward. Counted and logged either way.",
)
@click.option(
    "--neutral-reward",
    type=float,
    default=0.0,
    show_default=True,
    help="Reward of a lone sample under --undersized neutral, and of each sample of a cohort "
    "whose samples are all identical (a tie).",
)
@click.option(
    "--redis-url",
    envvar="RRM_REMOTE_RM_REDIS_URL",
    default=None,
    help="Share cohorts across replicas through this Redis, e.g. the queue's "
    "redis://rrm-redis:6379/0 (env RRM_REMOTE_RM_REDIS_URL). Without it: one process.",
)
@click.option(
    "--namespace",
    default="default",
    show_default=True,
    help="Keeps the cohorts of remote-RM deployments sharing one Redis apart.",
)
def remote_rm(
    host: str,
    port: int,
    mode: str,
    n: int,
    flush_timeout: float,
    strategy: str | None,
    label_as_group: bool,
    undersized: str,
    neutral_reward: float,
    redis_url: str | None,
    namespace: str,
    **connection: Any,
) -> None:
    """OpenRLHF's remote reward model over HTTP (`--reward.remote_url http://HOST:PORT/get_reward`)."""
    from policy_adapter.cohort_redis import RedisCohortConfig
    from policy_adapter.remote_rm import RemoteRMConfig, serve

    _logging()
    chosen = Strategy.parse(strategy or "")
    adaptive, reference_index = _tournament(chosen, connection)
    try:
        config = RemoteRMConfig(
            mode=cast(Literal["group", "reference"], mode),
            n=n,
            flush_timeout_s=flush_timeout,
            strategy=chosen,
            adaptive=adaptive,
            reference_index=reference_index,
            label_as_group=label_as_group,
            undersized=cast(Literal["error", "neutral"], undersized),
            neutral_reward=neutral_reward,
            redis_url=redis_url or None,
            shared=RedisCohortConfig(namespace=namespace),
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    serve(config, _client(**connection), host, port)


@click.command("bestofn")
@click.argument("input_path", metavar="INPUT", type=click.Path(exists=True, path_type=Path))
@_connection_options
@click.option(
    "--out-dir",
    type=click.Path(path_type=Path),
    required=True,
    help="Where sft.jsonl, dpo.jsonl and rankings.jsonl go (appended; reruns resume).",
)
@click.option(
    "--policy-url",
    default=None,
    help="OpenAI-compatible base URL to sample from, e.g. http://127.0.0.1:8000/v1. "
    "Without it every row needs its responses.",
)
@click.option("--policy-model", default="", help="Model name (default: the server's first).")
@click.option("--policy-api-key", envvar="POLICY_API_KEY", default="", help="env POLICY_API_KEY")
@click.option(
    "-n",
    "--n",
    "n",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Samples per prompt.",
)
@click.option("--temperature", type=float, default=1.0, show_default=True)
@click.option("--top-p", type=float, default=1.0, show_default=True)
@click.option("--max-tokens", type=int, default=512, show_default=True)
@click.option("--separate-calls", is_flag=True, help="N calls with n=1 instead of one with n=N.")
@click.option("--strategy", type=click.Choice(STRATEGIES), default="knockout", show_default=True)
@_strategy_options
@click.option(
    "--pairs",
    type=click.Choice(["best-worst", "adjacent"]),
    default="best-worst",
    show_default=True,
    help="DPO pairs per prompt.",
)
@click.option(
    "--min-confidence",
    type=click.FloatRange(0.0, 1.0),
    default=0.0,
    show_default=True,
    help="Keep a DPO pair only if the judge's p(chosen beats rejected) reaches this.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["chat", "text"]),
    default="chat",
    show_default=True,
    help="chat: message lists (train with --data.apply_chat_template); text: plain strings.",
)
@click.option("--prompt-key", default="prompt", show_default=True)
@click.option("--responses-key", default="responses", show_default=True)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Prompts in flight.",
)
@click.option("--limit", type=int, default=0, help="Only the first N prompts.")
def bestofn(
    input_path: Path,
    out_dir: Path,
    policy_url: str | None,
    policy_model: str,
    policy_api_key: str,
    n: int,
    temperature: float,
    top_p: float,
    max_tokens: int,
    separate_calls: bool,
    strategy: str,
    pairs: str,
    min_confidence: float,
    fmt: str,
    prompt_key: str,
    responses_key: str,
    concurrency: int,
    limit: int,
    **connection: Any,
) -> None:
    """Rank N responses per prompt; write best-of-N SFT and DPO JSONL for OpenRLHF."""
    from policy_adapter.bestofn import BestOfNConfig, PolicySampler, SamplingConfig, read_rows
    from policy_adapter.bestofn_report import run_with_progress
    from policy_adapter.preference import PairMode

    _logging("WARNING")
    chosen = Strategy.parse(strategy)
    adaptive, reference_index = _tournament(chosen, connection)
    rows = read_rows(input_path, prompt_key=prompt_key, responses_key=responses_key, limit=limit)
    if policy_url is None and any(r.responses is None for r in rows):
        raise click.UsageError(f"rows without {responses_key!r} need --policy-url to sample from")
    config = BestOfNConfig(
        out_dir=out_dir,
        strategy=chosen,
        adaptive=adaptive,
        reference_index=reference_index,
        pairs=PairMode(pairs),
        min_confidence=min_confidence,
        format=cast(Literal["chat", "text"], fmt),
        concurrency=concurrency,
        options=JudgeOptions(
            votes=connection["votes"], max_reasoning_tokens=connection["max_reasoning_tokens"]
        ),
    )
    sampler = None
    if policy_url:
        sampler = PolicySampler(
            SamplingConfig(
                base_url=policy_url,
                model=policy_model,
                n=n,
                temperature=temperature,
                top_p=top_p,
                max_tokens=max_tokens,
                separate_calls=separate_calls,
                api_key=policy_api_key,
            )
        )
    summary = asyncio.run(run_with_progress(rows, config, _client(**connection), sampler))
    if summary.failed:
        raise click.ClickException(
            f"{summary.failed} prompts failed (first: {summary.errors[0]}); rerun to retry them"
        )


@click.group()
def main() -> None:
    """Trainer-side tools of rrm-serve."""


main.add_command(remote_rm)
main.add_command(bestofn)

if __name__ == "__main__":
    main()

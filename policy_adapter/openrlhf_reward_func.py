"""OpenRLHF reward function against a reference answer: pass this file as
`--reward.remote_url /path/to/openrlhf_reward_func.py` with `--data.label_key` naming the
reference answer. reward = p(sample beats the reference), judged by the reward service.

OpenRLHF calls `reward_func` once per sample through `asyncio.to_thread`; loading this file widens
that loop's thread pool to RRM_REWARD_CONCURRENCY samples in flight (default 256), so the pool
does not cap what reaches the service's engines. Configured by `RRM_*` variables (RRM_ADDRESS is
required; see `policy_adapter.settings`). A failure raises and logs an ERROR naming rrm-serve, the
endpoint, the gRPC status and message: OpenRLHF then has no reward for the sample (the trainer
stops on it), never a made-up one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from policy_adapter.group import openrlhf_payload
from policy_adapter.reference_judge import ReferenceJudge

_judge = ReferenceJudge()


def reward_func(
    queries: Sequence[str], prompts: Sequence[str], labels: Sequence[Any], **kwargs: Any
) -> dict[str, Any]:
    """{"rewards": [...], "scores": [...], "extra_logs": {...}}, one entry per query."""
    return openrlhf_payload(_judge.rewards(queries, prompts, labels))

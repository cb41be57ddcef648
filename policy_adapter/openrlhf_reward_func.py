"""OpenRLHF reward function against a reference answer: pass this file as
`--reward.remote_url /path/to/openrlhf_reward_func.py` with `--data.label_key` naming the
reference answer. reward = p(sample beats the reference), judged by the reward service.

OpenRLHF calls `reward_func` once per sample from worker threads (`asyncio.to_thread`), so the
one blocking client here is shared and created under a lock. Configured by `RRM_*` variables
(RRM_ADDRESS is required; see `policy_adapter.settings`). A failure raises: OpenRLHF then logs it
and the sample has no reward (the trainer stops on it), never a made-up one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from policy_adapter.client import RewardClient
from policy_adapter.group import openrlhf_payload, reference_sample_rewards
from policy_adapter.settings import AdapterSettings
from policy_adapter.texts import conversation_of, judgeable, parse_label, response_of

log = logging.getLogger(__name__)

_lock = threading.Lock()
_client: RewardClient | None = None


def _shared_client() -> RewardClient:
    global _client
    with _lock:
        if _client is None:
            settings = AdapterSettings()
            if not settings.address:
                raise ValueError("set RRM_ADDRESS to the reward service's host:port")
            _client = settings.client()
        return _client


def reward_func(
    queries: Sequence[str], prompts: Sequence[str], labels: Sequence[Any], **kwargs: Any
) -> dict[str, Any]:
    """{"rewards": [...], "scores": [...], "extra_logs": {...}}, one entry per query."""
    client = _shared_client()
    samples = []
    for query, prompt, label in zip(queries, prompts, labels, strict=True):
        reference = parse_label(label, plain="reference").reference
        if not reference:
            raise ValueError(
                "reference mode needs the reference answer as the label (--data.label_key); "
                f"got {label!r}"
            )
        conversation = conversation_of(prompt)
        response = judgeable(response_of(query, prompt))
        try:
            scores = client.score(
                conversation.query,
                [response],
                reference=reference,
                history=conversation.history,
            )
        except Exception as exc:
            log.error("reward service failed for one sample: %s", exc)
            raise
        samples.extend(reference_sample_rewards(scores))
    return openrlhf_payload(samples)

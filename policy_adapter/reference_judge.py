"""Reference-mode rewards for OpenRLHF's `reward_func(queries, prompts, labels)` files:
reward = p(sample beats the label's reference answer), judged by rrm-serve.

One `ReferenceJudge` per loaded reward file: OpenRLHF loads the file afresh for each executor,
calls it from worker threads (`asyncio.to_thread`), and the judge's one blocking client is shared
by those threads (created under a lock on first use).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from policy_adapter.client import RewardClient
from policy_adapter.errors import RewardServiceError, failure_line, in_context
from policy_adapter.group import SampleReward, reference_sample_rewards
from policy_adapter.reward_threads import widen_default_pool
from policy_adapter.settings import AdapterSettings
from policy_adapter.texts import conversation_of, judgeable, parse_label, response_of

log = logging.getLogger(__name__)

WHAT = "reward a sample against its reference (Score, reference mode)"


class ReferenceJudge:
    def __init__(self, settings: AdapterSettings | None = None) -> None:
        self.settings = settings or AdapterSettings()
        self._lock = threading.Lock()
        self._client: RewardClient | None = None
        # built where OpenRLHF loads the file: inside the loop whose to_thread pool runs the calls
        widen_default_pool(self.settings.reward_concurrency)

    @property
    def client(self) -> RewardClient:
        with self._lock:
            if self._client is None:
                if not self.settings.address:
                    message = "rrm-serve: set RRM_ADDRESS to the reward service's host:port"
                    log.error("%s", message)  # OpenRLHF logs the raised error at INFO only
                    raise ValueError(message)
                self._client = self.settings.client()
            return self._client

    def rewards(
        self, queries: Sequence[str], prompts: Sequence[str], labels: Sequence[Any]
    ) -> list[SampleReward]:
        """One reward per sample; a failed judgment raises (never a made-up reward), its message
        and an ERROR log line naming rrm-serve, the endpoint, the gRPC status and message."""
        client = self.client
        samples = []
        for query, prompt, label in zip(queries, prompts, labels, strict=True):
            reference = parse_label(label, plain="reference").reference
            if not reference:
                raise ValueError(
                    "reference mode needs the reference answer as the label (--data.label_key); "
                    f"got {label!r}"
                )
            conversation = conversation_of(prompt)
            try:
                scores = client.score(
                    conversation.query,
                    [judgeable(response_of(query, prompt))],
                    reference=reference,
                    history=conversation.history,
                )
            except RewardServiceError as exc:
                endpoint = self.settings.address
                log.error("%s", failure_line(exc, endpoint=endpoint, what=WHAT))
                raise in_context(exc, endpoint=endpoint, what=WHAT) from exc
            samples.extend(reference_sample_rewards(scores))
        return samples

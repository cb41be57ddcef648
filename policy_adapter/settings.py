"""The trainer-side settings, read once from `RRM_*` environment variables.

OpenRLHF loads the reward function and the agent executor from a file and calls them without
arguments of ours, so the environment (set in the Ray job's runtime_env) is how they are
configured: `RRM_ADDRESS=rrm.example:50051 RRM_N_SAMPLES_PER_PROMPT=8 ...`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from policy_adapter.channel import TLSConfig
from policy_adapter.client import AsyncRewardClient, RewardClient
from policy_adapter.results import JudgeOptions, Strategy
from policy_adapter.retry import RetryPolicy
from policy_adapter.tournament import (
    AdaptiveOptions,
    AdaptiveTarget,
    OptionError,
    check_strategy_options,
)


def env_name(option: str) -> str:
    """The variable of a strategy option: "adaptive.top_k" -> RRM_ADAPTIVE_TOP_K."""
    if option == "adaptive":
        return "RRM_ADAPTIVE_*"
    return "RRM_" + option.replace(".", "_").upper()


class AdapterSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RRM_", extra="ignore", frozen=True)

    # Where the service listens, "host:port".
    address: str = ""
    # Bearer token sent as `authorization: Bearer <token>`.
    token: str = ""
    # TLS: a root CA file turns TLS on; cert + key add a client certificate (mutual TLS).
    tls: bool = False
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_server_name: str | None = None
    # Deadline of one call, all retries included, and how many attempts it may take.
    timeout_s: float = Field(default=600.0, gt=0)
    max_attempts: int = Field(default=5, ge=1)
    # Tournament of group rewards ("" = the server default: round-robin Elo).
    strategy: str = ""
    # RRM_STRATEGY=adaptive only (0 / unset: the server default): the most judgments per group,
    # what to settle (top-1, top-k with RRM_ADAPTIVE_TOP_K, full), the confidence a comparison
    # needs to stop early, within (0.5, 1), and the judgments one pair may get.
    adaptive_judgment_budget: int = Field(default=0, ge=0)
    adaptive_target: str = ""
    adaptive_top_k: int = Field(default=0, ge=0)
    adaptive_confidence: float | None = None
    adaptive_max_votes_per_pair: int = Field(default=0, ge=0)
    # RRM_STRATEGY=anchored_knockout / in_group_reference: the candidate (sample index in its
    # group) every other is compared with first / with; unset: a seeded random one.
    reference_index: int | None = Field(default=None, ge=0)
    # Judging options (0 = the server default).
    votes: int = Field(default=0, ge=0)
    max_reasoning_tokens: int = Field(default=0, ge=0)
    # Group size of PPO/GRPO rewards (--rollout.n_samples_per_prompt). 0: the agent executor
    # learns it from the calls it sees; the remote RM needs it.
    n_samples_per_prompt: int = Field(default=0, ge=0)
    # How long a partly filled group waits for its missing samples before it is judged as is.
    group_timeout_s: float = Field(default=120.0, gt=0)
    # reward_func: samples one OpenRLHF engine actor may have in flight to the service at once.
    # OpenRLHF runs each call through asyncio.to_thread, whose default pool (min(32, cores + 4)
    # threads) would cap it far below what the service's engines batch.
    reward_concurrency: int = Field(default=256, ge=1)
    # agent: a group left with one sample (a timeout, a lost sample) and no reference in its
    # label has nothing to be judged against: "neutral" rewards it `neutral_reward` (counted and
    # logged with its prompt), "error" fails its rollout.
    undersized: Literal["neutral", "error"] = "neutral"
    neutral_reward: float = 0.0

    @field_validator("strategy")
    @classmethod
    def _known_strategy(cls, value: str) -> str:
        Strategy.parse(value)
        return value

    @field_validator("adaptive_target")
    @classmethod
    def _known_target(cls, value: str) -> str:
        if value:
            AdaptiveTarget.parse(value)
        return value

    @model_validator(mode="after")
    def _options_fit_the_strategy(self) -> AdapterSettings:
        try:
            check_strategy_options(self.strategy_enum, self.adaptive, self.reference_index)
        except OptionError as exc:
            raise ValueError(f"{env_name(exc.option)} {exc.problem}") from None
        return self

    @property
    def strategy_enum(self) -> Strategy:
        return Strategy.parse(self.strategy)

    @property
    def adaptive(self) -> AdaptiveOptions | None:
        """The adaptive options when any RRM_ADAPTIVE_* is set, else None."""
        if not (
            self.adaptive_judgment_budget
            or self.adaptive_target
            or self.adaptive_top_k
            or self.adaptive_confidence is not None
            or self.adaptive_max_votes_per_pair
        ):
            return None
        try:
            return AdaptiveOptions(
                judgment_budget=self.adaptive_judgment_budget,
                target=AdaptiveTarget.parse(self.adaptive_target or "top-1"),
                top_k=self.adaptive_top_k,
                confidence=self.adaptive_confidence,
                max_votes_per_pair=self.adaptive_max_votes_per_pair,
            )
        except OptionError as exc:
            raise ValueError(f"{env_name(exc.option)} {exc.problem}") from None

    def strategy_options(self, candidates: int) -> dict[str, Any]:
        """The keyword arguments of a client's rank / score call of `candidates` candidates
        that pick the strategy and its options."""
        adaptive = self.adaptive
        return {
            "strategy": self.strategy_enum,
            "adaptive": adaptive and adaptive.for_group(candidates),
            "reference_index": self.reference_index,
        }

    @property
    def tls_config(self) -> TLSConfig | None:
        if not (self.tls or self.tls_ca or self.tls_cert):
            return None
        return TLSConfig(self.tls_ca, self.tls_cert, self.tls_key, self.tls_server_name)

    def judge_options(self) -> JudgeOptions:
        return JudgeOptions(votes=self.votes, max_reasoning_tokens=self.max_reasoning_tokens)

    def client(self) -> RewardClient:
        return RewardClient(
            self.address,
            tls=self.tls_config,
            token=self.token or None,
            timeout_s=self.timeout_s,
            retry=RetryPolicy(max_attempts=self.max_attempts),
            options=self.judge_options(),
        )

    def async_client(self) -> AsyncRewardClient:
        return AsyncRewardClient(
            self.address,
            tls=self.tls_config,
            token=self.token or None,
            timeout_s=self.timeout_s,
            retry=RetryPolicy(max_attempts=self.max_attempts),
            options=self.judge_options(),
        )

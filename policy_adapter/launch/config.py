"""The one typed configuration of `rrm launch`: a YAML file (camelCase keys, the same shape as the
Helm chart's `training:` values) with `--set dotted.key=value` overrides, validated up front."""

from __future__ import annotations

import re
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from policy_adapter.results import Strategy

# Every value that ends up on the Ray entrypoint must survive `ray job submit -- ...` unquoted.
SHELL_SAFE = r"^[A-Za-z0-9_@%+=:,./-]*$"
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
QUANTITY = r"^[0-9]+(\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|Pi|M|G|T|P)?$"

ShellSafe = Annotated[str, Field(pattern=SHELL_SAFE)]
EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
Quantity = Annotated[
    str,
    BeforeValidator(lambda v: str(v) if isinstance(v, int | float) else v),
    Field(pattern=QUANTITY),
]
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class RewardMode(StrEnum):
    """How PPO samples get rewards: see docs/openrlhf.md, (a) to (c)."""

    AGENT = "agent"  # --train.agent_func_path: group rewards over gRPC, no extra server
    REWARD_FUNC = "reward_func"  # --reward.remote_url FILE.py: p(sample beats the label)
    REMOTE_RM = "remote_rm"  # --reward.remote_url http://.../get_reward: `rrm remote-rm`


class Image(_Model):
    repository: str = Field(min_length=1)
    tag: str = Field(min_length=1)
    pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"

    @property
    def ref(self) -> str:
        return f"{self.repository}:{self.tag}"


class SecretKey(_Model):
    """A key of an existing Secret; empty `existingSecret`: not used."""

    existing_secret: str = ""
    token_key: str = "token"


class RewardService(_Model):
    # gRPC gateway, host:port (agent and reward_func modes: RRM_ADDRESS).
    address: ShellSafe = "rrm-serve-gateway.judge.svc:50051"
    # OpenRLHF remote-RM URL served by `rrm remote-rm` (remote_rm mode).
    remote_url: ShellSafe = ""
    token: SecretKey = SecretKey()
    strategy: str = ""
    votes: int = Field(default=0, ge=0)
    max_reasoning_tokens: int = Field(default=0, ge=0)
    group_timeout_seconds: float = Field(default=120.0, gt=0)

    @model_validator(mode="after")
    def _known_strategy(self) -> RewardService:
        Strategy.parse(self.strategy)
        return self


class CheckpointClaim(_Model):
    """Outputs, checkpoints and TensorBoard logs go under <mountPath>/<job name>/ (ReadWriteMany
    when the Ray cluster has several pods)."""

    claim_name: str = ""
    mount_path: ShellSafe = "/checkpoints"


class DataClaim(_Model):
    """Datasets (and local model folders), mounted read-only; may be the checkpoints' claim."""

    claim_name: str = ""
    mount_path: ShellSafe = "/data"


class Storage(_Model):
    checkpoints: CheckpointClaim = CheckpointClaim()
    data: DataClaim = DataClaim()
    shm_size: Quantity = "16Gi"


class Security(_Model):
    # None: the image's own user (OpenRLHF's images run as root).
    run_as_user: int | None = Field(default=1000, ge=1)
    run_as_group: int | None = Field(default=1000, ge=1)
    fs_group: int | None = Field(default=1000, ge=1)


class HeadPod(_Model):
    """The Ray head: the driver and the Ray services, no GPU work (num-cpus 0)."""

    cpu: Quantity = "4"
    memory: Quantity = "16Gi"
    node_selector: dict[str, str] = {}
    tolerations: list[dict[str, Any]] = []


class GPUPods(_Model):
    """Resources and placement of one GPU pod."""

    gpus: int = Field(default=8, ge=1)
    cpu: Quantity = "32"
    memory: Quantity = "256Gi"
    node_selector: dict[str, str] = {}
    tolerations: list[dict[str, Any]] = [GPU_TOLERATION]


class WorkerGroup(GPUPods):
    name: Annotated[str, Field(pattern=DNS_LABEL, max_length=30)] = "gpu"
    replicas: int = Field(default=1, ge=1)


class RayCluster(_Model):
    # The Ray version in the image (OpenRLHF 0.11.2 pins ray 2.55.0).
    ray_version: str = "2.55.0"
    head: HeadPod = HeadPod()
    workers: list[WorkerGroup] = Field(default=[WorkerGroup()], min_length=1)

    @property
    def gpus(self) -> int:
        return sum(w.gpus * w.replicas for w in self.workers)


class DeepSpeed(_Model):
    zero_stage: Literal[0, 1, 2, 3] = 3
    param_dtype: Literal["bf16", "fp16"] = "bf16"
    gradient_checkpointing: bool = True
    packing_samples: bool = False
    adam_offload: bool = False
    attn_implementation: ShellSafe = ""  # empty: OpenRLHF's default (flash_attention_2)


class Checkpoints(_Model):
    save_steps: int = Field(default=50, ge=-1)  # -1: only the final model
    save_hf: bool = True
    max_num: int = Field(default=3, ge=1)
    # Continue from <checkpoints>/<job>/ckpt when it exists (a retried or re-run job).
    resume: bool = True


class JobLimits(_Model):
    """DPO Job: retries of its pod, a deadline, and how long the finished Job is kept."""

    backoff_limit: int = Field(default=0, ge=0)
    active_deadline_seconds: int = Field(default=7 * 86400, ge=1)
    ttl_seconds_after_finished: int = Field(default=3600, ge=0)


class RayJobLimits(JobLimits):
    """RayJob: new Ray clusters after a failure, a deadline, and how long KubeRay keeps the
    finished job's Ray cluster (its GPU pods) before deleting it."""

    ttl_seconds_after_finished: int = Field(default=300, ge=0)


class PPOData(_Model):
    prompt_dataset: ShellSafe = Field(min_length=1)
    input_key: ShellSafe = "prompt"
    label_key: ShellSafe = ""
    apply_chat_template: bool = True
    max_len: int = Field(default=3072, ge=1)
    max_samples: int = Field(default=0, ge=0)  # 0: all


class Rollout(_Model):
    n_samples_per_prompt: int = Field(default=8, ge=1)
    batch_size: int = Field(default=64, ge=1)
    micro_batch_size: int = Field(default=8, ge=1)
    max_new_tokens: int = Field(default=1024, ge=1)
    temperature: float = Field(default=1.0, ge=0)
    top_p: float = Field(default=1.0, gt=0, le=1)


class PPOTrain(_Model):
    batch_size: int = Field(default=256, ge=1)
    micro_batch_size: int = Field(default=2, ge=1)
    max_epochs: int = Field(default=1, ge=1)
    num_episodes: int = Field(default=1, ge=1)
    seed: int = 42
    actor_learning_rate: float = Field(default=5e-7, gt=0)
    critic_learning_rate: float = Field(default=9e-6, gt=0)  # gae only


Estimator = Literal[
    "gae", "reinforce", "rloo", "reinforce_baseline", "group_norm", "dr_grpo", "flash_reinforce"
]
GROUP_ESTIMATORS = ("rloo", "reinforce_baseline", "group_norm", "dr_grpo")


class Algo(_Model):
    advantage_estimator: Estimator = "group_norm"
    kl_init_coef: float = Field(default=1e-3, ge=0)
    kl_use_loss: bool = True
    kl_estimator: Literal["k1", "k2", "k3"] = "k3"


class Placement(_Model):
    """OpenRLHF's GPU layout inside the Ray cluster."""

    colocate_all: bool = True  # actor, reference and vLLM share GPUs (sleep modes on)
    actor_nodes: int = Field(default=1, ge=1)
    actor_gpus_per_node: int = Field(default=8, ge=1)
    ref_nodes: int = Field(default=1, ge=1)
    ref_gpus_per_node: int = Field(default=8, ge=1)
    vllm_engines: int = Field(default=8, ge=1)
    vllm_tensor_parallel_size: int = Field(default=1, ge=1)
    vllm_gpu_memory_utilization: float = Field(default=0.6, gt=0, le=1)


class PPOReward(_Model):
    mode: RewardMode = RewardMode.AGENT
    # agent / reward_func: the adapter file inside the image, e.g.
    # /opt/venv/lib/python3.11/site-packages/policy_adapter/openrlhf_agent.py
    file: ShellSafe = ""


class PPO(_Model):
    policy: ShellSafe = Field(min_length=1)
    reward: PPOReward = PPOReward()
    data: PPOData
    rollout: Rollout = Rollout()
    train: PPOTrain = PPOTrain()
    algo: Algo = Algo()
    placement: Placement = Placement()
    deepspeed: DeepSpeed = DeepSpeed()
    checkpoints: Checkpoints = Checkpoints()
    cluster: RayCluster = RayCluster()
    job: RayJobLimits = RayJobLimits()
    env: dict[EnvName, str] = {}  # extra runtime-env variables of the Ray job
    extra_args: list[ShellSafe] = []  # appended to OpenRLHF's arguments as they are

    @model_validator(mode="after")
    def _coherent(self) -> PPO:
        needs_file = self.reward.mode in (RewardMode.AGENT, RewardMode.REWARD_FUNC)
        if needs_file and not self.reward.file.endswith(".py"):
            raise ValueError(
                f"ppo.reward.file must be the adapter's .py path inside the image for mode "
                f"{self.reward.mode.value} (python -c 'import policy_adapter, os; "
                "print(os.path.dirname(policy_adapter.__file__))')"
            )
        if self.reward.mode is RewardMode.REWARD_FUNC and not self.data.label_key:
            raise ValueError("reward_func mode judges against a reference: set ppo.data.labelKey")
        estimator = self.algo.advantage_estimator
        if estimator in GROUP_ESTIMATORS and self.rollout.n_samples_per_prompt < 2:
            raise ValueError(f"{estimator} needs ppo.rollout.nSamplesPerPrompt > 1")
        self._check_gpus()
        return self

    def _check_gpus(self) -> None:
        p = self.placement
        actor = p.actor_nodes * p.actor_gpus_per_node
        ref = p.ref_nodes * p.ref_gpus_per_node if self.algo.kl_init_coef > 0 else 0
        vllm = p.vllm_engines * p.vllm_tensor_parallel_size
        if p.colocate_all:
            if actor != vllm:
                raise ValueError(f"colocateAll: actor GPUs ({actor}) must equal vLLM's ({vllm})")
            if ref and ref != actor:
                raise ValueError(f"colocateAll: reference GPUs ({ref}) must equal actor's")
            needed = actor
        else:
            critic = actor if self.algo.advantage_estimator == "gae" else 0
            needed = actor + ref + vllm + critic
        have = self.cluster.gpus
        if needed > have:
            raise ValueError(f"the layout needs {needed} GPUs, the Ray workers have {have}")
        per_pod = max(w.gpus for w in self.cluster.workers)
        widest = max(p.actor_gpus_per_node, p.vllm_tensor_parallel_size)
        if widest > per_pod:
            raise ValueError(f"{widest} GPUs per node wanted, the largest worker pod has {per_pod}")


class DPOData(_Model):
    # The `rrm bestofn` output (dpo.jsonl), usually under storage.data.mountPath.
    dataset: ShellSafe = Field(min_length=1)
    prompt_key: ShellSafe = "prompt"
    chosen_key: ShellSafe = "chosen"
    rejected_key: ShellSafe = "rejected"
    apply_chat_template: bool = True  # `rrm bestofn --format chat` (the default) writes messages
    max_len: int = Field(default=2048, ge=1)
    max_samples: int = Field(default=0, ge=0)


class DPOTrain(_Model):
    batch_size: int = Field(default=128, ge=1)
    micro_batch_size: int = Field(default=1, ge=1)
    max_epochs: int = Field(default=1, ge=1)
    seed: int = 42
    learning_rate: float = Field(default=5e-7, gt=0)
    beta: float = Field(default=0.1, gt=0)


class DPO(_Model):
    policy: ShellSafe = Field(min_length=1)
    ref: ShellSafe = ""  # empty: the policy
    data: DPOData
    train: DPOTrain = DPOTrain()
    deepspeed: DeepSpeed = DeepSpeed()
    checkpoints: Checkpoints = Checkpoints()
    resources: GPUPods = GPUPods()
    job: JobLimits = JobLimits()
    env: dict[EnvName, str] = {}
    extra_args: list[ShellSafe] = []


class LaunchConfig(_Model):
    namespace: Annotated[str, Field(pattern=DNS_LABEL, max_length=63)] = "default"
    # Jobs are named <name>-ppo and <name>-dpo (KubeRay caps RayJob names at 47 characters).
    name: Annotated[str, Field(pattern=DNS_LABEL, max_length=40)]
    image: Image
    image_pull_secrets: list[str] = []
    service_account_name: str = ""
    gpu_resource: str = "nvidia.com/gpu"
    reward_service: RewardService = RewardService()
    huggingface: SecretKey = SecretKey()
    storage: Storage = Storage()
    security: Security = Security()
    ppo: PPO | None = None
    dpo: DPO | None = None

    @model_validator(mode="after")
    def _needs_checkpoints(self) -> LaunchConfig:
        if not self.storage.checkpoints.claim_name:
            raise ValueError(
                "storage.checkpoints.claimName is required: the trained model goes there"
            )
        remote = self.ppo is not None and self.ppo.reward.mode is RewardMode.REMOTE_RM
        if remote and not self.reward_service.remote_url:
            raise ValueError("remote_rm mode needs rewardService.remoteUrl")
        return self

    def job_name(self, kind: Literal["ppo", "dpo"]) -> str:
        return f"{self.name}-{kind}"


def apply_override(raw: dict[str, Any], assignment: str) -> None:
    """`ppo.rollout.nSamplesPerPrompt=16`: the value is read as YAML (numbers, booleans, lists)."""
    path, sep, text = assignment.partition("=")
    if not sep or not re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*", path):
        raise ValueError(f"--set expects dotted.key=value, got {assignment!r}")
    *parents, leaf = path.split(".")
    node = raw
    for key in parents:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ValueError(f"--set {path}: {key} is not a mapping")
        node = child
    node[leaf] = yaml.safe_load(text) if text else ""


def load_config(path: Path | None, overrides: Sequence[str] = ()) -> LaunchConfig:
    raw: dict[str, Any] = {}
    if path is not None:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: expected a mapping at the top")
        raw = loaded
    for assignment in overrides:
        apply_override(raw, assignment)
    return LaunchConfig.model_validate(raw)

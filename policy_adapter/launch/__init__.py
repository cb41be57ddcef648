"""Training jobs on Kubernetes against rrm-serve: OpenRLHF PPO/GRPO as a KubeRay RayJob and DPO
as a batch/v1 Job, built from one typed config (`rrm launch ppo|dpo`)."""

from policy_adapter.launch.config import LaunchConfig, RewardMode, load_config
from policy_adapter.launch.manifests import build_dpo_job, build_ppo_rayjob
from policy_adapter.launch.openrlhf_args import dpo_argv, ppo_argv

__all__ = [
    "LaunchConfig",
    "RewardMode",
    "build_dpo_job",
    "build_ppo_rayjob",
    "dpo_argv",
    "load_config",
    "ppo_argv",
]

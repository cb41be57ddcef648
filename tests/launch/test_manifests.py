"""The built objects are valid: the RayJob against KubeRay's CRD (closed), its pod templates and
the DPO Job against Kubernetes 1.30 and 1.34 (strict); and they say what the config says."""

from __future__ import annotations

import copy
import shlex

import pytest
import yaml
from pydantic import ValidationError

from policy_adapter.launch.config import LaunchConfig, load_config
from policy_adapter.launch.manifests import build_dpo_job, build_ppo_rayjob
from policy_adapter.launch.openrlhf_args import ppo_argv
from tests.launch.configs import BASE, VARIANTS, merged, write_config
from tests.launch.schemas import kubernetes_errors, rayjob_errors, rayjob_pods


def test_rayjob_matches_the_crd(variant: tuple[str, LaunchConfig]) -> None:
    rayjob = build_ppo_rayjob(variant[1])
    assert rayjob["apiVersion"] == "ray.io/v1" and rayjob["kind"] == "RayJob"
    assert rayjob_errors(rayjob) == []


def test_rayjob_pod_templates_match_kubernetes(variant: tuple[str, LaunchConfig]) -> None:
    for pod in rayjob_pods(build_ppo_rayjob(variant[1])).values():
        assert kubernetes_errors(pod) == []


def test_dpo_job_matches_kubernetes(variant: tuple[str, LaunchConfig]) -> None:
    job = build_dpo_job(variant[1])
    assert kubernetes_errors(job) == []


def test_closed_schemas_reject_a_misspelt_field() -> None:
    cfg = LaunchConfig.model_validate(BASE)
    rayjob = build_ppo_rayjob(cfg)
    rayjob["spec"]["shutdownAfterJobFinish"] = True
    assert rayjob_errors(rayjob)
    job = build_dpo_job(cfg)
    job["spec"]["template"]["spec"]["containers"][0]["resource"] = {}
    assert kubernetes_errors(job)


def test_rayjob_runs_openrlhf_on_gpu_workers_and_cleans_up() -> None:
    cfg = LaunchConfig.model_validate(VARIANTS["gae-split-two-groups"])
    spec = build_ppo_rayjob(cfg)["spec"]
    assert shlex.split(spec["entrypoint"]) == ppo_argv(cfg)
    assert spec["shutdownAfterJobFinishes"] is True
    assert spec["ttlSecondsAfterFinished"] == 300
    assert spec["activeDeadlineSeconds"] == 7 * 86400
    cluster = spec["rayClusterSpec"]
    assert cluster["rayVersion"] == "2.55.0"
    head = cluster["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"
    assert "nvidia.com/gpu" not in head["template"]["spec"]["containers"][0]["resources"]["limits"]
    groups = {g["groupName"]: g for g in cluster["workerGroupSpecs"]}
    assert set(groups) == {"train", "rollout"}
    train = groups["train"]
    assert train["replicas"] == train["minReplicas"] == train["maxReplicas"] == 2
    (container,) = train["template"]["spec"]["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "8"
    assert container["resources"]["requests"] == container["resources"]["limits"]
    assert train["template"]["spec"]["nodeSelector"] == {
        "nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"
    }
    # checkpoints and data share one claim: one volume, two mounts, the data one read-only
    volumes = {v["name"]: v for v in train["template"]["spec"]["volumes"]}
    assert set(volumes) == {"tmp", "shm", "checkpoints"}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/datasets"] == {
        "name": "checkpoints",
        "mountPath": "/datasets",
        "readOnly": True,
    }
    assert volumes["shm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "16Gi"}
    # image's own user when security.runAsUser is null
    assert "runAsUser" not in train["template"]["spec"]["securityContext"]


def test_rayjob_runtime_env_and_secrets_configure_the_adapter() -> None:
    cfg = LaunchConfig.model_validate(BASE)
    spec = build_ppo_rayjob(cfg)["spec"]
    env_vars = yaml.safe_load(spec["runtimeEnvYAML"])["env_vars"]
    assert env_vars == {
        "PYTHONUNBUFFERED": "1",
        "RRM_ADDRESS": "rrm-serve-gateway.judge.svc:50051",
        "RRM_GROUP_TIMEOUT_S": "120",
        "RRM_N_SAMPLES_PER_PROMPT": "8",
        "RRM_STRATEGY": "knockout",
        "RRM_MAX_REASONING_TOKENS": "2048",
    }
    # the adapter's settings accept them as they are
    from policy_adapter.settings import AdapterSettings

    settings = AdapterSettings(**{k.removeprefix("RRM_").lower(): v for k, v in env_vars.items()
                                  if k.startswith("RRM_")})  # fmt: skip
    assert settings.n_samples_per_prompt == 8 and settings.strategy == "knockout"
    for template in rayjob_pods(build_ppo_rayjob(cfg)).values():
        (container,) = template["spec"]["containers"]
        assert not any("value" in e and "TOKEN" in e["name"] for e in container["env"])
    worker = spec["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    secrets = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in worker["env"] if "valueFrom" in e}
    assert secrets == {
        "HF_TOKEN": {"name": "hf-token", "key": "token"},
        "RRM_TOKEN": {"name": "rrm-token", "key": "token"},
    }


def test_remote_rm_mode_needs_no_grpc_settings() -> None:
    cfg = LaunchConfig.model_validate(VARIANTS["remote-rm"])
    spec = build_ppo_rayjob(cfg)["spec"]
    assert yaml.safe_load(spec["runtimeEnvYAML"])["env_vars"] == {"PYTHONUNBUFFERED": "1"}
    worker = spec["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    assert "RRM_TOKEN" not in {e["name"] for e in worker["env"]}


def test_dpo_job_trains_on_the_bestofn_pairs_as_non_root() -> None:
    cfg = LaunchConfig.model_validate(BASE)
    job = build_dpo_job(cfg)
    assert job["metadata"] == {
        "name": "grpo-rrm-dpo",
        "namespace": "training",
        "labels": job["spec"]["template"]["metadata"]["labels"],
    }
    assert job["spec"]["backoffLimit"] == 0
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"] == {
        "seccompProfile": {"type": "RuntimeDefault"},
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "runAsGroup": 1000,
        "fsGroup": 1000,
    }
    assert pod["imagePullSecrets"] == [{"name": "ghcr-pull"}]
    (container,) = pod["containers"]
    assert container["command"][:5] == [
        "deepspeed", "--num_gpus", "8", "--module", "openrlhf.cli.train_dpo"
    ]  # fmt: skip
    command = container["command"]
    assert command[command.index("--data.dataset") + 1] == "/data/bestofn/dpo.jsonl"
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "8"
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["data"] == {"name": "data", "mountPath": "/data", "readOnly": True}
    assert pod["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]


WRONG = [
    ({"name": "Grpo_RRM"}, "name"),
    ({"name": "x" * 41}, "name"),
    ({"storage": {"checkpoints": {"claimName": ""}}}, "claimName"),
    ({"ppo": {"reward": {"file": ""}}}, "ppo.reward.file"),
    ({"ppo": {"reward": {"mode": "reward_func", "file": "/x/f.py"}}}, "labelKey"),
    ({"ppo": {"reward": {"mode": "remote_rm"}}}, "remoteUrl"),
    ({"ppo": {"rollout": {"nSamplesPerPrompt": 1}}}, "nSamplesPerPrompt > 1"),
    ({"ppo": {"placement": {"vllmEngines": 4}}}, "must equal vLLM"),
    ({"ppo": {"cluster": {"workers": [{"gpus": 4}]}}}, "needs 8 GPUs"),
    ({"ppo": {"data": {"promptDataset": "/data/my prompts.jsonl"}}}, "promptDataset"),
    ({"ppo": {"extraArgs": ["--x", "$(rm -rf /)"]}}, "extraArgs"),
    ({"ppo": {"algo": {"advantageEstimator": "grpo"}}}, "advantageEstimator"),
    ({"rewardService": {"strategy": "double_elimination"}}, "unknown strategy"),
    ({"dpo": {"resources": {"gpus": 0}}}, "gpus"),
    ({"dpo": {"train": {"beta": 0}}}, "beta"),
    ({"dpo": {"learningRate": 1e-6}}, "learningRate"),  # belongs under dpo.train
    ({"dpo": {"env": {"NCCL DEBUG": "INFO"}}}, "env"),
]


@pytest.mark.parametrize(("change", "field"), WRONG)
def test_wrong_configs_are_refused(change: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError, match=field.replace("(", r"\(")):
        LaunchConfig.model_validate(merged(BASE, change))


def test_overrides_apply_on_top_of_the_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = write_config(tmp_path, BASE)
    cfg = load_config(
        path,
        ["name=run-7", "ppo.rollout.nSamplesPerPrompt=16", "ppo.extraArgs=[--eval.steps, '20']",
         "storage.shmSize=32Gi", "dpo.train.learningRate=1e-6"],
    )  # fmt: skip
    assert cfg.job_name("ppo") == "run-7-ppo"
    assert cfg.ppo is not None and cfg.ppo.rollout.n_samples_per_prompt == 16
    assert cfg.ppo.extra_args == ["--eval.steps", "20"]
    assert cfg.storage.shm_size == "32Gi"
    assert cfg.dpo is not None and cfg.dpo.train.learning_rate == 1e-6
    with pytest.raises(ValueError, match=r"dotted\.key=value"):
        load_config(path, ["ppo.rollout"])
    with pytest.raises(ValueError, match="not a mapping"):
        load_config(path, ["name.first=x"])
    untouched = copy.deepcopy(BASE)
    assert load_config(path) == LaunchConfig.model_validate(untouched)

"""The Kubernetes objects of a training run: a KubeRay RayJob for PPO/GRPO, a batch/v1 Job for DPO.

Plain dicts, ready for the API or for YAML. helm/rrm-serve/templates/{rayjob-ppo,job-dpo}.yaml
render the same objects from the chart's `training:` values (tests/launch compares them).
"""

from __future__ import annotations

import shlex
from typing import Any, Literal

import yaml

from policy_adapter.launch.config import GPUPods, HeadPod, LaunchConfig, RewardMode, WorkerGroup
from policy_adapter.launch.openrlhf_args import dpo_argv, ppo_argv, rrm_env

Obj = dict[str, Any]
Kind = Literal["ppo", "dpo"]

TMP = "/tmp"


def _submitter_resources() -> Obj:
    return {"requests": {"cpu": "500m", "memory": "512Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}}


def labels(cfg: LaunchConfig, kind: Kind) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "rrm-serve-training",
        "app.kubernetes.io/instance": cfg.job_name(kind),
        "app.kubernetes.io/component": kind,
        "app.kubernetes.io/managed-by": "rrm-launch",
    }


def _pod_security(cfg: LaunchConfig) -> Obj:
    s = cfg.security
    ctx: Obj = {"seccompProfile": {"type": "RuntimeDefault"}}
    if s.run_as_user is not None:
        ctx["runAsNonRoot"] = True
        ctx["runAsUser"] = s.run_as_user
    if s.run_as_group is not None:
        ctx["runAsGroup"] = s.run_as_group
    if s.fs_group is not None:
        ctx["fsGroup"] = s.fs_group
    return ctx


def _container_security() -> Obj:
    return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def _volumes(cfg: LaunchConfig, *, storage: bool) -> tuple[list[Obj], list[Obj]]:
    """(volumes, mounts): /tmp always; /dev/shm and the claims for the training pods."""
    volumes: list[Obj] = [{"name": "tmp", "emptyDir": {}}]
    mounts: list[Obj] = [{"name": "tmp", "mountPath": TMP}]
    if not storage:
        return volumes, mounts
    st = cfg.storage
    volumes.append({"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": st.shm_size}})
    mounts.append({"name": "shm", "mountPath": "/dev/shm"})
    ckpt = st.checkpoints
    volumes.append({"name": "checkpoints", "persistentVolumeClaim": {"claimName": ckpt.claim_name}})
    mounts.append({"name": "checkpoints", "mountPath": ckpt.mount_path})
    data = st.data
    if data.claim_name:
        name = "checkpoints" if data.claim_name == ckpt.claim_name else "data"
        if name == "data":
            volumes.append(
                {
                    "name": "data",
                    "persistentVolumeClaim": {"claimName": data.claim_name, "readOnly": True},
                }
            )
        mounts.append({"name": name, "mountPath": data.mount_path, "readOnly": True})
    return volumes, mounts


def _secret_env(name: str, secret: str, key: str) -> Obj:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def _env(cfg: LaunchConfig, kind: Kind, extra: dict[str, str]) -> list[Obj]:
    env: list[Obj] = [
        {"name": "HOME", "value": TMP},
        {"name": "HF_HOME", "value": f"{TMP}/huggingface"},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
    ]
    hf = cfg.huggingface
    if hf.existing_secret:
        env.append(_secret_env("HF_TOKEN", hf.existing_secret, hf.token_key))
    token = cfg.reward_service.token
    uses_grpc = kind == "ppo" and cfg.ppo and cfg.ppo.reward.mode is not RewardMode.REMOTE_RM
    if uses_grpc and token.existing_secret:
        env.append(_secret_env("RRM_TOKEN", token.existing_secret, token.token_key))
    env += [{"name": k, "value": v} for k, v in sorted(extra.items())]
    return env


def _resources(cfg: LaunchConfig, pods: HeadPod | GPUPods) -> Obj:
    amounts: Obj = {"cpu": pods.cpu, "memory": pods.memory}
    if isinstance(pods, GPUPods):
        amounts[cfg.gpu_resource] = str(pods.gpus)  # a quantity: the client types want strings
    return {"requests": dict(amounts), "limits": dict(amounts)}


def _pod_spec(cfg: LaunchConfig, container: Obj, pods: HeadPod | GPUPods | None) -> Obj:
    spec: Obj = {"automountServiceAccountToken": False}
    if cfg.service_account_name:
        spec["serviceAccountName"] = cfg.service_account_name
    if cfg.image_pull_secrets:
        spec["imagePullSecrets"] = [{"name": n} for n in cfg.image_pull_secrets]
    spec["securityContext"] = _pod_security(cfg)
    if pods is not None and pods.node_selector:
        spec["nodeSelector"] = dict(pods.node_selector)
    if pods is not None and pods.tolerations:
        spec["tolerations"] = [dict(t) for t in pods.tolerations]
    volumes, mounts = _volumes(cfg, storage=pods is not None)
    spec["containers"] = [{**container, "volumeMounts": mounts}]
    spec["volumes"] = volumes
    return spec


def _container(cfg: LaunchConfig, name: str, kind: Kind, pods: HeadPod | GPUPods) -> Obj:
    return {
        "name": name,
        "image": cfg.image.ref,
        "imagePullPolicy": cfg.image.pull_policy,
        "env": _env(cfg, kind, {}),
        "resources": _resources(cfg, pods),
        "securityContext": _container_security(),
    }


def _template(cfg: LaunchConfig, kind: Kind, spec: Obj) -> Obj:
    return {"metadata": {"labels": labels(cfg, kind)}, "spec": spec}


def _worker_group(cfg: LaunchConfig, group: WorkerGroup) -> Obj:
    container = _container(cfg, "ray-worker", "ppo", group)
    return {
        "groupName": group.name,
        "replicas": group.replicas,
        "minReplicas": group.replicas,
        "maxReplicas": group.replicas,
        "rayStartParams": {},
        "template": _template(cfg, "ppo", _pod_spec(cfg, container, group)),
    }


def shell_entrypoint(argv: list[str]) -> str:
    """The RayJob entrypoint; every word is shell-safe (config.SHELL_SAFE), so no quoting."""
    unsafe = [word for word in argv if shlex.quote(word) != word]
    if unsafe:
        raise ValueError(f"entrypoint words need shell quoting: {unsafe}")
    return " ".join(argv)


def build_ppo_rayjob(cfg: LaunchConfig) -> Obj:
    if cfg.ppo is None:
        raise ValueError("the configuration has no `ppo:` section")
    ppo = cfg.ppo
    head = _container(cfg, "ray-head", "ppo", ppo.cluster.head)
    submitter = {
        "name": "ray-job-submitter",
        "image": cfg.image.ref,
        "imagePullPolicy": cfg.image.pull_policy,
        "env": [{"name": "HOME", "value": TMP}],
        "resources": _submitter_resources(),
        "securityContext": _container_security(),
    }
    submitter_spec = {"restartPolicy": "Never", **_pod_spec(cfg, submitter, None)}
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayJob",
        "metadata": {
            "name": cfg.job_name("ppo"),
            "namespace": cfg.namespace,
            "labels": labels(cfg, "ppo"),
        },
        "spec": {
            "entrypoint": shell_entrypoint(ppo_argv(cfg)),
            "runtimeEnvYAML": yaml.safe_dump({"env_vars": rrm_env(cfg)}, sort_keys=True),
            "submissionMode": "K8sJobMode",
            "shutdownAfterJobFinishes": True,
            "ttlSecondsAfterFinished": ppo.job.ttl_seconds_after_finished,
            "activeDeadlineSeconds": ppo.job.active_deadline_seconds,
            "backoffLimit": ppo.job.backoff_limit,
            "submitterPodTemplate": _template(cfg, "ppo", submitter_spec),
            "rayClusterSpec": {
                "rayVersion": ppo.cluster.ray_version,
                "enableInTreeAutoscaling": False,
                "headGroupSpec": {
                    # the head runs the driver and Ray's services; actors go to the GPU workers
                    "rayStartParams": {"dashboard-host": "0.0.0.0", "num-cpus": "0"},
                    "template": _template(cfg, "ppo", _pod_spec(cfg, head, ppo.cluster.head)),
                },
                "workerGroupSpecs": [_worker_group(cfg, g) for g in ppo.cluster.workers],
            },
        },
    }


def build_dpo_job(cfg: LaunchConfig) -> Obj:
    if cfg.dpo is None:
        raise ValueError("the configuration has no `dpo:` section")
    dpo = cfg.dpo
    container = {
        "name": "dpo",
        "image": cfg.image.ref,
        "imagePullPolicy": cfg.image.pull_policy,
        "command": dpo_argv(cfg),
        "env": _env(cfg, "dpo", dpo.env),
        "resources": _resources(cfg, dpo.resources),
        "securityContext": _container_security(),
    }
    pod = {"restartPolicy": "Never", **_pod_spec(cfg, container, dpo.resources)}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": cfg.job_name("dpo"),
            "namespace": cfg.namespace,
            "labels": labels(cfg, "dpo"),
        },
        "spec": {
            "backoffLimit": dpo.job.backoff_limit,
            "activeDeadlineSeconds": dpo.job.active_deadline_seconds,
            "ttlSecondsAfterFinished": dpo.job.ttl_seconds_after_finished,
            "template": _template(cfg, "dpo", pod),
        },
    }


def build(cfg: LaunchConfig, kind: Kind) -> Obj:
    return build_ppo_rayjob(cfg) if kind == "ppo" else build_dpo_job(cfg)

"""Configurations the launch tests run over: each reward mode and GPU layout of PPO, and DPO."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

ADAPTER = "/opt/venv/lib/python3.11/site-packages/policy_adapter"

BASE: dict[str, Any] = {
    "namespace": "training",
    "name": "grpo-rrm",
    "image": {"repository": "ghcr.io/acme/openrlhf-rrm", "tag": "0.11.2-rrm0.1.0"},
    "imagePullSecrets": ["ghcr-pull"],
    "huggingface": {"existingSecret": "hf-token"},
    "rewardService": {
        "address": "rrm-serve-gateway.judge.svc:50051",
        "token": {"existingSecret": "rrm-token", "tokenKey": "token"},
        "strategy": "knockout",
        "maxReasoningTokens": 2048,
    },
    "storage": {
        "checkpoints": {"claimName": "training-rwx"},
        "data": {"claimName": "datasets"},
    },
    "ppo": {
        "policy": "Qwen/Qwen2.5-7B-Instruct",
        "reward": {"mode": "agent", "file": f"{ADAPTER}/openrlhf_agent.py"},
        "data": {"promptDataset": "/data/prompts.jsonl"},
    },
    "dpo": {
        "policy": "Qwen/Qwen2.5-7B-Instruct",
        "data": {"dataset": "/data/bestofn/dpo.jsonl"},
    },
}


def merged(base: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


VARIANTS: dict[str, dict[str, Any]] = {
    "agent-colocated": BASE,
    "reward-func": merged(
        BASE,
        {
            "ppo": {
                "reward": {"mode": "reward_func", "file": f"{ADAPTER}/openrlhf_reward_func.py"},
                "data": {"inputKey": "question", "labelKey": "reference", "maxSamples": 5000},
                "rollout": {"nSamplesPerPrompt": 4, "batchSize": 128},
                "algo": {
                    "advantageEstimator": "reinforce_baseline",
                    "klUseLoss": False,
                    "klEstimator": "k1",
                },
            },
            "dpo": {
                "ref": "/data/models/sft-7b",
                "data": {"applyChatTemplate": False, "maxSamples": 20000},
            },
        },
    ),
    "remote-rm": merged(
        BASE,
        {
            "rewardService": {"remoteUrl": "http://rrm-serve-remote-rm.judge.svc:8080/get_reward"},
            "ppo": {
                "reward": {"mode": "remote_rm", "file": ""},
                "algo": {"advantageEstimator": "rloo"},
            },
        },
    ),
    "gae-split-two-groups": merged(
        BASE,
        {
            "security": {"runAsUser": None, "runAsGroup": None, "fsGroup": None},
            "storage": {"data": {"claimName": "training-rwx", "mountPath": "/datasets"}},
            "ppo": {
                "data": {"promptDataset": "/datasets/prompts.jsonl"},
                "algo": {
                    "advantageEstimator": "gae",
                    "klInitCoef": 0.0,
                    "klUseLoss": False,
                    "klEstimator": "k1",
                },
                "placement": {
                    "colocateAll": False,
                    "actorNodes": 1,
                    "actorGpusPerNode": 8,
                    "vllmEngines": 2,
                    "vllmTensorParallelSize": 4,
                },
                "deepspeed": {
                    "packingSamples": True,
                    "adamOffload": True,
                    "zeroStage": 2,
                    "attnImplementation": "flash_attention_2",
                },
                "cluster": {
                    "workers": [
                        {
                            "name": "train",
                            "replicas": 2,
                            "gpus": 8,
                            "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
                        },
                        # replicas, gpus, cpu and memory by default; no tolerations
                        {"name": "rollout", "tolerations": []},
                    ],
                },
                "checkpoints": {"saveSteps": -1, "resume": False, "saveHf": False},
                "env": {"NCCL_DEBUG": "INFO"},
                "extraArgs": ["--logger.logging_steps", "5"],
            },
            "dpo": {
                "resources": {"gpus": 4},
                "deepspeed": {
                    "gradientCheckpointing": False,
                    "packingSamples": True,
                    "adamOffload": True,
                    "attnImplementation": "flash_attention_2",
                },
                "checkpoints": {"saveSteps": 100, "resume": False},
                "extraArgs": ["--model.nll_loss_coef", "0.2"],
                "env": {"NCCL_DEBUG": "INFO"},
            },
        },
    ),
}


def write_config(tmp_path: Path, raw: dict[str, Any]) -> Path:
    path = tmp_path / "training.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path

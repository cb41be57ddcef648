"""What the chart tests share: where things are, the value sets, and lookups on rendered objects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "rrm-serve"
CRDS = Path(__file__).resolve().parent / "crds"
RELEASE = "rrm-serve"
NAMESPACE = "judge"

EXTERNAL_REDIS = {
    "redis": {"enabled": False},
    "externalRedis": {
        "host": "redis.data.svc",
        "port": 6380,
        "database": 2,
        "tls": True,
        "existingSecret": "shared-redis",
        "passwordKey": "password",
        "usernameKey": "username",
    },
}

DIGEST = "sha256:" + "ab" * 32

# TLS from a Secret, mutual TLS (client CA), bearer tokens from a Secret.
SECURED: dict[str, Any] = {
    "gateway": {
        "tls": {
            "enabled": True,
            "secretName": "rrm-gateway-tls",
            "clientCA": {"secretName": "rrm-client-ca", "key": "ca.crt"},
        },
        "auth": {"existingSecret": "rrm-gateway-tokens", "tokensKey": "tokens"},
    },
    "helmTest": {"tls": {"caSecretName": "rrm-ca", "clientSecretName": "rrm-check-client-tls"}},
}

# Value sets every structural test runs over; each one switches on a different part of the chart.
VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "external-redis": EXTERNAL_REDIS,
    "keda-off-hpa": {"autoscaling": {"keda": {"enabled": False}}},
    "hpa-custom-metric": {
        "autoscaling": {
            "keda": {"enabled": False},
            "hpa": {
                "metrics": [
                    {
                        "type": "Pods",
                        "pods": {
                            "metric": {"name": "rrm_worker_in_flight"},
                            "target": {"type": "AverageValue", "averageValue": "48"},
                        },
                    }
                ]
            },
        }
    },
    "fixed-replicas": {
        "autoscaling": {"keda": {"enabled": False}, "hpa": {"enabled": False}},
        "worker": {"replicaCount": 2},
    },
    "tls": {"gateway": {"tls": {"enabled": True, "secretName": "rrm-gateway-tls"}}},
    "secured": SECURED,
    "remote-rm": {
        **SECURED,
        "remoteRM": {
            "enabled": True,
            "token": {"existingSecret": "rrm-gateway-tokens", "tokenKey": "tokens"},
            "tls": {"caSecretName": "rrm-gateway-ca", "clientSecretName": "rrm-remote-rm-client"},
            "clients": [
                {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "training"}}}
            ],
        },
        "networkPolicy": {
            "gatewayClients": [{"podSelector": {"matchLabels": {"role": "trainer"}}}]
        },
    },
    "mirror-and-placement": {
        "global": {"imageRegistry": "mirror.example.com:5000/rrm"},
        "gateway": {"image": {"digest": DIGEST}},
        "worker": {
            "image": {"digest": DIGEST},
            "gpuResource": "amd.com/gpu",
            "priorityClassName": "judges",
            "topologySpreadConstraints": [
                {
                    "maxSkew": 1,
                    "topologyKey": "topology.kubernetes.io/zone",
                    "whenUnsatisfiable": "ScheduleAnyway",
                    "labelSelector": {"matchLabels": {"app.kubernetes.io/component": "worker"}},
                }
            ],
        },
        "training": {"imagePullSecrets": [{"name": "ghcr-pull"}]},
    },
    "scale-to-zero": {"autoscaling": {"keda": {"minReplicaCount": 0}}},
    "service-monitor": {
        "serviceMonitor": {"enabled": True, "labels": {"release": "prom"}},
        "prometheusRule": {"enabled": True, "labels": {"release": "prom"}},
        "grafanaDashboard": {"enabled": True, "annotations": {"grafana_folder": "rrm-serve"}},
        "redis": {"metrics": {"enabled": True}},
    },
    "big-model": {
        "engine": {"model": "Reward-Reasoning/RRM-32B", "tensorParallelSize": 4},
        "worker": {"modelCache": {"type": "pvc", "storageClassName": "fast-rwx"}},
        "huggingface": {"existingSecret": "hf", "offline": False},
        "gateway": {"autoscaling": {"enabled": True}},
    },
    "minimal": {
        "networkPolicy": {"enabled": False},
        "serviceAccount": {"create": False},
        "gateway": {"podDisruptionBudget": {"enabled": False}, "service": {"headless": False}},
        "redis": {"persistence": {"enabled": False}},
        "worker": {
            "readOnlyRootFilesystem": False,
            "modelCache": {"type": "existingClaim", "existingClaim": "models"},
        },
    },
}


def objects_of(rendered: dict[str, str]) -> list[dict[str, Any]]:
    objs: list[dict[str, Any]] = []
    for path, text in sorted(rendered.items()):
        if not path.endswith(".yaml"):
            continue
        objs.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return objs


class Rendered:
    """The objects of one render, with lookups by kind and component."""

    def __init__(self, values: dict[str, Any], objects: list[dict[str, Any]]) -> None:
        self.values = values
        self.objects = objects

    def kinds(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def one(self, kind: str, component: str | None = None) -> dict[str, Any]:
        found = [
            o
            for o in self.kinds(kind)
            if component is None
            or o["metadata"]["labels"].get("app.kubernetes.io/component") == component
        ]
        assert len(found) == 1, f"expected one {kind} {component}, found {len(found)}"
        return found[0]

    def maybe(self, kind: str, component: str) -> dict[str, Any] | None:
        found = [
            o
            for o in self.kinds(kind)
            if o["metadata"]["labels"].get("app.kubernetes.io/component") == component
        ]
        return found[0] if found else None

    def workloads(self) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] in ("Deployment", "StatefulSet")]

    def container(self, kind: str, component: str) -> dict[str, Any]:
        containers = self.one(kind, component)["spec"]["template"]["spec"]["containers"]
        # The component's own container; sidecars (Redis' exporter) are named otherwise.
        (container,) = (
            containers
            if len(containers) == 1
            else [c for c in containers if c["name"] == component]
        )
        return container


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}

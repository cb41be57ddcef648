"""The schemas objects are held to offline: the upstream RayJob CRD (closed, like the API server in
strict mode) and Kubernetes' own schemas through kubernetes-validate (1.30 and 1.34, strict)."""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import kubernetes_validate.utils
import yaml

CRD = Path(__file__).resolve().parent / "crds" / "ray.io_rayjobs.yaml"
KUBE_VERSIONS = ("1.30.0", "1.34.0")

# kubernetes-validate reads its JSON schemas from disk on every call; they never change.
kubernetes_validate.utils.schema_contents = functools.lru_cache(maxsize=None)(
    kubernetes_validate.utils.schema_contents
)


def _closed(schema: Any) -> Any:
    """Unknown fields rejected wherever the schema lists properties (the API server, strict)."""
    if isinstance(schema, dict):
        out = {k: _closed(v) for k, v in schema.items()}
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_closed(v) for v in schema]
    return schema


@functools.cache
def rayjob_validator() -> jsonschema.Draft7Validator:
    crd = yaml.safe_load(CRD.read_text(encoding="utf-8"))
    [v1] = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return jsonschema.Draft7Validator(_closed(copy.deepcopy(v1["schema"]["openAPIV3Schema"])))


def rayjob_errors(obj: dict[str, Any]) -> list[str]:
    return [f"{list(e.absolute_path)}: {e.message}" for e in rayjob_validator().iter_errors(obj)]


def kubernetes_errors(obj: dict[str, Any]) -> list[str]:
    errors = []
    for version in KUBE_VERSIONS:
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as err:
            errors.append(f"{version}: {obj['kind']}: {err.message} at {list(err.path)}")
    return errors


def rayjob_pods(rayjob: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every pod template of a RayJob as a core Pod, so Kubernetes' own schema checks it too."""
    spec = rayjob["spec"]
    templates = {
        "submitter": spec["submitterPodTemplate"],
        "head": spec["rayClusterSpec"]["headGroupSpec"]["template"],
    }
    for group in spec["rayClusterSpec"]["workerGroupSpecs"]:
        templates[f"worker-{group['groupName']}"] = group["template"]
    return {
        name: {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"{rayjob['metadata']['name']}-{name}", **t.get("metadata", {})},
            "spec": t["spec"],
        }
        for name, t in templates.items()
    }

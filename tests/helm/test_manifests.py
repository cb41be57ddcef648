"""Every rendered object is valid: Helm's strict lint, Kubernetes' own schemas (1.30 and 1.34,
unknown fields rejected) for core objects, the upstream KEDA CRD schemas for custom resources."""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Callable
from typing import Any

import helm_python as helm
import jsonschema
import kubernetes_validate
import kubernetes_validate.utils
import pytest
import yaml

from tests.helm.rendering import CHART, CRDS, VALUE_SETS, Rendered

KUBE_VERSIONS = ("1.30.0", "1.34.0")
CUSTOM_GROUPS = ("keda.sh/", "monitoring.coreos.com/")

# kubernetes-validate reads its JSON schemas from disk on every call; they never change.
kubernetes_validate.utils.schema_contents = functools.lru_cache(maxsize=None)(
    kubernetes_validate.utils.schema_contents
)


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_chart_lints_strictly(name: str) -> None:
    report = helm.lint(str(CHART), VALUE_SETS[name], strict=True, kube_version="v1.30.0")
    assert report["errors"] == []
    # Severity 1 is INFO ("icon is recommended"); warnings (2) and errors (3) fail.
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_core_objects_match_kubernetes_schemas(
    render: Callable[[str], Rendered], version: str
) -> None:
    seen: set[str] = set()
    checked = 0
    for name in VALUE_SETS:
        for obj in render(name).objects:
            if obj["apiVersion"].startswith(CUSTOM_GROUPS):
                continue
            key = json.dumps(obj, sort_keys=True)
            if key in seen:
                continue
            seen.add(key)
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as err:
                pytest.fail(f"{name}: {obj['kind']} {obj['metadata']['name']}: {err.message}")
            checked += 1
    assert checked >= 20


def _closed(schema: Any) -> Any:
    """The CRD schema with unknown fields rejected, as the API server does in strict mode."""
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
def crd_validators() -> dict[tuple[str, str], jsonschema.Draft7Validator]:
    validators = {}
    for path in sorted(CRDS.glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schema = _closed(copy.deepcopy(version["schema"]["openAPIV3Schema"]))
            validators[(f"{group}/{version['name']}", kind)] = jsonschema.Draft7Validator(schema)
    return validators


def test_closed_crd_schema_rejects_a_misspelt_field(render: Callable[[str], Rendered]) -> None:
    scaled = copy.deepcopy(render("defaults").one("ScaledObject"))
    scaled["spec"]["minReplicas"] = 1  # the ScaledObject field is minReplicaCount
    validator = crd_validators()[("keda.sh/v1alpha1", "ScaledObject")]
    assert not validator.is_valid(scaled)


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_keda_objects_match_upstream_crds(render: Callable[[str], Rendered], name: str) -> None:
    rendered = render(name)
    custom = [o for o in rendered.objects if o["apiVersion"].startswith("keda.sh/")]
    if rendered.values.get("autoscaling", {}).get("keda", {}).get("enabled", True):
        assert {o["kind"] for o in custom} == {"ScaledObject", "TriggerAuthentication"}
    else:
        assert custom == []
    for obj in custom:
        validator = crd_validators()[(obj["apiVersion"], obj["kind"])]
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(obj)]
        assert errors == [], f"{obj['kind']}: {errors}"


def test_service_monitors_are_structurally_sound(render: Callable[[str], Rendered]) -> None:
    """No CRD schema for ServiceMonitor here: check what Prometheus Operator relies on."""
    rendered = render("service-monitor")
    monitors = rendered.kinds("ServiceMonitor")
    assert {m["metadata"]["labels"]["app.kubernetes.io/component"] for m in monitors} == {
        "gateway",
        "worker",
        "redis",  # its redis_exporter sidecar (redis.metrics.enabled)
    }
    for monitor in monitors:
        assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
        assert monitor["metadata"]["labels"]["release"] == "prom"
        spec = monitor["spec"]
        assert set(spec) <= {"selector", "namespaceSelector", "endpoints"}
        selector = spec["selector"]["matchLabels"]
        services = [
            s
            for s in rendered.kinds("Service")
            if selector.items() <= s["metadata"]["labels"].items()
        ]
        scraped = [s for s in services if any(p["name"] == "metrics" for p in s["spec"]["ports"])]
        assert len(scraped) == 1, "exactly one Service exposes the component's metrics"
        for endpoint in spec["endpoints"]:
            assert set(endpoint) <= {"port", "path", "interval"}
            assert endpoint["port"] == "metrics" and endpoint["path"] == "/metrics"
    assert render("defaults").kinds("ServiceMonitor") == []

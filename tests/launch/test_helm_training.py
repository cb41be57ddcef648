"""The chart's optional training templates (rayjob-ppo.yaml, job-dpo.yaml) render the objects
`rrm launch` builds from the same keys, pass the same schemas, refuse the same mistakes, and
values.yaml's `training:` defaults are the launcher's defaults."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import helm_python as helm
import pytest
import yaml

from policy_adapter.launch.config import LaunchConfig
from policy_adapter.launch.manifests import build_dpo_job, build_ppo_rayjob
from tests.launch.configs import BASE, VARIANTS, merged
from tests.launch.schemas import kubernetes_errors, rayjob_errors

CHART = "helm/rrm-serve"
RELEASE = "rrm-serve"


@pytest.fixture(scope="module")
def chart() -> Iterator[Any]:
    from pathlib import Path

    with helm.Chart.load(str(Path(__file__).resolve().parents[2] / CHART)) as loaded:
        yield loaded


def helm_values(raw: dict[str, Any]) -> dict[str, Any]:
    """The launcher config as chart values: `training:` minus the namespace (the release's)."""
    training = {k: copy.deepcopy(v) for k, v in raw.items() if k != "namespace"}
    for kind in ("ppo", "dpo"):
        if kind in training:
            training[kind]["enabled"] = True
    return {"training": training}


def render(chart: Any, values: dict[str, Any], namespace: str) -> dict[str, dict[str, Any]]:
    out = chart.render(copy.deepcopy(values), name=RELEASE, namespace=namespace)
    objects = [
        doc for path, text in out.items() if path.endswith(".yaml")
        for doc in yaml.safe_load_all(text) if doc
    ]  # fmt: skip
    return {o["kind"]: o for o in objects if o["kind"] in ("RayJob", "Job")}


def _words(command: str | list[str]) -> list[object]:
    """Argument words with numbers compared as numbers (Helm prints 1.0 as 1, Python as 1)."""
    words = command.split(" ") if isinstance(command, str) else command
    out: list[object] = []
    for word in words:
        try:
            out.append(float(word))
        except ValueError:
            out.append(word)
    return out


def comparable(obj: Any) -> Any:
    """Labels differ on purpose (the chart's own), and so do annotations (the chart's training
    objects are Helm hooks); commands and the runtime env by meaning."""
    if isinstance(obj, dict):
        out = {k: comparable(v) for k, v in obj.items() if k not in ("labels", "annotations")}
        if "entrypoint" in obj:
            out["entrypoint"] = _words(obj["entrypoint"])
        if "runtimeEnvYAML" in obj:
            out["runtimeEnvYAML"] = yaml.safe_load(obj["runtimeEnvYAML"])
        if "command" in obj:
            out["command"] = _words(obj["command"])
        return out
    if isinstance(obj, list):
        return [comparable(v) for v in obj]
    return obj


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_chart_renders_what_the_launcher_builds(chart: Any, name: str) -> None:
    raw = VARIANTS[name]
    cfg = LaunchConfig.model_validate(raw)
    rendered = render(chart, helm_values(raw), cfg.namespace)
    assert comparable(rendered["RayJob"]) == comparable(build_ppo_rayjob(cfg))
    assert comparable(rendered["Job"]) == comparable(build_dpo_job(cfg))
    assert rayjob_errors(rendered["RayJob"]) == []
    assert kubernetes_errors(rendered["Job"]) == []
    labels = rendered["Job"]["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/component"] == "dpo"
    assert labels["app.kubernetes.io/managed-by"] == "Helm"


def test_training_is_off_by_default(chart: Any) -> None:
    assert render(chart, {}, "judge") == {}


def test_chart_with_training_lints_strictly() -> None:
    from pathlib import Path

    chart_path = str(Path(__file__).resolve().parents[2] / CHART)
    report = helm.lint(chart_path, helm_values(BASE), strict=True, kube_version="v1.30.0")
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


def test_the_default_reward_address_is_this_releases_gateway(chart: Any) -> None:
    values = helm_values(merged(BASE, {"rewardService": {"address": ""}}))
    rayjob = render(chart, values, "judge")["RayJob"]
    env = yaml.safe_load(rayjob["spec"]["runtimeEnvYAML"])["env_vars"]
    assert env["RRM_ADDRESS"] == "rrm-serve-gateway.judge.svc:50051"
    name_default = helm_values({k: v for k, v in BASE.items() if k != "name"})
    assert render(chart, name_default, "judge")["RayJob"]["metadata"]["name"] == "rrm-serve-ppo"


def test_values_defaults_are_the_launchers_defaults() -> None:
    from pathlib import Path

    values_file = Path(__file__).resolve().parents[2] / CHART / "values.yaml"
    values = yaml.safe_load(values_file.read_text(encoding="utf-8"))
    training = copy.deepcopy(values["training"])
    for kind in ("ppo", "dpo"):
        assert training[kind].pop("enabled") is False
    required = {
        "namespace": "ns",
        "name": "run",
        "image": {"repository": "r", "tag": "t"},
        "storage": {"checkpoints": {"claimName": "c"}},
        "ppo": {
            "policy": "p",
            "reward": {"file": "/a.py"},
            "data": {"promptDataset": "/d.jsonl"},
        },
        "dpo": {"policy": "p", "data": {"dataset": "/d.jsonl"}},
    }
    # the chart's empty address means "this release's gateway": the launcher's default
    training["rewardService"]["address"] = "rrm-serve-gateway.judge.svc:50051"
    from_values = LaunchConfig.model_validate(merged(training, required))
    assert from_values == LaunchConfig.model_validate(required)


REFUSED = [
    ({"ppo": {"rollout": {"nSamplesPerPrompt": 1}}}, "nSamplesPerPrompt > 1"),
    ({"ppo": {"reward": {"mode": "reward_func", "file": "/x/f.py"}}}, "labelKey"),
    ({"ppo": {"reward": {"mode": "remote_rm"}}}, "remoteUrl is required"),
    ({"ppo": {"placement": {"vllmEngines": 4}}}, "must equal vLLM"),
    ({"ppo": {"cluster": {"workers": [{"name": "gpu", "gpus": 4}]}}}, "needs 8 GPUs"),
    ({"ppo": {"placement": {"colocateAll": False}}}, "needs 24 GPUs"),
    ({"storage": {"checkpoints": {"claimName": ""}}}, "claimName is required"),
    ({"image": {"repository": ""}}, "image.repository is required"),
    ({"ppo": {"policy": ""}}, "ppo.policy is required"),
    ({"dpo": {"data": {"dataset": ""}}}, "dataset is required"),
    ({"ppo": {"reward": {"file": "/x/agent"}}}, "file"),  # schema: a .py file
    ({"ppo": {"extraArgs": ["$(id)"]}}, "extraArgs"),  # schema: shell-safe words
]


@pytest.mark.parametrize(("change", "message"), REFUSED)
def test_chart_refuses_what_the_launcher_refuses(
    chart: Any, change: dict[str, Any], message: str
) -> None:
    with pytest.raises(helm.HelmError, match=message):
        render(chart, helm_values(merged(BASE, change)), "training")
    with pytest.raises(ValueError):
        LaunchConfig.model_validate(merged(BASE, change))

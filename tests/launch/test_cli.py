"""`rrm launch`: --dry-run prints exactly the built objects; a real launch goes through the
official kubernetes client to FakeKubernetesApi (a TEST DOUBLE of the API server, see
k8s_double.py), submits valid objects, streams the pod's log and exits with the job's outcome."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import yaml
from click.testing import CliRunner, Result
from kubernetes import client
from rich.console import Console

from policy_adapter.launch.cli import EXIT_API, EXIT_CONFIG, EXIT_FAILED, launch, run
from policy_adapter.launch.config import LaunchConfig, load_config
from policy_adapter.launch.manifests import build_dpo_job, build_ppo_rayjob
from tests.launch.configs import BASE, VARIANTS, merged, write_config
from tests.launch.k8s_double import (
    JOB_FAILS,
    JOB_SUCCEEDS,
    RAYJOB_FAILS,
    RAYJOB_SUCCEEDS,
    FakeKubernetesApi,
    Script,
)
from tests.launch.schemas import kubernetes_errors, rayjob_errors


def invoke(*args: str) -> Result:
    return CliRunner().invoke(launch, list(args), catch_exceptions=False)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_dry_run_prints_the_built_objects(tmp_path: Path, name: str) -> None:
    path = write_config(tmp_path, VARIANTS[name])
    cfg = load_config(path)
    for kind, expected in (("ppo", build_ppo_rayjob(cfg)), ("dpo", build_dpo_job(cfg))):
        result = invoke(kind, "--config", str(path), "--dry-run")
        assert result.exit_code == 0, result.output
        assert yaml.safe_load(result.stdout) == expected
        assert "&id" not in result.stdout  # plain YAML, no anchors


def test_dry_run_applies_the_shortcuts_and_overrides(tmp_path: Path) -> None:
    path = write_config(tmp_path, BASE)
    result = invoke(
        "ppo", "--config", str(path), "--dry-run", "--namespace", "rl", "--name", "exp-42",
        "--set", "ppo.rollout.nSamplesPerPrompt=16",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rayjob = yaml.safe_load(result.stdout)
    assert rayjob["metadata"]["name"] == "exp-42-ppo"
    assert rayjob["metadata"]["namespace"] == "rl"
    assert "--rollout.n_samples_per_prompt 16" in rayjob["spec"]["entrypoint"]


def test_a_bad_config_is_a_usage_error(tmp_path: Path) -> None:
    path = write_config(tmp_path, merged(BASE, {"ppo": {"rollout": {"nSamplesPerPrompt": 1}}}))
    result = invoke("ppo", "--config", str(path), "--dry-run")
    assert result.exit_code == EXIT_CONFIG
    assert "invalid configuration" in result.output and "nSamplesPerPrompt > 1" in result.output
    no_dpo = write_config(tmp_path, {k: v for k, v in BASE.items() if k != "dpo"})
    result = invoke("dpo", "--config", str(no_dpo), "--dry-run")
    assert result.exit_code == EXIT_CONFIG and "no `dpo:` section" in result.output


def test_openrlhf_refusing_an_extra_arg_stops_the_launch(tmp_path: Path) -> None:
    path = write_config(tmp_path, merged(BASE, {"ppo": {"extraArgs": ["--remote_rm_url", "x"]}}))
    result = invoke("ppo", "--config", str(path), "--dry-run")
    assert result.exit_code == EXIT_CONFIG
    assert "OpenRLHF 0.11.2 refuses the arguments" in result.output
    assert "unrecognized arguments: --remote_rm_url" in result.output


def launch_against(api: FakeKubernetesApi, tmp_path: Path, kind: str, *extra: str) -> Result:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(api.kubeconfig()), encoding="utf-8")
    config = write_config(tmp_path, BASE)
    return invoke(
        kind, "--config", str(config), "--kubeconfig", str(kubeconfig),
        "--poll-interval", "0.01", *extra,
    )  # fmt: skip


CASES = [
    ("ppo", RAYJOB_SUCCEEDS, 0, "succeeded"),
    ("ppo", RAYJOB_FAILS, EXIT_FAILED, "failed"),
    ("dpo", JOB_SUCCEEDS, 0, "succeeded"),
    ("dpo", JOB_FAILS, EXIT_FAILED, "failed"),
]


@pytest.mark.parametrize(("kind", "script", "code", "verdict"), CASES)
def test_launch_submits_follows_and_exits_with_the_outcome(
    tmp_path: Path, kind: str, script: Script, code: int, verdict: str
) -> None:
    with FakeKubernetesApi(script) as api:
        result = launch_against(api, tmp_path, kind)
    assert result.exit_code == code, result.output
    out = result.stdout
    # what was submitted is exactly the built object, and it is valid
    cfg = load_config(write_config(tmp_path, BASE))
    [received] = api.received
    if kind == "ppo":
        assert received == build_ppo_rayjob(cfg)
        assert rayjob_errors(received) == []
    else:
        assert received == build_dpo_job(cfg)
        assert kubernetes_errors(received) == []
    name = cfg.job_name(kind)  # type: ignore[arg-type]
    assert f"created {received['kind']} training/{name}" in out
    # the pod's log was streamed, in order, between the status lines
    lines = out.splitlines()
    positions = [lines.index(line) for line in script.log_lines]
    assert positions == sorted(positions)
    assert f"--- logs of pod {name}-x7k2p ---" in out
    # every status the job went through was reported, and the verdict last
    assert f"{received['kind']} {name} {verdict}" in lines[-1]
    selectors = {
        parse_qs(urlparse(p).query).get("labelSelector", [""])[0]
        for m, p in api.requests
        if m == "GET" and urlparse(p).path == "/api/v1/namespaces/training/pods"
    }
    assert selectors == {f"batch.kubernetes.io/job-name={name}"}


def test_rayjob_status_lines_follow_kuberay(tmp_path: Path) -> None:
    with FakeKubernetesApi(RAYJOB_FAILS) as api:
        result = launch_against(api, tmp_path, "ppo")
    out = result.stdout
    for phase in ("Initializing", "Running (Ray job RUNNING)", "Failed (Ray job FAILED)"):
        assert f"RayJob grpo-rrm-ppo: {phase}" in out
    assert "AppFailed Job entrypoint command failed with exit code 1" in out


def test_an_existing_job_is_an_api_error(tmp_path: Path) -> None:
    with FakeKubernetesApi(JOB_SUCCEEDS) as api:
        first = launch_against(api, tmp_path, "dpo", "--no-follow")
        second = launch_against(api, tmp_path, "dpo")
    assert first.exit_code == 0
    assert [m for m, _ in api.requests] == ["POST", "POST"]  # no following, no second try
    assert second.exit_code == EXIT_API
    assert "409" in second.stdout and "choose another --name" in second.stdout
    assert len(api.received) == 2


def test_run_with_a_configured_client(tmp_path: Path) -> None:
    """The library path: any ApiClient, here Configuration(host=...) pointing at the double."""
    cfg = LaunchConfig.model_validate(VARIANTS["gae-split-two-groups"])
    out = io.StringIO()
    with FakeKubernetesApi(RAYJOB_SUCCEEDS) as api:
        api_client = client.ApiClient(client.Configuration(host=api.url))
        code = run(cfg, "ppo", api_client, Console(file=out, width=200), poll_interval_s=0.01)
        submitted: list[dict[str, Any]] = api.received
    assert code == 0
    assert submitted == [build_ppo_rayjob(cfg)]
    assert rayjob_errors(submitted[0]) == []
    assert "episode 1/1 step 1: reward 0.31" in out.getvalue()


def test_no_cluster_configuration_is_an_api_error(tmp_path: Path) -> None:
    broken = tmp_path / "kubeconfig"
    broken.write_text("apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\n", "utf-8")
    config = write_config(tmp_path, BASE)
    result = invoke("dpo", "--config", str(config), "--kubeconfig", str(broken))
    assert result.exit_code == EXIT_API
    assert "no usable Kubernetes configuration" in result.output


def test_following_survives_a_transient_api_error(tmp_path: Path) -> None:
    flaky = dataclasses.replace(JOB_SUCCEEDS, unavailable_reads=frozenset({1, 2}))
    with FakeKubernetesApi(flaky) as api:
        result = launch_against(api, tmp_path, "dpo")
    assert result.exit_code == 0, result.output
    assert result.stdout.count("503 Service Unavailable: etcd is busy (retrying)") == 2
    assert "[rank0] saved /checkpoints/model" in result.stdout
    assert "Job grpo-rrm-dpo succeeded" in result.stdout.splitlines()[-1]


def test_a_lasting_api_error_ends_following(tmp_path: Path) -> None:
    down = dataclasses.replace(JOB_SUCCEEDS, unavailable_reads=frozenset(range(100)))
    with FakeKubernetesApi(down) as api:
        result = launch_against(api, tmp_path, "dpo")
    assert result.exit_code == EXIT_API
    assert result.stdout.count("(retrying)") == 9

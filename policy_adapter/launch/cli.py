"""`rrm launch ppo|dpo`: build the training object from a config file, print it (--dry-run) or
submit it and follow it to its end. Exit status: 0 the training succeeded, 1 it failed, 2 a
configuration or command-line error, 3 a Kubernetes API error, 130 interrupted (the job runs on)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Literal

import click
import yaml
from pydantic import ValidationError
from rich.console import Console

from policy_adapter.launch.config import LaunchConfig, load_config
from policy_adapter.launch.manifests import build
from policy_adapter.launch.openrlhf_args import dpo_argv, module_args, ppo_argv
from policy_adapter.launch.openrlhf_check import (
    OPENRLHF_VERSION,
    OpenRLHFArgsError,
    check_args,
    installed_version,
)

EXIT_FAILED, EXIT_CONFIG, EXIT_API, EXIT_INTERRUPTED = 1, 2, 3, 130


class _NoAliasDumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def to_yaml(obj: dict[str, Any]) -> str:
    return yaml.dump(obj, Dumper=_NoAliasDumper, sort_keys=False, width=100)


def _config(path: Path, sets: tuple[str, ...], **shortcuts: str | None) -> LaunchConfig:
    overrides = [f"{key}={value}" for key, value in shortcuts.items() if value]
    try:
        return load_config(path, [*overrides, *sets])
    except ValidationError as err:
        lines = [
            f"  {'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in err.errors()
        ]
        raise click.UsageError(f"{path}: invalid configuration\n" + "\n".join(lines)) from None
    except (OSError, ValueError, yaml.YAMLError) as err:
        raise click.UsageError(f"{path}: {err}") from None


def _check_flags(cfg: LaunchConfig, kind: Literal["ppo", "dpo"]) -> None:
    """Run the argv through the locally installed OpenRLHF's parser, if it is the target version."""
    version = installed_version()
    if version != OPENRLHF_VERSION:
        found = f"openrlhf {version} is installed" if version else "openrlhf is not installed"
        click.echo(f"note: {found}; flags not checked against {OPENRLHF_VERSION}", err=True)
        return
    module, args = module_args(ppo_argv(cfg) if kind == "ppo" else dpo_argv(cfg))
    try:
        check_args(module, args)
    except ImportError as err:  # its __main__ block imports openrlhf.utils: torch, transformers
        click.echo(f"note: openrlhf cannot be imported here ({err}); flags not checked", err=True)
    except OpenRLHFArgsError as err:
        message = f"OpenRLHF {OPENRLHF_VERSION} refuses the arguments: {err}"
        raise click.UsageError(message) from None


def _api_client(kubeconfig: Path | None, context: str | None) -> Any:
    """A kubeconfig (given, $KUBECONFIG or ~/.kube/config), else the pod's service account."""
    from kubernetes import client, config

    configuration = client.Configuration()
    try:
        config.load_kube_config(
            config_file=str(kubeconfig) if kubeconfig else None,
            context=context,
            client_configuration=configuration,
        )
    except config.ConfigException:
        if kubeconfig or context or "KUBERNETES_SERVICE_HOST" not in os.environ:
            raise
        config.load_incluster_config(client_configuration=configuration)
    return client.ApiClient(configuration)


def run(
    cfg: LaunchConfig,
    kind: Literal["ppo", "dpo"],
    api_client: Any,
    console: Console,
    *,
    follow: bool = True,
    poll_interval_s: float = 5.0,
    log_drain_s: float = 30.0,
) -> int:
    """Submit and (by default) follow; the process exit status."""
    from policy_adapter.launch.follow import Launcher, LaunchError

    obj = build(cfg, kind)
    launcher = Launcher(
        api_client, console, poll_interval_s=poll_interval_s, log_drain_s=log_drain_s
    )
    meta = obj["metadata"]
    try:
        launcher.submit(obj)
        if not follow:
            return 0
        state = launcher.follow(obj["kind"], meta["namespace"], meta["name"])
    except LaunchError as err:
        console.print(f"[red]error:[/] {err}", highlight=False)
        return EXIT_API
    except KeyboardInterrupt:
        console.print(
            f"stopped following; {obj['kind']} {meta['namespace']}/{meta['name']} keeps running "
            f"(kubectl -n {meta['namespace']} delete {obj['kind'].lower()} {meta['name']})"
        )
        return EXIT_INTERRUPTED
    verdict = "[green]succeeded[/]" if state.succeeded else "[red]failed[/]"
    detail = f": {state.message}" if state.message else ""
    if not detail and not state.succeeded:
        detail = f" ({state.phase})"
    summary = f"{obj['kind']} {meta['name']} {verdict}{detail}"
    console.print(summary, highlight=False)
    return 0 if state.succeeded else EXIT_FAILED


def _command(kind: Literal["ppo", "dpo"], summary: str) -> click.Command:
    @click.command(kind, help=summary)
    @click.option(
        "--config",
        "config_path",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        required=True,
        help="YAML configuration (docs/deploy.md, 'Run PPO/DPO training').",
    )
    @click.option(
        "--set",
        "sets",
        multiple=True,
        metavar="KEY=VALUE",
        help="Override one value, e.g. ppo.rollout.nSamplesPerPrompt=16 (repeatable).",
    )
    @click.option("--namespace", default=None, help="Override `namespace`.")
    @click.option("--name", default=None, help="Override `name` (the job is <name>-" + kind + ").")
    @click.option("--dry-run", is_flag=True, help="Print the object as YAML; submit nothing.")
    @click.option("--no-follow", is_flag=True, help="Submit and return without following.")
    @click.option(
        "--poll-interval",
        type=float,
        default=5.0,
        show_default=True,
        help="Seconds between status polls.",
    )
    @click.option(
        "--kubeconfig",
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        default=None,
        help="Kubeconfig file (default: $KUBECONFIG, ~/.kube/config, "
        "or the in-cluster service account).",
    )
    @click.option("--context", default=None, help="Kubeconfig context.")
    def command(
        config_path: Path,
        sets: tuple[str, ...],
        namespace: str | None,
        name: str | None,
        dry_run: bool,
        no_follow: bool,
        poll_interval: float,
        kubeconfig: Path | None,
        context: str | None,
    ) -> None:
        cfg = _config(config_path, sets, namespace=namespace, name=name)
        if getattr(cfg, kind) is None:
            raise click.UsageError(f"{config_path}: no `{kind}:` section")
        _check_flags(cfg, kind)
        if dry_run:
            click.echo(to_yaml(build(cfg, kind)), nl=False)
            return
        try:
            api_client = _api_client(kubeconfig, context)
        except Exception as err:  # the kubernetes config loaders raise several unrelated types
            click.echo(f"error: no usable Kubernetes configuration: {err}", err=True)
            sys.exit(EXIT_API)
        code = run(
            cfg,
            kind,
            api_client,
            Console(soft_wrap=True),
            follow=not no_follow,
            poll_interval_s=poll_interval,
        )
        sys.exit(code)

    return command


@click.group("launch")
def launch() -> None:
    """Run OpenRLHF training on Kubernetes against this deployment: PPO/GRPO as a KubeRay RayJob,
    DPO as a batch/v1 Job."""


launch.add_command(
    _command("ppo", "PPO/GRPO: a KubeRay RayJob running openrlhf.cli.train_ppo_ray, rewarded "
             "by the reward service.")
)  # fmt: skip
launch.add_command(
    _command("dpo", "DPO on `rrm bestofn` pairs: a batch/v1 Job running deepspeed --module "
             "openrlhf.cli.train_dpo.")
)  # fmt: skip

if __name__ == "__main__":
    launch()

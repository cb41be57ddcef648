"""`rrm`: the one console script. Settings come from `RRM_*` variables; flags override a few."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path

try:
    import click
except ModuleNotFoundError as missing:  # the trainer-side install, 'rrm-serve[client]'
    raise SystemExit(
        f"rrm: {missing.name} is not installed; the rrm commands need an extra: "
        "pip install 'rrm-serve[server]' (or [remote-rm], [launcher])"
    ) from None

from reward_service.settings import Settings


def _settings(**overrides: object) -> Settings:
    settings = Settings()
    for dotted, value in overrides.items():
        if value is None:
            continue
        group, _, name = dotted.partition("__")
        target = getattr(settings, group) if name else settings
        setattr(target, name or group, value)
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    return settings


@click.group()
def main() -> None:
    """rrm-serve: Reward Reasoning Models as a judging service."""


@main.command()
@click.option("--host", default=None, help="Bind address (RRM_GATEWAY__HOST).")
@click.option("--port", type=int, default=None, help="gRPC port (RRM_GATEWAY__PORT).")
@click.option("--model", default=None, help="Model folder or id (RRM_ENGINE__MODEL).")
def serve(host: str | None, port: int | None, model: str | None) -> None:
    """Gateway + embedded queue + worker + engine in one process."""
    from reward_service.app import serve_all

    settings = _settings(gateway__host=host, gateway__port=port, engine__model=model)

    def ready(bound: int) -> None:
        click.echo(f"rrm-serve ready on {settings.gateway.host}:{bound}", err=True)

    asyncio.run(serve_all(settings, on_ready=ready))


@main.command()
@click.option("--host", default=None, help="Bind address (RRM_GATEWAY__HOST).")
@click.option("--port", type=int, default=None, help="gRPC port (RRM_GATEWAY__PORT).")
def gateway(host: str | None, port: int | None) -> None:
    """The gateway alone (RRM_QUEUE__KIND=redis): judgments run on `rrm worker` replicas."""
    from reward_service.app import run_gateway

    settings = _settings(gateway__host=host, gateway__port=port)

    def ready(bound: int) -> None:
        click.echo(f"rrm gateway ready on {settings.gateway.host}:{bound}", err=True)

    asyncio.run(run_gateway(settings, on_ready=ready))


@main.command()
@click.option("--model", default=None, help="Model folder or id (RRM_ENGINE__MODEL).")
def worker(model: str | None) -> None:
    """One worker replica (RRM_QUEUE__KIND=redis): runs the judge on its engine."""
    from reward_service.app import run_worker

    asyncio.run(run_worker(_settings(engine__model=model)))


@main.command()
@click.option("--dest", type=click.Path(path_type=Path), default=None)
@click.option("--force", is_flag=True, help="Convert again even if the folder exists.")
def model(dest: Path | None, force: bool) -> None:
    """Convert the CPU default judge (SmolLM2-135M-Instruct GGUF from PyPI) into the cache."""
    from reward_service.engine.default_model import convert_default_model

    settings = _settings()
    path = convert_default_model(dest or settings.default_model_dir, force=force)
    click.echo(str(path))


@main.command()
@click.option("--target", default="127.0.0.1:50051", show_default=True)
@click.option("--query", required=True)
@click.option("--a", "response_a", required=True, help="Response A.")
@click.option("--b", "response_b", required=True, help="Response B.")
@click.option("--votes", type=int, default=1, show_default=True)
@click.option(
    "--order",
    type=click.Choice(["random", "as_given", "both"]),
    default="random",
    show_default=True,
)
@click.option("--max-reasoning-tokens", type=int, default=0, help="0: the server default.")
@click.option("--reasoning", is_flag=True, help="Print the judge's reasoning.")
@click.option("--timeout", type=float, default=600.0, show_default=True)
def compare(
    target: str,
    query: str,
    response_a: str,
    response_b: str,
    votes: int,
    order: str,
    max_reasoning_tokens: int,
    reasoning: bool,
    timeout: float,
) -> None:
    """Judge one pair on a running server and print the answer as JSON."""
    import grpc
    from google.protobuf.json_format import MessageToDict
    from rrm.v1 import reward_pb2 as pb
    from rrm.v1 import reward_pb2_grpc as pb_grpc

    request = pb.CompareRequest(
        query=query,
        response_a=response_a,
        response_b=response_b,
        options=pb.JudgeOptions(
            votes=votes,
            order=pb.Order.Value(f"ORDER_{order.upper()}"),
            max_reasoning_tokens=max_reasoning_tokens,
            return_reasoning=reasoning,
        ),
    )
    with grpc.insecure_channel(target) as channel:
        try:
            reply = pb_grpc.RewardServiceStub(channel).Compare(request, timeout=timeout)
        except grpc.RpcError as err:
            raise click.ClickException(f"{err.code().name}: {err.details()}") from err
    click.echo(json.dumps(MessageToDict(reply), indent=2, ensure_ascii=False))


@main.command()
@click.option("--target", default="127.0.0.1:50051", show_default=True)
@click.option("--tls-ca", type=click.Path(path_type=Path), default=None, help="CA: use TLS.")
@click.option("--tls-cert", type=click.Path(path_type=Path), default=None, help="Client cert.")
@click.option("--tls-key", type=click.Path(path_type=Path), default=None, help="Client key.")
@click.option(
    "--token-file", type=click.Path(path_type=Path), default=None, help="Bearer tokens file."
)
@click.option("--timeout", type=float, default=10.0, show_default=True)
def check(
    target: str,
    tls_ca: Path | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    token_file: Path | None,
    timeout: float,
) -> None:
    """Exit 0 if the gateway is SERVING and answers GetInfo (printed as JSON), else 1."""
    from google.protobuf.json_format import MessageToDict

    from reward_service.check import CheckFailed, Transport, check_gateway

    transport = Transport(ca=tls_ca, cert=tls_cert, key=tls_key, token_file=token_file)
    try:
        info = check_gateway(target, transport, timeout)
    except CheckFailed as err:
        raise click.ClickException(str(err)) from err
    click.echo(json.dumps(MessageToDict(info), indent=2, ensure_ascii=False))


def _register_adapter_commands() -> None:
    """The trainer-side commands live in policy_adapter (it never imports the service)."""
    from policy_adapter.cli import bestofn, remote_rm
    from policy_adapter.launch.cli import launch

    main.add_command(launch)
    main.add_command(remote_rm)
    main.add_command(bestofn)


_register_adapter_commands()

if __name__ == "__main__":
    main()

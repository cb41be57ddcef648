"""Render the chart offline (helm-python-sdk embeds Helm's Go SDK: no helm binary, no cluster).

`render(name)` renders one of VALUE_SETS once per session; `render_values(values)` renders any
other values (and raises HelmRenderError / HelmValuesError like `helm template` would fail).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest

from tests.helm.gateway_process import GatewayProcess, gateway_processes, materialise_mounts
from tests.helm.rendering import (
    CHART,
    NAMESPACE,
    RELEASE,
    SECURED,
    VALUE_SETS,
    Rendered,
    objects_of,
)
from tests.security.certs import Pki, make_pki
from tests.support.redis_server import redis_server

GATEWAY_TOKEN = "s3cret-token-from-the-chart"


@pytest.fixture(scope="session")
def chart() -> Iterator[Any]:
    with helm.Chart.load(str(CHART)) as loaded:
        yield loaded


@pytest.fixture(scope="session")
def render_values(chart: Any) -> Callable[[dict[str, Any]], Rendered]:
    def render(values: dict[str, Any]) -> Rendered:
        out = chart.render(copy.deepcopy(values), name=RELEASE, namespace=NAMESPACE)
        return Rendered(values, objects_of(out))

    return render


@pytest.fixture(scope="session")
def render(render_values: Callable[[dict[str, Any]], Rendered]) -> Callable[[str], Rendered]:
    cache: dict[str, Rendered] = {}

    def by_name(name: str) -> Rendered:
        if name not in cache:
            cache[name] = render_values(VALUE_SETS[name])
        return cache[name]

    return by_name


def chart_secrets(pki: Pki) -> dict[str, dict[str, bytes]]:
    """The Secrets SECURED names, filled from `pki`."""
    return {
        "rrm-gateway-tls": {
            "tls.crt": pki.server_cert.read_bytes(),
            "tls.key": pki.server_key.read_bytes(),
        },
        "rrm-client-ca": {"ca.crt": pki.ca.read_bytes()},
        "rrm-gateway-tokens": {"tokens": f"# one per line\n{GATEWAY_TOKEN}\n".encode()},
        "rrm-ca": {"ca.crt": pki.ca.read_bytes()},
        "rrm-check-client-tls": {
            "tls.crt": pki.client_cert.read_bytes(),
            "tls.key": pki.client_key.read_bytes(),
        },
    }


@pytest.fixture(scope="session")
def no_worker_gateways(
    render_values: Callable[[dict[str, Any]], Rendered], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, tuple[Rendered, GatewayProcess, Pki]]]:
    """Two real `rrm gateway` processes on a Redis where no worker exists (their warm-up
    judgments wait in the queue), each given the env and mounted files the chart renders:
    "plaintext" (the defaults) and "secured" (TLS + mutual TLS + bearer tokens, SECURED)."""
    pki = make_pki(Path(tmp_path_factory.mktemp("pki")))
    secrets = chart_secrets(pki)
    renders = {"plaintext": render_values({}), "secured": render_values(SECURED)}
    configs = {}
    for mode, rendered in renders.items():
        tmp = Path(tmp_path_factory.mktemp(mode))
        gateway = rendered.one("Deployment", "gateway")
        container = rendered.container("Deployment", "gateway")
        env = materialise_mounts(gateway["spec"]["template"]["spec"], container, secrets, tmp)
        configs[mode] = (tmp, env)
    with redis_server() as redis, gateway_processes(redis.url, configs) as gateways:
        yield {mode: (renders[mode], gateways[mode], pki) for mode in configs}

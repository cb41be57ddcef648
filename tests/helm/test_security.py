"""First-class gateway security from values: TLS from a Secret (or a cert-manager Certificate when
the cluster has the CRD), mutual TLS, bearer tokens from a Secret as a mounted file. Rendered,
then run: a real gateway given the env and files the chart mounts refuses plaintext, clients
without a certificate and calls without a token."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import helm_python as helm
import pytest
import yaml
from rrm.v1 import reward_pb2 as pb
from rrm.v1 import reward_pb2_grpc as pb_grpc

from tests.helm.conftest import GATEWAY_TOKEN
from tests.helm.gateway_process import GatewayProcess
from tests.helm.helm3 import BINARY
from tests.helm.rendering import CHART, NAMESPACE, RELEASE, SECURED, Rendered, env_of
from tests.security.certs import Pki

RenderValuesFn = Callable[[dict[str, Any]], Rendered]
Gateways = dict[str, tuple[Rendered, GatewayProcess, Pki]]


def secret_behind(rendered: Rendered, path: str) -> tuple[str, str]:
    """(Secret name, key) whose content the gateway container sees at `path`."""
    pod = rendered.one("Deployment", "gateway")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    for mount in rendered.container("Deployment", "gateway")["volumeMounts"]:
        prefix = mount["mountPath"].rstrip("/") + "/"
        if path.startswith(prefix):
            assert mount.get("readOnly") is True
            secret = volumes[mount["name"]]["secret"]
            (item,) = [i for i in secret["items"] if i["path"] == path[len(prefix) :]]
            return secret["secretName"], item["key"]
    raise AssertionError(f"nothing mounted at {path}")


def test_tls_mtls_and_tokens_come_from_their_secrets(render_values: RenderValuesFn) -> None:
    rendered = render_values(SECURED)
    env = env_of(rendered.container("Deployment", "gateway"))
    expect = {
        "RRM_GATEWAY__TLS_CERT": ("rrm-gateway-tls", "tls.crt"),
        "RRM_GATEWAY__TLS_KEY": ("rrm-gateway-tls", "tls.key"),
        "RRM_GATEWAY__TLS_CLIENT_CA": ("rrm-client-ca", "ca.crt"),
        "RRM_GATEWAY__AUTH_TOKENS_FILE": ("rrm-gateway-tokens", "tokens"),
    }
    for name, source in expect.items():
        assert secret_behind(rendered, env[name]["value"]) == source, name
    assert "RRM_GATEWAY__AUTH_TOKENS" not in env  # never the tokens themselves
    plain = env_of(render_values({}).container("Deployment", "gateway"))
    assert not set(expect) & set(plain)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"tls": {"enabled": True}}, "secretName"),
        ({"tls": {"clientCA": {"secretName": "ca"}}}, "need gateway.tls.enabled"),
        (
            {
                "tls": {
                    "enabled": True,
                    "certManager": {"enabled": True, "issuerRef": {"name": "x"}},
                }
            },
            "no cert-manager.io/v1 API",  # helm template without the CRD: refused, no fallback
        ),
    ],
)
def test_incomplete_security_settings_fail_to_render(
    render_values: RenderValuesFn, values: dict[str, Any], message: str
) -> None:
    with pytest.raises(helm.HelmError, match=message):
        render_values({"gateway": values})


CERT_MANAGER = {
    "gateway": {
        "tls": {
            "enabled": True,
            "certManager": {
                "enabled": True,
                "issuerRef": {"name": "internal-ca", "kind": "ClusterIssuer"},
                "dnsNames": ["rrm.example.com"],
            },
        }
    }
}


@pytest.mark.skipif(not BINARY.exists(), reason=f"no Helm 3 binary at {BINARY}: run make helm3")
def test_cert_manager_issues_the_secret_the_gateway_mounts(tmp_path: Path) -> None:
    """Helm 3's `--api-versions` stands in for a cluster that has cert-manager's CRDs."""
    values = tmp_path / "values.json"
    values.write_text(json.dumps(CERT_MANAGER))
    done = subprocess.run(
        [str(BINARY), "template", RELEASE, str(CHART), "-n", NAMESPACE, "-f", str(values),
         "--api-versions", "cert-manager.io/v1"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    objects = [d for d in yaml.safe_load_all(done.stdout) if d]
    (cert,) = [o for o in objects if o["kind"] == "Certificate"]
    assert cert["apiVersion"] == "cert-manager.io/v1"
    spec = cert["spec"]
    assert set(spec) <= {
        "secretName", "commonName", "dnsNames", "duration", "renewBefore", "privateKey",
        "usages", "issuerRef",
    }  # fmt: skip
    assert spec["issuerRef"] == {
        "name": "internal-ca",
        "kind": "ClusterIssuer",
        "group": "cert-manager.io",
    }
    assert "server auth" in spec["usages"]
    services = [o["metadata"]["name"] for o in objects if o["kind"] == "Service"]
    for service in services:
        if service.startswith(f"{RELEASE}-gateway"):
            assert f"{service}.{NAMESPACE}.svc" in spec["dnsNames"]
    assert "rrm.example.com" in spec["dnsNames"]
    (gateway,) = [
        o
        for o in objects
        if o["kind"] == "Deployment"
        and o["metadata"]["labels"]["app.kubernetes.io/component"] == "gateway"
    ]
    volumes = {v["name"]: v for v in gateway["spec"]["template"]["spec"]["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == spec["secretName"]


# ---- the running gateway, configured as the chart configures it ----

GET_INFO = pb.GetInfoRequest()


def channel(port: int, pki: Pki, *, tls: bool = True, client_cert: bool = True) -> grpc.Channel:
    if not tls:
        return grpc.insecure_channel(f"127.0.0.1:{port}")
    creds = grpc.ssl_channel_credentials(
        root_certificates=pki.ca.read_bytes(),
        private_key=pki.client_key.read_bytes() if client_cert else None,
        certificate_chain=pki.client_cert.read_bytes() if client_cert else None,
    )
    options = [("grpc.ssl_target_name_override", "localhost")]
    return grpc.secure_channel(f"127.0.0.1:{port}", creds, options=options)


def call(port: int, pki: Pki, token: str | None, **kwargs: bool) -> grpc.StatusCode:
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    with channel(port, pki, **kwargs) as ch:
        try:
            pb_grpc.RewardServiceStub(ch).GetInfo(GET_INFO, metadata=metadata, timeout=10)
        except grpc.RpcError as err:
            return err.code()  # type: ignore[no-any-return]
    return grpc.StatusCode.OK


def test_the_secured_gateway_refuses_what_it_should(no_worker_gateways: Gateways) -> None:
    _, gateway, pki = no_worker_gateways["secured"]
    port = gateway.grpc_port
    assert call(port, pki, GATEWAY_TOKEN) == grpc.StatusCode.OK
    assert call(port, pki, None) == grpc.StatusCode.UNAUTHENTICATED
    assert call(port, pki, "not-the-token") == grpc.StatusCode.UNAUTHENTICATED
    assert call(port, pki, GATEWAY_TOKEN, client_cert=False) == grpc.StatusCode.UNAVAILABLE
    assert call(port, pki, GATEWAY_TOKEN, tls=False) == grpc.StatusCode.UNAVAILABLE
    assert gateway.process.poll() is None, gateway.log()


def test_the_default_gateway_is_plaintext_and_open(no_worker_gateways: Gateways) -> None:
    """The control: the same calls against the chart's defaults."""
    _, gateway, pki = no_worker_gateways["plaintext"]
    assert call(gateway.grpc_port, pki, None, tls=False) == grpc.StatusCode.OK
    assert call(gateway.grpc_port, pki, None) == grpc.StatusCode.UNAVAILABLE  # no TLS there

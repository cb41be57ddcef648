"""What the chart must get right, asserted on rendered objects: health probes, the KEDA trigger's
stream and group, secrets kept out of manifests, locked-down pods, network isolation, draining."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import helm_python as helm
import pytest
import yaml

from reward_service.queue.names import QueueNames
from reward_service.settings import Settings
from tests.helm.rendering import CHART, NAMESPACE, REPO, VALUE_SETS, Rendered, env_of

RenderFn = Callable[[str], Rendered]
RenderValuesFn = Callable[[dict[str, Any]], Rendered]

DEFAULTS = yaml.safe_load((CHART / "values.yaml").read_text())
APP_VERSION = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    return obj["spec"]["template"]["spec"]


def pod_labels(obj: dict[str, Any]) -> dict[str, str]:
    return obj["spec"]["template"]["metadata"]["labels"]


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, "the chart only uses matchLabels"
    return selector.get("matchLabels", {}).items() <= labels.items()


def port_number(container: dict[str, Any], port: int | str) -> int:
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in container["ports"] if p["name"] == port]
    return int(number)


def worker_container(rendered: Rendered) -> dict[str, Any]:
    return rendered.container("Deployment", "worker")


# ---- queue names and autoscaling ----


def test_chart_queue_names_are_the_service_queue_names() -> None:
    names = QueueNames()
    assert DEFAULTS["queue"] == {
        "jobsStream": names.jobs_stream,
        "workersGroup": names.workers_group,
    }


@pytest.mark.parametrize("name", ["defaults", "external-redis", "scale-to-zero"])
def test_keda_scales_workers_on_the_lag_of_the_service_group(render: RenderFn, name: str) -> None:
    rendered = render(name)
    scaled = rendered.one("ScaledObject")
    worker = rendered.one("Deployment", "worker")
    assert scaled["spec"]["scaleTargetRef"]["name"] == worker["metadata"]["name"]
    assert "replicas" not in worker["spec"], "KEDA owns the replica count"
    triggers = {t["name"]: t for t in scaled["spec"]["triggers"]}
    assert set(triggers) == {"lag", "pending"}
    names = QueueNames()
    for trigger in triggers.values():
        assert trigger["type"] == "redis-streams"
        assert trigger["metadata"]["stream"] == names.jobs_stream
        assert trigger["metadata"]["consumerGroup"] == names.workers_group
        auth = rendered.one("TriggerAuthentication")
        assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    lag = triggers["lag"]["metadata"]
    # KEDA picks the lag measure only when lagCount is set, and then requires activationLagCount.
    assert {"lagCount", "activationLagCount"} <= set(lag)
    assert "pendingEntriesCount" not in lag
    # One worker's capacity is the unit of the composite metric (tests/helm/test_autoscaling.py).
    in_flight = env_of(worker_container(rendered))["RRM_WORKER__MAX_IN_FLIGHT"]["value"]
    assert triggers["pending"]["metadata"]["pendingEntriesCount"] == in_flight
    assert scaled["spec"]["advanced"]["scalingModifiers"]["target"] == in_flight
    assert rendered.kinds("HorizontalPodAutoscaler") == []


def test_scale_to_zero(render: RenderFn) -> None:
    spec = render("scale-to-zero").one("ScaledObject")["spec"]
    assert spec["minReplicaCount"] == 0
    assert spec["cooldownPeriod"] > 0
    assert spec["advanced"]["scalingModifiers"]["activationTarget"] == "0"
    assert render("defaults").one("ScaledObject")["spec"]["minReplicaCount"] == 1


def test_trigger_authentication_uses_the_pods_redis_secret(render: RenderFn) -> None:
    for name in ("defaults", "external-redis"):
        rendered = render(name)
        env = env_of(worker_container(rendered))
        refs = {
            r["parameter"]: (r["name"], r["key"])
            for r in rendered.one("TriggerAuthentication")["spec"]["secretTargetRef"]
        }
        password = env["RRM_QUEUE__REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]
        assert refs["password"] == (password["name"], password["key"])
        if "REDIS_USERNAME" in env:
            username = env["REDIS_USERNAME"]["valueFrom"]["secretKeyRef"]
            assert refs["username"] == (username["name"], username["key"])
    assert set(refs) == {"password", "username"}  # external-redis has an ACL user


def test_keda_off_falls_back_to_an_hpa(render: RenderFn) -> None:
    rendered = render("keda-off-hpa")
    hpa = rendered.one("HorizontalPodAutoscaler", "worker")
    worker = rendered.one("Deployment", "worker")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": worker["metadata"]["name"],
    }
    assert hpa["spec"]["minReplicas"] >= 1
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Resource" and metric["resource"]["name"] == "cpu"
    assert "replicas" not in worker["spec"], "the HPA owns the replica count"
    custom = render("hpa-custom-metric").one("HorizontalPodAutoscaler", "worker")
    assert custom["spec"]["metrics"][0]["pods"]["metric"]["name"] == "rrm_worker_in_flight"


def test_fixed_replicas_without_autoscaling(render: RenderFn) -> None:
    rendered = render("fixed-replicas")
    assert rendered.kinds("HorizontalPodAutoscaler") == []
    assert rendered.kinds("ScaledObject") == []
    assert rendered.one("Deployment", "worker")["spec"]["replicas"] == 2


def test_hpa_cannot_scale_to_zero(render_values: RenderValuesFn) -> None:
    with pytest.raises(helm.HelmError, match="minReplicas"):
        render_values({"autoscaling": {"keda": {"enabled": False}, "hpa": {"minReplicas": 0}}})


# ---- gateway ----


def test_gateway_listens_where_the_probes_and_services_look(render: RenderFn) -> None:
    rendered = render("defaults")
    container = rendered.container("Deployment", "gateway")
    env = env_of(container)
    assert env["RRM_GATEWAY__HOST"]["value"] == "0.0.0.0"
    assert int(env["RRM_GATEWAY__PORT"]["value"]) == port_number(container, "grpc")
    assert int(env["RRM_GATEWAY__METRICS_PORT"]["value"]) == port_number(container, "metrics")
    service = rendered.maybe("Service", "gateway")
    assert service is not None and service["spec"]["type"] == "ClusterIP"
    gateway_services = [
        s
        for s in rendered.kinds("Service")
        if s["metadata"]["labels"]["app.kubernetes.io/component"] == "gateway"
    ]
    assert len(gateway_services) == 2  # ClusterIP + headless for client-side round robin
    for svc in gateway_services:
        assert selects(
            {"matchLabels": svc["spec"]["selector"]},
            pod_labels(rendered.one("Deployment", "gateway")),
        )
        for port in svc["spec"]["ports"]:
            assert port["targetPort"] in {p["name"] for p in container["ports"]}
    assert env["RRM_QUEUE__KIND"]["value"] == "redis"


def test_gateway_has_replicas_and_a_disruption_budget(render: RenderFn) -> None:
    rendered = render("defaults")
    gateway = rendered.one("Deployment", "gateway")
    assert gateway["spec"]["replicas"] >= 2
    pdb = rendered.one("PodDisruptionBudget", "gateway")
    assert selects(pdb["spec"]["selector"], pod_labels(gateway))
    assert render("minimal").kinds("PodDisruptionBudget") == []
    assert "replicas" not in render("big-model").one("Deployment", "gateway")["spec"]


def test_tls_mounts_the_secret_and_probes_over_http(render: RenderFn) -> None:
    rendered = render("tls")
    gateway = rendered.one("Deployment", "gateway")
    container = rendered.container("Deployment", "gateway")
    env = env_of(container)
    mount_path = DEFAULTS["gateway"]["tls"]["mountPath"]
    assert env["RRM_GATEWAY__TLS_CERT"]["value"] == f"{mount_path}/tls.crt"
    assert env["RRM_GATEWAY__TLS_KEY"]["value"] == f"{mount_path}/tls.key"
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == mount_path]
    assert mount["readOnly"] is True
    (volume,) = [v for v in pod_spec(gateway)["volumes"] if v["name"] == mount["name"]]
    assert volume["secret"]["secretName"] == "rrm-gateway-tls"
    # Probes: the same as without TLS (tests/helm/test_probes.py).
    plain = env_of(render("defaults").container("Deployment", "gateway"))
    assert "RRM_GATEWAY__TLS_CERT" not in plain


def test_tls_without_a_secret_fails(render_values: RenderValuesFn) -> None:
    with pytest.raises(helm.HelmError, match=re.escape("tls.secretName")):
        render_values({"gateway": {"tls": {"enabled": True}}})


# ---- worker ----


@pytest.mark.parametrize("name", ["defaults", "big-model"])
def test_worker_gpus_and_engine_settings_follow_values(render: RenderFn, name: str) -> None:
    rendered = render(name)
    engine = {**DEFAULTS["engine"], **VALUE_SETS[name].get("engine", {})}
    container = worker_container(rendered)
    gpus = engine["tensorParallelSize"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == gpus
    assert container["resources"]["requests"]["nvidia.com/gpu"] == gpus
    env = env_of(container)
    assert env["RRM_ENGINE__MODEL"]["value"] == engine["model"]
    assert env["RRM_ENGINE__TENSOR_PARALLEL_SIZE"]["value"] == str(gpus)
    assert env["RRM_ENGINE__MAX_MODEL_LEN"]["value"] == str(engine["maxModelLen"])
    assert env["RRM_ENGINE__GPU_MEMORY_UTILIZATION"]["value"] == str(engine["gpuMemoryUtilization"])
    assert env["RRM_ENGINE__DTYPE"]["value"] == engine["dtype"]
    assert env["RRM_QUEUE__KIND"]["value"] == "redis"
    assert env["RRM_WORKER__NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    # The gateway reads the same model (tokenizer, context length).
    gateway_env = env_of(rendered.container("Deployment", "gateway"))
    for key in ("RRM_ENGINE__MODEL", "RRM_ENGINE__MAX_MODEL_LEN"):
        assert gateway_env[key] == env[key]


def test_worker_is_ready_only_when_warm(render: RenderFn) -> None:
    container = worker_container(render("defaults"))
    env = env_of(container)
    metrics_port = port_number(container, "metrics")
    assert int(env["RRM_WORKER__METRICS_PORT"]["value"]) == metrics_port
    assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert container["livenessProbe"]["httpGet"]["path"] == "/metrics"
    startup = container["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 20 * 60


def test_worker_drains_before_it_is_killed(render: RenderFn) -> None:
    worker = render("defaults").one("Deployment", "worker")
    container = worker_container(render("defaults"))
    grace = float(env_of(container)["RRM_WORKER__GRACE_S"]["value"])
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    budget = pod_spec(worker)["terminationGracePeriodSeconds"]
    assert budget >= pre_stop + grace + 20
    gateway = render("defaults").one("Deployment", "gateway")
    gateway_container = render("defaults").container("Deployment", "gateway")
    gateway_grace = float(env_of(gateway_container)["RRM_GATEWAY__GRACE_S"]["value"])
    gateway_pre_stop = gateway_container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pod_spec(gateway)["terminationGracePeriodSeconds"] >= gateway_pre_stop + gateway_grace


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"worker": {"graceSeconds": 600}}, "worker.terminationGracePeriodSeconds"),
        ({"gateway": {"graceSeconds": 300}}, "gateway.terminationGracePeriodSeconds"),
        ({"worker": {"rollingUpdate": {"maxSurge": 0}}}, "cannot both be 0"),
    ],
)
def test_rollouts_that_cannot_drain_fail_to_render(
    render_values: RenderValuesFn, values: dict[str, Any], message: str
) -> None:
    with pytest.raises(helm.HelmError, match=re.escape(message)):
        render_values(values)


def test_model_cache_volume_is_configurable(render: RenderFn) -> None:
    def cache_volume(rendered: Rendered) -> dict[str, Any]:
        worker = rendered.one("Deployment", "worker")
        (volume,) = [v for v in pod_spec(worker)["volumes"] if v["name"] == "model-cache"]
        return volume

    assert "emptyDir" in cache_volume(render("defaults"))
    assert render("defaults").kinds("PersistentVolumeClaim") == []
    big = render("big-model")
    pvc = big.one("PersistentVolumeClaim")
    assert cache_volume(big)["persistentVolumeClaim"]["claimName"] == pvc["metadata"]["name"]
    assert pvc["spec"]["storageClassName"] == "fast-rwx"
    claim = cache_volume(render("minimal"))["persistentVolumeClaim"]["claimName"]
    assert claim == "models"
    env = env_of(worker_container(render("defaults")))
    mount = DEFAULTS["worker"]["modelCache"]["mountPath"]
    for key in ("HF_HOME", "VLLM_CACHE_ROOT", "RRM_CACHE_DIR"):
        assert env[key]["value"].startswith(mount + "/")


def test_hf_token_comes_from_the_named_secret(render: RenderFn) -> None:
    for component in ("worker", "gateway"):
        env = env_of(render("big-model").container("Deployment", component))
        assert env["HF_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "hf", "key": "token"}
        assert "HF_TOKEN" not in env_of(render("defaults").container("Deployment", component))


# ---- Redis and secrets ----


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_no_secret_is_written_into_a_pod_spec(render: RenderFn, name: str) -> None:
    rendered = render(name)
    for workload in rendered.workloads():
        for container in pod_spec(workload)["containers"]:
            env = container.get("env", [])
            for var in env:
                if var["name"].endswith("_FILE"):  # a path into a mounted Secret
                    assert var["value"].startswith("/"), var
                elif any(word in var["name"] for word in ("PASSWORD", "TOKEN", "AUTH", "USERNAME")):
                    assert "value" not in var, f"{var['name']} must come from a Secret"
                    assert "secretKeyRef" in var["valueFrom"]
            names = [v["name"] for v in env]
            if "RRM_QUEUE__REDIS_URL" in names:
                url = env[names.index("RRM_QUEUE__REDIS_URL")]["value"]
                assert "PASSWORD" not in url  # beside the URL: RRM_QUEUE__REDIS_PASSWORD
                assert "RRM_QUEUE__REDIS_PASSWORD" in names
                if "$(REDIS_USERNAME)" in url:
                    # $(VAR) expands only variables defined earlier in the list.
                    assert names.index("REDIS_USERNAME") < names.index("RRM_QUEUE__REDIS_URL")


def test_built_in_redis(render: RenderFn) -> None:
    rendered = render("defaults")
    redis = rendered.one("StatefulSet", "redis")
    container = rendered.container("StatefulSet", "redis")
    conf = rendered.one("ConfigMap", "redis")["data"]["redis.conf"].splitlines()
    assert "appendonly yes" in conf
    assert "maxmemory-policy noeviction" in conf
    assert not any(line.startswith("requirepass") for line in conf)
    script = container["command"][-1]
    assert "redis-server /etc/redis/redis.conf -" in script
    assert "requirepass ${REDIS_PASSWORD}" in script
    secret = rendered.one("Secret", "redis")
    env = env_of(container)
    assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == secret["metadata"]["name"]
    (claim,) = redis["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    service = rendered.one("Service", "redis")
    assert selects({"matchLabels": service["spec"]["selector"]}, pod_labels(redis))
    url = env_of(worker_container(rendered))["RRM_QUEUE__REDIS_URL"]["value"]
    host = f"{service['metadata']['name']}.{NAMESPACE}.svc"
    assert url == f"redis://{host}:6379/0"
    address = rendered.one("ScaledObject")["spec"]["triggers"][0]["metadata"]["address"]
    assert address == f"{host}:6379"


def test_existing_redis_secret_is_used_as_is(render_values: RenderValuesFn) -> None:
    rendered = render_values({"redis": {"auth": {"existingSecret": "mine", "passwordKey": "pw"}}})
    assert rendered.kinds("Secret") == []
    env = env_of(worker_container(rendered))
    ref = env["RRM_QUEUE__REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "mine", "key": "pw"}


def test_external_redis(render: RenderFn) -> None:
    rendered = render("external-redis")
    assert rendered.kinds("StatefulSet") == []
    for kind in ("Service", "Secret", "ConfigMap", "NetworkPolicy"):
        assert rendered.maybe(kind, "redis") is None
    for component in ("gateway", "worker"):
        env = env_of(rendered.container("Deployment", component))
        assert env["RRM_QUEUE__REDIS_URL"]["value"] == (
            "rediss://$(REDIS_USERNAME)@redis.data.svc:6380/2"
        )
        assert env["RRM_QUEUE__REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
            "name": "shared-redis",
            "key": "password",
        }
    meta = rendered.one("ScaledObject")["spec"]["triggers"][0]["metadata"]
    assert meta["address"] == "redis.data.svc:6380"
    assert meta["enableTLS"] == "true"
    assert meta["databaseIndex"] == "2"


@pytest.mark.parametrize(
    ("external", "message"),
    [
        ({"existingSecret": "s"}, "externalRedis.host"),
        ({"host": "redis.example"}, "externalRedis.existingSecret"),
    ],
)
def test_external_redis_needs_a_host_and_a_secret(
    render_values: RenderValuesFn, external: dict[str, Any], message: str
) -> None:
    with pytest.raises(helm.HelmError, match=re.escape(message)):
        render_values({"redis": {"enabled": False}, "externalRedis": external})


# ---- pod security and resources ----


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_every_container_is_locked_down_and_has_resources(render: RenderFn, name: str) -> None:
    rendered = render(name)
    expected = 2 + bool(rendered.maybe("StatefulSet", "redis"))
    expected += bool(rendered.maybe("Deployment", "remote-rm"))
    assert len(rendered.workloads()) == expected
    for workload in rendered.workloads():
        spec = pod_spec(workload)
        pod_security = spec["securityContext"]
        assert pod_security["runAsNonRoot"] is True
        assert pod_security["runAsUser"] > 0
        assert pod_security["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["automountServiceAccountToken"] is False
        assert spec["enableServiceLinks"] is False  # no stray RRM_* service variables
        containers = spec["containers"] + spec.get("initContainers", [])
        for container in containers:
            where = f"{name}: {workload['metadata']['name']}/{container['name']}"
            resources = container["resources"]
            for section in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources[section]), where
            security = container["securityContext"]
            assert security["runAsNonRoot"] is True, where
            assert security["runAsUser"] > 0, where
            assert security["allowPrivilegeEscalation"] is False, where
            assert security["privileged"] is False, where
            assert security["capabilities"] == {"drop": ["ALL"]}, where
            component = workload["metadata"]["labels"]["app.kubernetes.io/component"]
            read_only = security["readOnlyRootFilesystem"]
            if component == "worker":
                assert read_only is (name != "minimal"), where
            else:
                assert read_only is True, where
            if read_only:
                mounts = {m["mountPath"] for m in container["volumeMounts"]}
                assert "/tmp" in mounts, where


def test_pods_run_as_the_image_user() -> None:
    """The chart's uid is the one the Dockerfiles create, so volumes and HOME line up."""
    uid = DEFAULTS["security"]["runAsUser"]
    for dockerfile in ("Dockerfile.gateway", "Dockerfile.worker"):
        text = (REPO / "docker" / dockerfile).read_text()
        assert f"--uid {uid} " in text
        assert f"USER {uid}:{DEFAULTS['security']['runAsGroup']}" in text


def test_images_default_to_the_app_version(render: RenderFn) -> None:
    rendered = render("defaults")
    for component in ("gateway", "worker"):
        image = rendered.container("Deployment", component)["image"]
        assert image == f"ghcr.io/rrm-serve/{component}:{APP_VERSION}"
        dockerfile = (REPO / "docker" / f"Dockerfile.{component}").read_text()
        assert f'ENTRYPOINT ["rrm", "{component}"]' in dockerfile
        assert "command" not in rendered.container("Deployment", component)
    gateway_dockerfile = (REPO / "docker" / "Dockerfile.gateway").read_text()
    assert "FROM python:3.11-slim" in gateway_dockerfile
    worker_dockerfile = (REPO / "docker" / "Dockerfile.worker").read_text()
    assert "FROM vllm/vllm-openai:${VLLM_VERSION}" in worker_dockerfile
    assert "ARG VLLM_VERSION=v" in worker_dockerfile, "pin the vLLM base image"


# ---- network policies ----


def ingress_peers(policy: dict[str, Any]) -> list[dict[str, Any]]:
    return [peer for rule in policy["spec"]["ingress"] for peer in rule.get("from", [])]


@pytest.mark.parametrize("name", ["defaults", "keda-off-hpa"])
def test_only_gateways_and_workers_reach_redis(render: RenderFn, name: str) -> None:
    rendered = render(name)
    policy = rendered.one("NetworkPolicy", "redis")
    redis = rendered.one("StatefulSet", "redis")
    assert selects(policy["spec"]["podSelector"], pod_labels(redis))
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]
    assert rule["ports"] == [{"port": "redis", "protocol": "TCP"}]
    in_namespace = [p for p in rule["from"] if "namespaceSelector" not in p]
    allowed = {
        component
        for component in ("gateway", "worker", "redis")
        for peer in in_namespace
        if selects(
            peer["podSelector"],
            pod_labels(
                rendered.one("StatefulSet" if component == "redis" else "Deployment", component)
            ),
        )
    }
    assert allowed == {"gateway", "worker"}
    assert len(in_namespace) == 2
    # The only other peer is KEDA's operator (it reads the lag), and only while KEDA is on.
    others = [p for p in rule["from"] if "namespaceSelector" in p]
    keda_on = name == "defaults"
    assert others == ([DEFAULTS["networkPolicy"]["kedaOperator"]] if keda_on else [])


def test_clients_reach_only_the_gateway(render: RenderFn) -> None:
    rendered = render("defaults")
    gateway_policy = rendered.one("NetworkPolicy", "gateway")
    assert selects(
        gateway_policy["spec"]["podSelector"], pod_labels(rendered.one("Deployment", "gateway"))
    )
    grpc_rule, metrics_rule = gateway_policy["spec"]["ingress"]
    assert grpc_rule["ports"] == [{"port": "grpc", "protocol": "TCP"}]
    assert "from" not in grpc_rule  # any client, by default
    assert metrics_rule["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    assert metrics_rule["from"] == DEFAULTS["networkPolicy"]["metricsFrom"]
    worker_policy = rendered.one("NetworkPolicy", "worker")
    assert selects(
        worker_policy["spec"]["podSelector"], pod_labels(rendered.one("Deployment", "worker"))
    )
    (worker_rule,) = worker_policy["spec"]["ingress"]
    assert worker_rule["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    assert worker_rule["from"] == DEFAULTS["networkPolicy"]["metricsFrom"]
    # Every pod of the release is covered by a policy: nothing else is open.
    covered = [p["spec"]["podSelector"] for p in rendered.kinds("NetworkPolicy")]
    for workload in rendered.workloads():
        assert any(selects(sel, pod_labels(workload)) for sel in covered)


def test_gateway_clients_and_metrics_peers_are_configurable(
    render_values: RenderValuesFn,
) -> None:
    trainers = {"namespaceSelector": {"matchLabels": {"team": "rlhf"}}}
    rendered = render_values({"networkPolicy": {"gatewayClients": [trainers], "metricsFrom": []}})
    (grpc_rule,) = rendered.one("NetworkPolicy", "gateway")["spec"]["ingress"]
    check_pod = rendered.one("Pod", "check")["metadata"]["labels"]
    assert grpc_rule["from"][0] == trainers  # and the `helm test` pod:
    assert [selects(p["podSelector"], check_pod) for p in grpc_rule["from"][1:]] == [True]
    assert rendered.one("NetworkPolicy", "worker")["spec"]["ingress"] == []
    assert render_values({"networkPolicy": {"enabled": False}}).kinds("NetworkPolicy") == []


# ---- settings ----


def settings_env_names() -> set[str]:
    names = set()
    for field, info in Settings.model_fields.items():
        nested = getattr(info.annotation, "model_fields", None)
        if nested:
            names |= {f"RRM_{field}__{sub}".upper() for sub in nested}
        else:
            names.add(f"RRM_{field}".upper())
    return names


# Settings the chart already sets and the service is about to grow (see docs/deploy.md).
PENDING_SETTINGS = {"RRM_GATEWAY__TLS_CERT", "RRM_GATEWAY__TLS_KEY"}


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_every_rrm_variable_is_a_setting(render: RenderFn, name: str) -> None:
    known = settings_env_names() | PENDING_SETTINGS
    for component in ("gateway", "worker"):
        env = env_of(render(name).container("Deployment", component))
        unknown = {key for key in env if key.startswith("RRM_") and key not in known}
        assert unknown == set(), f"{component}: not in reward_service.settings: {unknown}"

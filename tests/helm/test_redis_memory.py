"""Redis memory in the chart: the queue's Redis has a `maxmemory` below its container's limit and
never evicts; the verdict cache never shares it (off, or its own Redis named by URL).

Why: with no maxmemory a full Redis is OOM-killed by the kubelet (and loses the writes since the
last fsync); with an evicting policy it would drop queued jobs, or (volatile-*) stored results,
leases and cancel marks, which have TTLs. Cached verdicts (7-day TTL) in a noeviction Redis would
fill it until new jobs are refused.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import helm_python as helm
import pytest

from tests.helm.rendering import VALUE_SETS, Rendered, env_of

UNITS = {"": 1, "k": 1000, "kb": 1024, "m": 1000**2, "mb": 1024**2, "g": 1000**3, "gb": 1024**3}
K8S_UNITS = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "K": 1000, "M": 1000**2, "G": 1000**3}


def redis_bytes(text: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([a-zA-Z]*)", text).groups()  # type: ignore[union-attr]
    return int(number) * UNITS[unit.lower()]


def k8s_bytes(text: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([a-zA-Z]*)", text).groups()  # type: ignore[union-attr]
    return int(number) * K8S_UNITS.get(unit, 1)


def conf_of(rendered: Rendered) -> dict[str, str]:
    lines = rendered.one("ConfigMap", "redis")["data"]["redis.conf"].splitlines()
    return dict(line.split(" ", 1) for line in lines if line and not line.startswith("#"))


@pytest.mark.parametrize("name", [n for n in sorted(VALUE_SETS) if n != "external-redis"])
def test_the_queue_redis_is_capped_below_its_container_and_never_evicts(
    render: Callable[[str], Rendered], name: str
) -> None:
    rendered = render(name)
    conf = conf_of(rendered)
    assert conf["maxmemory-policy"] == "noeviction"
    limit = k8s_bytes(rendered.container("StatefulSet", "redis")["resources"]["limits"]["memory"])
    maxmemory = redis_bytes(conf["maxmemory"])
    assert 0 < maxmemory <= 0.8 * limit, "room for AOF rewrites and client buffers"


def worker_env(rendered: Rendered) -> dict[str, dict[str, Any]]:
    return env_of(rendered.container("Deployment", "worker"))


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_by_default_the_verdict_cache_is_off_rather_than_in_the_queue_redis(
    render: Callable[[str], Rendered], name: str
) -> None:
    env = worker_env(render(name))
    assert env["RRM_QUEUE__VERDICT_CACHE"]["value"] == "false"
    assert "RRM_QUEUE__VERDICT_CACHE_URL" not in env


def test_an_enabled_verdict_cache_gets_its_own_redis(
    render_values: Callable[[dict[str, Any]], Rendered],
) -> None:
    cache = {"enabled": True, "host": "cache.data.svc", "existingSecret": "cache-pw", "tls": True}
    env = worker_env(render_values({"verdictCache": cache}))
    assert "RRM_QUEUE__VERDICT_CACHE" not in env  # the service default: on
    url = env["RRM_QUEUE__VERDICT_CACHE_URL"]["value"]
    assert url == "rediss://cache.data.svc:6379/0"  # the password beside it, not in it
    ref = env["RRM_QUEUE__VERDICT_CACHE_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "cache-pw", "key": "redis-password"}
    no_password = worker_env(render_values({"verdictCache": {"enabled": True, "host": "c"}}))
    assert no_password["RRM_QUEUE__VERDICT_CACHE_URL"]["value"] == "redis://c:6379/0"
    assert "RRM_QUEUE__VERDICT_CACHE_PASSWORD" not in no_password


def test_an_enabled_verdict_cache_without_a_host_is_refused(
    render_values: Callable[[dict[str, Any]], Rendered],
) -> None:
    with pytest.raises(helm.HelmError, match=re.escape("verdictCache.host is required")):
        render_values({"verdictCache": {"enabled": True}})

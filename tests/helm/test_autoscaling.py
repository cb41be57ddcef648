"""Workers follow the backlog: KEDA's and the HPA's arithmetic (tests/helm/keda.py, which cites the
KEDA and Kubernetes docs it implements) applied to the RENDERED ScaledObject."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import helm_python as helm
import pytest

from tests.helm.keda import desired_replicas, evaluate_formula
from tests.helm.rendering import Rendered

RenderValuesFn = Callable[[dict[str, Any]], Rendered]

# (lag = waiting, pending = in flight, current workers) -> workers, with the defaults:
# worker.maxInFlight 64 jobs per worker, minReplicaCount 1, maxReplicaCount 8.
DEFAULT_TABLE = [
    ("idle", 0, 0, 1, 1),
    ("4 busy, nothing waiting: no scale-in", 0, 256, 4, 4),
    ("200 waiting behind 4 busy workers", 200, 256, 4, 8),
    ("100 waiting behind 2 busy workers", 100, 128, 2, 4),
    ("winding down: 100 in flight on 4", 0, 100, 4, 2),
    ("a flood beyond maxReplicaCount", 100_000, 512, 8, 8),
    ("a flood while at the minimum", 5_000, 0, 1, 8),
]


@pytest.mark.parametrize(("case", "lag", "pending", "current", "expected"), DEFAULT_TABLE)
def test_workers_follow_the_backlog(
    render_values: RenderValuesFn, case: str, lag: int, pending: int, current: int, expected: int
) -> None:
    scaled = render_values({}).one("ScaledObject")
    assert desired_replicas(scaled, {"lag": lag, "pending": pending}, current) == expected, case


# minReplicaCount 0 and an activation threshold of 8 jobs.
ZERO = {"autoscaling": {"keda": {"minReplicaCount": 0, "activationBacklog": 8}}}
ZERO_TABLE = [
    ("nothing to do", 0, 0, 0, 0),
    ("below activation stays at zero", 5, 0, 0, 0),
    ("at activation stays at zero", 8, 0, 0, 0),
    ("above activation wakes one", 9, 0, 0, 1),
    ("in flight only, above activation: kept", 0, 60, 1, 1),
    ("a flood from zero", 1_000_000, 0, 0, 8),
]


@pytest.mark.parametrize(("case", "lag", "pending", "current", "expected"), ZERO_TABLE)
def test_activation_decides_zero_and_one(
    render_values: RenderValuesFn, case: str, lag: int, pending: int, current: int, expected: int
) -> None:
    scaled = render_values(ZERO).one("ScaledObject")
    assert desired_replicas(scaled, {"lag": lag, "pending": pending}, current) == expected, case


def test_jobs_per_worker_is_configurable(render_values: RenderValuesFn) -> None:
    scaled = render_values(
        {"autoscaling": {"keda": {"targetJobsPerWorker": 16, "maxReplicaCount": 20}}}
    ).one("ScaledObject")
    assert desired_replicas(scaled, {"lag": 200, "pending": 64}, 4) == 17  # ceil(264 / 16)
    assert desired_replicas(scaled, {"lag": 0, "pending": 0}, 4) == 1


def test_an_unreadable_backlog_holds_the_workers(render_values: RenderValuesFn) -> None:
    scaled = render_values({}).one("ScaledObject")
    fallback = scaled["spec"]["fallback"]
    assert fallback["behavior"] == "currentReplicasIfHigher"
    assert desired_replicas(scaled, None, 5) == 5  # not dropped to 1 on no data
    assert desired_replicas(scaled, None, 1) == fallback["replicas"]
    off = render_values({"autoscaling": {"keda": {"fallback": {"enabled": False}}}})
    assert "fallback" not in off.one("ScaledObject")["spec"]


def test_composite_metric_is_the_whole_backlog(render_values: RenderValuesFn) -> None:
    """The formula reads exactly the two triggers, sums them, and its target is an integer
    (KEDA's fallback refuses a non-integer scalingModifiers.target)."""
    spec = render_values({}).one("ScaledObject")["spec"]
    modifiers = spec["advanced"]["scalingModifiers"]
    names = {t["name"] for t in spec["triggers"]}
    assert names == {"lag", "pending"}
    assert evaluate_formula(modifiers["formula"], {"lag": 3, "pending": 4}) == 7
    assert int(modifiers["target"]) == 64
    assert spec["initialCooldownPeriod"] >= 15 * 60  # the first model load


def test_fallback_beyond_the_maximum_fails(render_values: RenderValuesFn) -> None:
    with pytest.raises(helm.HelmError, match=r"fallback\.replicas"):
        render_values({"autoscaling": {"keda": {"fallback": {"replicas": 9}}}})

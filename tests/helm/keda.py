"""KEDA's and the HPA's replica arithmetic, applied to a rendered ScaledObject (no cluster here).

Implemented as documented and as the sources do it (KEDA commit 8b4f083c, the CRDs' version):
- The HPA, https://kubernetes.io/docs/tasks/run-application/horizontal-pod-autoscale/#algorithm-details:
  desiredReplicas = ceil(currentReplicas * currentMetricValue / desiredMetricValue), unchanged
  within a tolerance of 0.1; for an external metric with an AverageValue target (KEDA's default)
  currentMetricValue is the metric over currentReplicas, so desired = ceil(metric / target)
  (kubernetes pkg/controller/podautoscaler/replica_calculator.go GetExternalPerPodMetricReplicas).
  With several metrics it takes the largest proposal; then clamps to [minReplicas, maxReplicas].
- KEDA scalingModifiers, https://keda.sh/docs/2.17/concepts/scaling-deployments/#scaling-modifiers
  and https://keda.sh/docs/2.17/reference/scaledobject-spec/#scalingmodifiers: the formula over the
  triggers' metrics (by trigger name) gives ONE composite metric, the only one the HPA sees, with
  `target` and `metricType` (default AverageValue) (pkg/scaling/modifiers/formula.go,
  controllers/keda/hpa.go). Activity is then `composite > activationTarget`
  (pkg/scaling/scale_handler.go); without modifiers a trigger is active above its own activation
  value (redis-streams: `activationLagCount`, pkg/scalers/redis_streams_scaler.go).
- Activation decides 0 <-> 1: KEDA scales an inactive target to minReplicaCount (0 allowed) after
  cooldownPeriod, and an active one at 0 up to max(1, minReplicaCount); the HPA (minReplicas at
  least 1) does the rest (https://keda.sh/docs/2.17/concepts/scaling-deployments/#activating-and-scaling-thresholds).
- Fallback, https://keda.sh/docs/2.17/reference/scaledobject-spec/#fallback: after
  failureThreshold failed polls the metric becomes replicas * target, where replicas is
  fallback.replicas (static) or max(current, fallback.replicas) (currentReplicasIfHigher), etc.
  (pkg/fallback/fallback.go doFallback); with modifiers the target is scalingModifiers.target,
  which must then parse as an integer (HasValidFallback).
Time (stabilization windows, scale-down policies, cooldown timers) is not modelled: the result is
where the replica count heads, not how fast.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Mapping
from typing import Any

TOLERANCE = 0.1
_OPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}


def evaluate_formula(formula: str, metrics: Mapping[str, float]) -> float:
    """The arithmetic subset of KEDA's expr-lang formulas: names, numbers, + - * / and brackets."""

    def walk(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return walk(node.body)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return float(_OPS[type(node.op)](walk(node.left), walk(node.right)))
        if isinstance(node, ast.Name):
            return float(metrics[node.id])
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return float(node.value)
        raise ValueError(f"formula outside the modelled subset: {ast.dump(node)}")

    return walk(ast.parse(formula, mode="eval"))


def _hpa_external_average(current: int, metric: float, target: float) -> int:
    ratio = metric / (target * current)
    if abs(1.0 - ratio) <= TOLERANCE:
        return current
    return math.ceil(metric / target)


def _trigger_target(trigger: dict[str, Any]) -> tuple[float, float]:
    """(AverageValue target, activation) of one redis-streams trigger."""
    meta = trigger["metadata"]
    if "lagCount" in meta:
        return float(meta["lagCount"]), float(meta.get("activationLagCount", 0))
    return float(meta.get("pendingEntriesCount", 5)), float(meta.get("activationLagCount", 0))


def desired_replicas(
    scaled_object: dict[str, Any], metrics: Mapping[str, float] | None, current: int
) -> int:
    """Where KEDA + HPA take the workload from `current` replicas given each trigger's metric value
    (by trigger name); `metrics=None` means every scaler fails (fallback, once past threshold)."""
    spec = scaled_object["spec"]
    lo, hi = spec.get("minReplicaCount", 0), spec.get("maxReplicaCount", 100)
    modifiers = spec.get("advanced", {}).get("scalingModifiers")
    triggers = {t["name"]: t for t in spec["triggers"]}

    if metrics is None:
        fallback = spec.get("fallback")
        if fallback is None:
            return current  # no fallback: KEDA reports an error and the HPA keeps the count
        behavior = fallback.get("behavior", "static")
        replicas = {
            "static": fallback["replicas"],
            "currentReplicas": current,
            "currentReplicasIfHigher": max(current, fallback["replicas"]),
            "currentReplicasIfLower": min(current, fallback["replicas"]),
        }[behavior]
        if modifiers:
            int(modifiers["target"])  # HasValidFallback: ParseInt, else no fallback at all
        return min(max(replicas, lo, 1), hi)  # the HPA turns replicas * target back into replicas

    if modifiers:
        composite = evaluate_formula(modifiers["formula"], metrics)
        active = composite > float(modifiers.get("activationTarget") or 0)
        assert modifiers.get("metricType", "AverageValue") == "AverageValue"
        proposals = [(composite, float(modifiers["target"]))]
    else:
        targets = {name: _trigger_target(t) for name, t in triggers.items()}
        active = any(metrics[name] > targets[name][1] for name in triggers)
        proposals = [(metrics[name], targets[name][0]) for name in triggers]

    if not active and lo == 0:
        return 0  # KEDA scales to zero (after cooldownPeriod)
    running = max(current, 1, lo)  # KEDA wakes a workload at 0 before the HPA acts
    want = max(_hpa_external_average(running, metric, target) for metric, target in proposals)
    return max(min(want, hi), max(lo, 1))

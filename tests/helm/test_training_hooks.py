"""Training runs once per release: the DPO Job and the PPO RayJob are post-install hooks, so a
`helm upgrade` of a release whose DPO Job finished (and was deleted by its TTL) trains nothing
again, and an upgrade during a run does not delete the running Job either."""

from __future__ import annotations

import copy
from typing import Any

from tests.helm.rendering import NAMESPACE, RELEASE, objects_of
from tests.launch.configs import BASE

TRAINING_KINDS = ("Job", "RayJob")


def training_values() -> dict[str, Any]:
    """A valid training configuration (the launch tests' base), both jobs switched on."""
    training = {k: copy.deepcopy(v) for k, v in BASE.items() if k != "namespace"}
    training["ppo"]["enabled"] = True
    training["dpo"]["enabled"] = True
    return {"training": training}


def render(chart: Any, *, upgrade: bool) -> list[dict[str, Any]]:
    out = chart.render(
        training_values(),
        name=RELEASE,
        namespace=NAMESPACE,
        is_install=not upgrade,
        is_upgrade=upgrade,
        revision=2 if upgrade else 1,
    )
    return objects_of(out)


def test_install_creates_the_training_objects_as_post_install_hooks(chart: Any) -> None:
    training = [o for o in render(chart, upgrade=False) if o["kind"] in TRAINING_KINDS]
    assert sorted(o["kind"] for o in training) == ["Job", "RayJob"]
    for obj in training:
        annotations = obj["metadata"]["annotations"]
        events = set(annotations["helm.sh/hook"].split(","))
        assert events == {"post-install"}, "never run by upgrade or rollback"
        policies = set(annotations["helm.sh/hook-delete-policy"].split(","))
        # A re-install replaces a finished run; a succeeded run keeps its status and logs until
        # its TTL (hook-succeeded would delete them at once).
        assert policies == {"before-hook-creation"}


def test_an_upgrade_creates_no_training_object(chart: Any) -> None:
    installed = render(chart, upgrade=False)
    upgraded = render(chart, upgrade=True)
    assert [o for o in upgraded if o["kind"] in TRAINING_KINDS] == []

    # Everything else is the same release: only the training objects dropped out.
    def key(o: dict[str, Any]) -> tuple[str, str]:
        return (o["kind"], o["metadata"]["name"])

    serving = {key(o) for o in installed if o["kind"] not in TRAINING_KINDS}
    assert {key(o) for o in upgraded} == serving

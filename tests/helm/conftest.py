"""Render the chart offline (helm-python-sdk embeds Helm's Go SDK: no helm binary, no cluster).

`render(name)` renders one of VALUE_SETS once per session; `render_values(values)` renders any
other values (and raises HelmRenderError / HelmValuesError like `helm template` would fail).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import helm_python as helm
import pytest

from tests.helm.rendering import CHART, NAMESPACE, RELEASE, VALUE_SETS, Rendered, objects_of


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

"""values.yaml and values.schema.json tell the same story: same keys, same types, same words;
every value is documented with a `# --` comment (helm-docs); wrong values are refused."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import helm_python as helm
import jsonschema
import pytest
import yaml

from tests.helm.rendering import CHART, Rendered

VALUES_TEXT = (CHART / "values.yaml").read_text()
VALUES = yaml.safe_load(VALUES_TEXT)
SCHEMA = json.loads((CHART / "values.schema.json").read_text())
JSON_TYPES = {
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    list: "array",
    dict: "object",
}


def doc_comment(lines: list[str], key_line: int) -> str | None:
    """The `# --` comment block right above a key (helm-docs continues it on later `#` lines)."""
    block: list[str] = []
    i = key_line - 1
    while i >= 0 and lines[i].strip().startswith("#"):
        block.insert(0, lines[i].strip())
        i -= 1
    for j, line in enumerate(block):
        if line.startswith("# --"):
            rest = [part.lstrip("#").strip() for part in block[j + 1 :]]
            return " ".join([line[4:].strip(), *rest])
    return None


def documented_keys() -> Iterator[tuple[str, str | None, bool]]:
    """(dotted path, its `# --` text, whether the value is a mapping) for every mapping key."""
    lines = VALUES_TEXT.splitlines()

    def walk(node: yaml.Node, path: str) -> Iterator[tuple[str, str | None, bool]]:
        if not isinstance(node, yaml.MappingNode):
            return
        for key, value in node.value:
            dotted = f"{path}.{key.value}" if path else key.value
            is_map = isinstance(value, yaml.MappingNode) and bool(value.value)
            yield dotted, doc_comment(lines, key.start_mark.line), is_map
            yield from walk(value, dotted)

    yield from walk(yaml.compose(VALUES_TEXT), "")


def schema_at(path: str) -> dict[str, Any] | None:
    node: dict[str, Any] = SCHEMA
    for part in path.split("."):
        props = node.get("properties")
        if props is None or part not in props:
            return None
        node = props[part]
    return node


def test_schema_is_valid_and_accepts_the_defaults() -> None:
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    jsonschema.Draft7Validator(SCHEMA).validate(VALUES)


def test_every_value_has_a_doc_comment() -> None:
    """A leaf is documented on its own key or on the nearest ancestor that carries `# --`."""
    docs = {path: text for path, text, _ in documented_keys()}
    missing = []
    for path, text, is_map in documented_keys():
        if is_map or text:
            continue
        parts = path.split(".")
        ancestors = [".".join(parts[:i]) for i in range(len(parts) - 1, 0, -1)]
        if not any(docs.get(a) for a in ancestors):
            missing.append(path)
    assert missing == []


def test_schema_and_values_have_the_same_keys_types_and_descriptions() -> None:
    problems = []
    described = set()
    for path, text, _ in documented_keys():
        node = schema_at(path)
        parent = path.rpartition(".")[0]
        if node is None:
            parent_node = schema_at(parent) if parent else SCHEMA
            if parent_node is not None and "properties" in parent_node:
                problems.append(f"{path}: in values.yaml, not in the schema")
            continue  # inside a free-form object (resources, selectors, ...)
        value = VALUES
        for part in path.split("."):
            value = value[part]
        types = node["type"] if isinstance(node["type"], list) else [node["type"]]
        if JSON_TYPES[type(value)] not in types:
            problems.append(f"{path}: value is {JSON_TYPES[type(value)]}, schema says {types}")
        if text is not None:
            described.add(path)
            if node.get("description") != text:
                problems.append(f"{path}: schema description differs from the # -- comment")
    assert problems == []

    def schema_paths(node: dict[str, Any], path: str) -> Iterator[str]:
        for key, sub in node.get("properties", {}).items():
            dotted = f"{path}.{key}" if path else key
            yield dotted
            yield from schema_paths(sub, dotted)

    value_paths = {path for path, _, _ in documented_keys()}
    assert set(schema_paths(SCHEMA, "")) - value_paths == set(), "schema keys not in values.yaml"


def test_structured_sections_reject_unknown_keys() -> None:
    def closed(node: dict[str, Any], path: str) -> Iterator[tuple[str, bool]]:
        if "properties" in node:
            yield path, node.get("additionalProperties") is False
            for key, sub in node["properties"].items():
                yield from closed(sub, f"{path}.{key}" if path else key)

    assert [path for path, ok in closed(SCHEMA, "") if not ok] == []


WRONG = [
    ({"gateway": {"replicaCount": "three"}}, "replicaCount"),
    ({"engine": {"tensorParallelSize": 0}}, "tensorParallelSize"),
    ({"engine": {"gpuMemoryUtilization": 1.5}}, "gpuMemoryUtilization"),
    ({"worker": {"modelCache": {"type": "hostPath"}}}, "type"),
    ({"autoscaling": {"keda": {"enabled": "yes"}}}, "enabled"),
    ({"security": {"runAsUser": 0}}, "runAsUser"),
    ({"gateway": {"resources": {"limits": None}}}, "limits"),  # null deletes a default
    ({"gateway": {"replicas": 3}}, "replicas"),  # a typo of replicaCount
]


@pytest.mark.parametrize(("values", "field"), WRONG)
def test_wrong_values_are_rejected(
    chart: Any,
    render_values: Callable[[dict[str, Any]], Rendered],
    values: dict[str, Any],
    field: str,
) -> None:
    merged = chart.merge_values(values)
    errors = list(jsonschema.Draft7Validator(SCHEMA).iter_errors(merged))
    assert errors, "the schema accepted a wrong value"
    with pytest.raises(helm.HelmValuesError, match=field):
        chart.validate_schema(values)
    with pytest.raises(helm.HelmError):
        render_values(values)

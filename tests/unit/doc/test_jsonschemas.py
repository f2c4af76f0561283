"""rally-openstack's config-schema conventions, applied to rally_lm's plugins.

Our equivalent of tests/unit/doc/test_jsonschemas.py of openstack/rally and
openstack/rally-openstack: only the keys Rally's docs generator can render
(no ``minLength``, say: a ``pattern`` instead), ``additionalProperties`` on
every object, and - stricter than theirs - a description for every option,
because that is what `rally plugin show` prints.
"""

import pytest
from rally import plugins
from rally.common.plugin import plugin

OBJECT_KEYS = {"$schema", "type", "description", "required", "properties",
               "patternProperties", "minProperties", "maxProperties",
               "additionalProperties", "oneOf", "anyOf"}
ARRAY_KEYS = {"$schema", "type", "description", "items", "uniqueItems", "minItems",
              "maxItems", "additionalItems"}
NUMBER_KEYS = {"$schema", "type", "description", "minimum", "maximum", "exclusiveMinimum"}
STRING_KEYS = {"$schema", "type", "description", "pattern"}


def problems_of(name, schema):
    problems = []
    kind = schema.get("type")
    if "enum" in schema and kind is None:
        return problems
    cases = "anyOf" if "anyOf" in schema else "oneOf" if "oneOf" in schema else None
    if cases and kind is None:
        # As Rally's checker: each case described, and valid merged into its parent.
        for number, case in enumerate(schema[cases]):
            if "description" not in case and "$ref" not in case:
                problems.append(f"{name}: case {number} of {cases} has no description")
            merged = {k: v for k, v in schema.items() if k != cases}
            problems += problems_of(f"{name}[{cases} {number}]", {**merged, **case})
        return problems
    if kind == "object":
        if set(schema) - OBJECT_KEYS:
            problems.append(f"{name}: unexpected keys {sorted(set(schema) - OBJECT_KEYS)}")
        if "additionalProperties" not in schema:
            problems.append(f"{name}: objects must say additionalProperties")
        for prop, sub in schema.get("properties", {}).items():
            if not sub.get("description"):
                problems.append(f"{name}.{prop}: no description")
            problems += problems_of(f"{name}.{prop}", sub)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            problems += problems_of(f"{name}.*", extra)
    elif kind == "array":
        if set(schema) - ARRAY_KEYS:
            problems.append(f"{name}: unexpected keys {sorted(set(schema) - ARRAY_KEYS)}")
        if "items" not in schema:
            problems.append(f"{name}: arrays must describe their items")
    elif kind == "string":
        if set(schema) - STRING_KEYS:
            problems.append(f"{name}: unexpected keys {sorted(set(schema) - STRING_KEYS)}")
    elif kind in ("number", "integer"):
        if set(schema) - NUMBER_KEYS:
            problems.append(f"{name}: unexpected keys {sorted(set(schema) - NUMBER_KEYS)}")
    elif kind in ("boolean", "null"):
        if set(schema) - {"type", "description"}:
            problems.append(f"{name}: unexpected keys")
    elif schema == {}:
        problems.append(f"{name}: an empty schema accepts anything")
    elif kind is None and "$ref" not in schema:
        problems.append(f"{name}: no type")
    return problems


def configured_plugins():
    plugins.load()
    return [p for p in plugin.Plugin.get_all()
            if p.__module__.startswith("rally_lm.") and hasattr(p, "CONFIG_SCHEMA")]


@pytest.mark.parametrize("cls", configured_plugins(), ids=lambda c: c.get_name())
def test_config_schema_follows_rallys_conventions(cls):
    assert problems_of(cls.get_name(), cls.CONFIG_SCHEMA) == []


def test_the_checker_finds_what_rally_would_refuse():
    bad = {"type": "object", "additionalProperties": False, "properties": {
        "name": {"type": "string", "minLength": 1, "description": "x"},
        "size": {"type": "integer"},
        "loose": {"type": "object", "description": "y"}}}
    bad["properties"]["either"] = {"description": "z", "anyOf": [
        {"type": "number", "description": "one"}, {"type": "array", "minLength": 1}]}
    found = problems_of("demo", bad)
    assert any("demo.either: case 1 of anyOf has no description" in p for p in found)
    assert any("demo.either[anyOf 1]: arrays must describe their items" in p for p in found)
    assert any("minLength" in p for p in found)
    assert any("demo.size: no description" in p for p in found)
    assert any("demo.loose: objects must say additionalProperties" in p for p in found)

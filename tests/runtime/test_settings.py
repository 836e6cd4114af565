"""Settings: one default feeds the dataclass, the JSON Schema, the docs table and a CLI option."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

import jsonschema
import pytest

from powerplane.exporters.runtime.config import (
    ConfigError,
    ConfigKind,
    defaults,
    from_document,
    option_defaults,
    setting,
    settings_schema,
    settings_table,
)


@dataclass(frozen=True)
class Probe:
    address: str = setting(schema={"minLength": 1}, doc="Host the probe targets.")
    module: str = setting("", doc="Module name | none.")


@dataclass(frozen=True)
class Widget:
    name: str = setting(doc="Its name.")
    count: int = setting(3, schema={"minimum": 0}, doc="How many.")
    ratio: float = setting(0.5)
    enabled: bool = setting(True)
    tags: tuple[str, ...] = setting(("a", "b"), schema={"type": "array", "items": {"type": "string"}})
    extra: Mapping[str, str] = setting({}, schema={"type": "object"})
    probe: Probe | None = setting(None, of=Probe, doc="How to reach it.")
    #: Not a setting: the builder derives it.
    derived: str = ""


KIND = ConfigKind("widget", settings_schema(Widget), lambda doc: from_document(Widget, doc, derived="x"))


def test_the_schema_carries_each_default_and_type() -> None:
    schema = settings_schema(Widget)
    props = schema["properties"]
    assert schema["required"] == ["name"] and schema["additionalProperties"] is False
    assert props["name"] == {"type": "string", "description": "Its name."}
    assert props["count"] == {"type": "integer", "minimum": 0, "description": "How many.", "default": 3}
    assert props["ratio"]["type"] == "number" and props["enabled"]["type"] == "boolean"
    assert props["tags"]["default"] == ["a", "b"]
    assert props["probe"]["required"] == ["address"] and props["probe"]["default"] is None
    assert "derived" not in props
    jsonschema.Draft202012Validator.check_schema(schema)
    # Every default validates against its own property's schema (None: "not set").
    for prop in props.values():
        if prop.get("default") is not None:
            jsonschema.validate(prop["default"], prop)


def test_the_dataclass_defaults_are_the_schema_defaults() -> None:
    props = settings_schema(Widget)["properties"]
    for name, value in defaults(Widget).items():
        expected = list(value) if isinstance(value, tuple) else value
        assert props[name]["default"] == expected, name
    assert set(defaults(Widget)) == {f.name for f in fields(Widget)} - {"name", "derived"}


def test_a_document_fills_only_what_it_sets() -> None:
    w = KIND.load_text("name: w1\ntags: [x]\nprobe: {address: h1}\n")
    assert w == Widget("w1", tags=("x",), probe=Probe("h1"), derived="x")
    assert w.count == 3 and w.extra == {}
    # A mutable default is not shared between instances.
    assert Widget("a").extra is not Widget("b").extra


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("count: 1", "(top level): 'name' is a required property"),
        ("name: w\ncount: -1", "count: -1 is less than the minimum of 0"),
        ("name: w\nnope: 1", "unknown key(s) 'nope'"),
        ("name: w\nprobe: {module: m}", "probe: 'address' is a required property"),
        ("name: w\nprobe: {address: ''}", "probe.address"),
        ("name: w\nenabled: maybe", "enabled: 'maybe' is not of type 'boolean'"),
    ],
)
def test_bad_documents_name_the_field(text: str, where: str) -> None:
    with pytest.raises(ConfigError) as err:
        KIND.load_text(text, "w.yaml")
    assert any(where in e for e in err.value.errors), err.value.errors


def test_the_docs_table_shows_defaults_and_nested_settings() -> None:
    table = settings_table(Widget).splitlines()
    assert table[:2] == ["| setting | default | meaning |", "|---|---|---|"]
    assert "| `name` | required | Its name. |" in table
    assert "| `count` | `3` | How many. |" in table
    assert "| `tags` | `[a, b]` |  |" in table
    assert "| `probe` | `null` | How to reach it. |" in table
    assert '| `probe.module` | `""` | Module name \\| none. |' in table
    assert not any("derived" in row for row in table)


def test_option_defaults_come_from_the_setting() -> None:
    assert option_defaults(Widget, "count") == {"default": 3, "show_default": True, "help": "How many."}
    with pytest.raises(KeyError, match="no setting 'derived'"):
        option_defaults(Widget, "derived")

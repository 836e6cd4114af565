"""Configuration: YAML validated by a JSON Schema, every error reported at once, secrets redacted.

A config kind is a JSON Schema plus a builder that turns the validated document into frozen
dataclasses.  Validation reports every schema error with its path (``modules.idrac.timeout:
-1 is less than the minimum of 0.1``) before the builder runs; builders raise ``ConfigError``
with all their semantic errors too.  Unknown keys are rejected by ``additionalProperties:
false`` in every object schema.

Secrets are never literal values in a config file: a secret field is ``{env: NAME}`` or
``{file: /path}`` and becomes a ``Secret`` whose repr and str are redacted.

Defaults are said once.  A field declared with ``setting(default, schema=..., doc=...)`` in a
frozen dataclass is the one place its default is written: ``settings_schema`` makes the JSON
Schema from the dataclass (with that ``default`` and ``doc`` as ``description``),
``from_document`` fills what the document leaves out from the same fields, ``settings_table``
writes the docs' table and ``option_defaults`` gives a click option its default and help.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import dataclasses
import os
from collections.abc import Callable, Hashable, Iterator, Mapping
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import jsonschema
import yaml

from .logs import REDACTED, register_secret

T = TypeVar("T")


class ConfigError(Exception):
    """One or more configuration errors, each naming the file and the field."""

    def __init__(self, errors: list[str], source: str = "") -> None:
        self.errors = errors
        self.source = source
        prefix = f"{source}: " if source else ""
        super().__init__("\n".join(prefix + e for e in errors))


SECRET_SCHEMA: dict[str, Any] = {
    "description": "a secret, read from an environment variable or a file (never written inline)",
    "type": "object",
    "writeOnly": True,
    "properties": {"env": {"type": "string", "minLength": 1}, "file": {"type": "string", "minLength": 1}},
    "additionalProperties": False,
    "minProperties": 1,
    "maxProperties": 1,
}


@dataclass(frozen=True)
class Secret:
    """A credential.  ``str()``/``repr()`` never show the value; ``reveal()`` does."""

    source: str
    _value: str = field(repr=False, compare=False)

    def reveal(self) -> str:
        return self._value

    def __str__(self) -> str:
        return REDACTED

    def __repr__(self) -> str:
        return f"Secret({REDACTED}, from {self.source})"


#: While set (``collecting_unresolved``), secrets that cannot be read are listed here instead of
#: failing the load, so that ``check-config`` can report them apart from the config's errors.
_UNRESOLVED: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("unresolved", default=None)


@contextlib.contextmanager
def collecting_unresolved() -> Iterator[list[str]]:
    """Within the block, an unreadable secret is recorded (and replaced by an empty one)."""
    found: list[str] = []
    token = _UNRESOLVED.set(found)
    try:
        yield found
    finally:
        _UNRESOLVED.reset(token)


def resolve_secret(spec: Mapping[str, str], where: str) -> Secret:
    """Read a secret given as ``{env: NAME}`` or ``{file: PATH}``; errors name ``where``."""
    try:
        return _read_secret(spec, where)
    except ConfigError as exc:
        unresolved = _UNRESOLVED.get()
        if unresolved is None:
            raise
        unresolved.extend(exc.errors)
        return Secret(f"unresolved:{where}", "")


def _read_secret(spec: Mapping[str, str], where: str) -> Secret:
    if "env" in spec:
        name = spec["env"]
        value = os.environ.get(name)
        if value is None:
            raise ConfigError([f"{where}: environment variable {name} is not set"])
        source = f"env:{name}"
    elif "file" in spec:
        path = Path(spec["file"])
        try:
            value = path.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise ConfigError([f"{where}: cannot read secret file {path}: {exc.strerror}"]) from None
        source = f"file:{path}"
    else:  # pragma: no cover - the schema forbids it
        raise ConfigError([f"{where}: a secret needs 'env' or 'file'"])
    register_secret(value)
    return Secret(source, value)


def _path_of(error: jsonschema.ValidationError) -> str:
    parts = [str(p) for p in error.absolute_path]
    return ".".join(parts) if parts else "(top level)"


def _describe(error: jsonschema.ValidationError) -> str:
    # A secret written inline is the most likely mistake; say what to do instead.
    schema = error.schema if isinstance(error.schema, Mapping) else {}
    if str(schema.get("description", "")).startswith("a secret") and not isinstance(error.instance, dict):
        return "secrets cannot be written inline; use {env: NAME} or {file: PATH}"
    if error.validator == "additionalProperties":
        instance = error.instance if isinstance(error.instance, Mapping) else {}
        extra = sorted(set(instance) - set(schema.get("properties", {})))
        return f"unknown key(s) {', '.join(map(repr, extra))}"
    # Never echo a value that might be a credential: schemas mark such fields writeOnly, and
    # names that usually hold one are treated alike.
    sensitive = ("password", "token", "secret", "community", "passphrase")
    if schema.get("writeOnly") or any(w in _path_of(error).lower() for w in sensitive):
        return f"invalid value (fails '{error.validator}')"
    return error.message


def validate(document: Any, schema: Mapping[str, Any]) -> list[str]:
    """Every schema error in ``document`` as ``path: message``, sorted by path."""
    validator = jsonschema.Draft202012Validator(schema)
    errors = []
    for error in validator.iter_errors(document):
        # oneOf/anyOf errors are clearer through their best sub-error.
        best = jsonschema.exceptions.best_match([error]) if error.context else error
        errors.append(f"{_path_of(best)}: {_describe(best)}")
    return sorted(set(errors))


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (YAML says keys are unique;
    PyYAML would silently keep the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _value in node.value:
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, Hashable) and key in seen:
                mark = key_node.start_mark
                raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str, source: str) -> Any:
    """The YAML document in ``text``; an empty file and a key given twice are errors."""
    if not text.strip() or all(
        line.lstrip().startswith("#") or not line.strip() for line in text.splitlines()
    ):
        raise ConfigError(["the file is empty (nothing but whitespace and comments)"], source)
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{where}invalid YAML: {problem}"], source) from None


@dataclass(frozen=True)
class ConfigKind(Generic[T]):
    """A kind of configuration file: its schema and the builder of its frozen dataclasses."""

    name: str
    schema: Mapping[str, Any]
    build: Callable[[Any], T]

    def load_text(self, text: str, source: str = "<config>") -> T:
        document = parse_yaml(text, source)
        errors = validate(document, self.schema)
        if errors:
            raise ConfigError(errors, source)
        try:
            return self.build(document)
        except ConfigError as exc:
            raise ConfigError(exc.errors, source) from None

    def load(self, path: str | os.PathLike[str]) -> T:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError([f"cannot read: {exc.strerror}"], str(path)) from None
        return self.load_text(text, str(path))


def redacted(value: Any) -> Any:
    """A plain, YAML-dumpable view of a config object with every secret redacted."""
    if isinstance(value, Secret):
        return f"{REDACTED} ({value.source})"
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: redacted(getattr(value, f.name)) for f in fields(value) if not f.name.startswith("_")}
    if isinstance(value, Mapping):
        return {str(k): redacted(v) for k, v in value.items()}
    if isinstance(value, list | tuple | frozenset | set):
        return [redacted(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    # Anything else a builder made (a Path, an IPv4Network, a time) is shown as its text.
    return str(value)


def strict_object(properties: Mapping[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    """JSON Schema for an object with exactly these ``properties`` (unknown keys rejected)."""
    schema: dict[str, Any] = {"type": "object", "properties": dict(properties), "additionalProperties": False}
    if required:
        schema["required"] = list(required)
    return schema


# --- settings: a default written once feeds the dataclass, the schema and the docs -------------

_SETTING = "powerplane.setting"


@dataclass(frozen=True)
class _Meta:
    schema: Mapping[str, Any]
    doc: str
    of: type | None


def setting(
    default: Any = MISSING,
    *,
    schema: Mapping[str, Any] | None = None,
    doc: str = "",
    of: type | None = None,
) -> Any:
    """A dataclass field that a config document sets; without ``default`` it is required.

    ``schema`` constrains the value (its JSON type is inferred from a ``bool``/``int``/``float``/
    ``str`` annotation when the schema names none); ``of`` is a dataclass of settings the value is built into
    (a nested object, its schema from that class).  Mutable defaults are copied per instance.
    """
    meta = {_SETTING: _Meta(dict(schema or {}), doc, of)}
    if default is MISSING:
        return field(metadata=meta)
    if isinstance(default, dict | list | set):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
    return field(default=default, metadata=meta)


def _settings(cls: type) -> list[tuple[dataclasses.Field[Any], _Meta]]:
    return [(f, f.metadata[_SETTING]) for f in fields(cls) if _SETTING in f.metadata]


def default_of(f: dataclasses.Field[Any]) -> Any:
    """A field's default (``MISSING`` for a required one)."""
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return MISSING


def defaults(cls: type) -> dict[str, Any]:
    """Every setting of ``cls`` that has a default, by name."""
    return {f.name: d for f, _m in _settings(cls) if (d := default_of(f)) is not MISSING}


def _json(value: Any) -> Any:
    if isinstance(value, tuple | list | frozenset | set):
        return [_json(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, Path):
        return str(value)
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _json(getattr(value, f.name)) for f, _m in _settings(type(value))}
    return value


_JSON_TYPES = {"bool": "boolean", "int": "integer", "float": "number", "str": "string"}


def _inferred_type(f: dataclasses.Field[Any]) -> dict[str, Any]:
    # Annotations are strings under `from __future__ import annotations`; only the plain scalar
    # types are inferred, anything else says its schema.
    name = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
    return {"type": _JSON_TYPES[name]} if name in _JSON_TYPES else {}


def _property(f: dataclasses.Field[Any], meta: _Meta) -> dict[str, Any]:
    prop: dict[str, Any] = settings_schema(meta.of) if meta.of is not None else {}
    prop.update(meta.schema)
    default = default_of(f)
    if not {"type", "enum", "const", "oneOf", "anyOf", "$ref"} & prop.keys():
        prop.update(_inferred_type(f))
    if meta.doc:
        prop["description"] = meta.doc
    if default is not MISSING:
        prop["default"] = _json(default)
    return prop


def settings_schema(cls: type, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The strict object schema of the settings of ``cls`` (plus ``extra`` properties)."""
    properties = {f.name: _property(f, meta) for f, meta in _settings(cls)}
    required = tuple(f.name for f, _m in _settings(cls) if default_of(f) is MISSING)
    return strict_object({**properties, **(extra or {})}, required)


def _value(meta: _Meta, value: Any) -> Any:
    if meta.of is not None and isinstance(value, Mapping):
        return from_document(meta.of, value)
    # Frozen dataclasses hold tuples, not the lists YAML gives.
    return tuple(value) if isinstance(value, list) else value


def from_document(cls: type[T], doc: Mapping[str, Any] | None, **derived: Any) -> T:
    """``cls`` from a validated document: the settings it sets, their defaults for the rest.

    ``derived`` gives the fields that do not come from the document as they are (or that need a
    conversion the builder does itself).
    """
    doc = doc or {}
    given = {f.name: _value(meta, doc[f.name]) for f, meta in _settings(cls) if f.name in doc}
    return cls(**{**given, **derived})


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _shown(value: Any) -> str:
    if value is MISSING:
        return "required"
    if value is None:
        return "`null`"
    if isinstance(value, str):
        return f"`{_cell(value)}`" if value else '`""`'
    # safe_dump ends a lone scalar with a document end marker.
    shown = yaml.safe_dump(_json(value), default_flow_style=True, width=10_000).strip().removesuffix("\n...")
    return f"`{_cell(shown)}`"


def _rows(cls: type, prefix: str) -> list[str]:
    rows = []
    for f, meta in _settings(cls):
        rows.append(f"| `{prefix}{f.name}` | {_shown(default_of(f))} | {_cell(meta.doc)} |")
        if meta.of is not None:
            rows += _rows(meta.of, f"{prefix}{f.name}.")
    return rows


def settings_table(cls: type) -> str:
    """A Markdown table of the settings of ``cls``: name, default, meaning (nested ones dotted)."""
    return "\n".join(["| setting | default | meaning |", "|---|---|---|", *_rows(cls, "")]) + "\n"


def option_defaults(cls: type, name: str) -> dict[str, Any]:
    """``default``, ``show_default`` and ``help`` for the click option of the setting ``name``."""
    for f, meta in _settings(cls):
        if f.name == name:
            default = default_of(f)
            return {"default": default, "show_default": True, "help": meta.doc}
    raise KeyError(f"{cls.__name__} has no setting {name!r}")

"""Configuration: YAML validated by a JSON Schema, every error reported at once, secrets redacted.

A config kind is a JSON Schema plus a builder that turns the validated document into frozen
dataclasses.  Validation reports every schema error with its path (``modules.idrac.timeout:
-1 is less than the minimum of 0.1``) before the builder runs; builders raise ``ConfigError``
with all their semantic errors too.  Unknown keys are rejected by ``additionalProperties:
false`` in every object schema.

Secrets are never literal values in a config file: a secret field is ``{env: NAME}`` or
``{file: /path}`` and becomes a ``Secret`` whose repr and str are redacted.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Callable, Hashable, Iterator, Mapping
from dataclasses import dataclass, field, fields, is_dataclass
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

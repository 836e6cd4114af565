"""Structured logging and failure de-duplication shared by every powerplane process.

Log lines are logfmt (default) or JSON, like the Prometheus exporters' ``--log.format``.
Secrets that were revealed to the process are scrubbed from every line as a last line of
defence; the first line is never to log them at all.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
import urllib.parse
from typing import Any

_SECRET_VALUES: set[str] = set()
_SECRET_LOCK = threading.Lock()
REDACTED = "<redacted>"


def register_secret(value: str) -> None:
    """Remember a secret value so that it is scrubbed from any log line that contains it.

    A line holds a value in whatever form its format escaped it to, so every form a log line can
    take is remembered: as is, JSON-escaped (ASCII-only and not), Python-repr-escaped (exception
    texts) and percent-encoded (URLs).
    """
    # Very short values would scrub innocent text (and reveal the secret's length by doing so).
    if len(value) >= 4:
        with _SECRET_LOCK:
            _SECRET_VALUES.update(v for v in _encodings(value) if len(v) >= 4)


def _encodings(value: str) -> set[str]:
    forms = {
        value,
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
        repr(value)[1:-1],
        ascii(value)[1:-1],
        urllib.parse.quote(value, safe=""),
        urllib.parse.quote_plus(value, safe=""),
    }
    # A JSON line escapes what the logfmt quoting already escaped, so escaped forms nest.
    forms |= {json.dumps(form)[1:-1] for form in list(forms)}
    return forms


def scrub(text: str) -> str:
    """Replace every registered secret value in ``text`` with ``<redacted>``."""
    if not _SECRET_VALUES:
        return text
    with _SECRET_LOCK:
        values = sorted(_SECRET_VALUES, key=len, reverse=True)
    for value in values:
        if value in text:
            text = text.replace(value, REDACTED)
    return text


def _logfmt_value(value: object) -> str:
    text = str(value)
    if text == "" or any(c in text for c in ' ="\n\t'):
        return json.dumps(text)
    return text


class _Formatter(logging.Formatter):
    def __init__(self, fmt: str) -> None:
        super().__init__()
        self.fmt = fmt

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower().replace("warning", "warn"),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields.update(getattr(record, "fields", None) or {})
        if record.exc_info and record.exc_info[1] is not None:
            fields["err"] = f"{type(record.exc_info[1]).__name__}: {record.exc_info[1]}"
        if self.fmt == "json":
            return scrub(json.dumps(fields, default=str))
        return scrub(" ".join(f"{k}={_logfmt_value(v)}" for k, v in fields.items()))


def setup_logging(level: str = "info", fmt: str = "logfmt") -> None:
    """Configure the root logger once for a powerplane process (stderr, logfmt or json)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(fmt))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's access log would print one line per scrape.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def log(logger: logging.Logger, level: int, msg: str, **fields: object) -> None:
    """Log ``msg`` with structured key/value ``fields``."""
    logger.log(level, msg, extra={"fields": fields})


class FailureLog:
    """Logs a failure once per condition, not once per scrape.

    A key (exporter, target, collector) is logged when it starts failing or its cause changes,
    and once more when it recovers.  Missing hardware is logged once at info level.

    A multi-target exporter keeps one per target (so that forgetting a target forgets what it
    logged): slots and one lock for all keep each to its logger and its conditions.
    """

    __slots__ = ("_logger", "_state")
    #: Updates are a few dictionary operations: one lock serves every instance.
    _lock = threading.Lock()

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger
        self._state: dict[tuple[str, ...], str] = {}

    def failure(self, key: tuple[str, ...], cause: str, **fields: object) -> None:
        with self._lock:
            if self._state.get(key) == cause:
                return
            self._state[key] = cause
        log(self._logger, logging.WARNING, "collector failed", **_key_fields(key), cause=cause, **fields)

    def absent(self, key: tuple[str, ...], cause: str) -> None:
        with self._lock:
            if self._state.get(key) == "absent:" + cause:
                return
            self._state[key] = "absent:" + cause
        # Once, at info: an operator who finds no series must find out why without debug logs.
        log(self._logger, logging.INFO, "no data (hardware absent)", **_key_fields(key), cause=cause)

    def success(self, key: tuple[str, ...]) -> None:
        with self._lock:
            previous = self._state.pop(key, None)
        if previous is not None and not previous.startswith("absent:"):
            log(self._logger, logging.INFO, "collector recovered", **_key_fields(key))

    def forget(self, prefix: tuple[str, ...]) -> None:
        """Drop remembered state for keys starting with ``prefix`` (a target that went away)."""
        with self._lock:
            for key in [k for k in self._state if k[: len(prefix)] == prefix]:
                del self._state[key]


def _key_fields(key: tuple[str, ...]) -> dict[str, str]:
    names = ("exporter", "collector", "target")
    return {names[i] if i < len(names) else f"k{i}": part for i, part in enumerate(key)}

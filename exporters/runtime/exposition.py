"""A fast renderer of the Prometheus text format (0.0.4) for the exposition hot path.

prometheus_client's ``generate_latest`` is general (OpenMetrics, exemplars, every metric type)
and costs several microseconds per sample; a scrape of a few hundred series then spends more
time formatting than reading hardware.  Exporters here emit gauges, counters and info-style
gauges only, so this renderer handles exactly those and falls back to prometheus_client for
anything else.  Output is byte-compatible with what Prometheus parses; a test checks it
against prometheus_client's own parser.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from prometheus_client import generate_latest
from prometheus_client.core import Metric

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_ESCAPE_LABEL = str.maketrans({"\\": "\\\\", "\n": "\\n", '"': '\\"'})
_ESCAPE_HELP = str.maketrans({"\\": "\\\\", "\n": "\\n"})


def format_value(value: float) -> str:
    if value == math.inf:
        return "+Inf"
    if value == -math.inf:
        return "-Inf"
    if value != value:  # NaN
        return "NaN"
    return repr(float(value))


class _One:
    def __init__(self, metric: Metric) -> None:
        self.metric = metric

    def collect(self) -> Iterable[Metric]:
        yield self.metric


#: Rendered ``name{labels}`` prefixes: series repeat scrape after scrape, so their escaped label
#: sets are built once.  Bounded: cleared when a high-churn exporter fills it.
_PREFIXES: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}
_PREFIX_CACHE_SIZE = 200_000


def _prefix(name: str, labels: dict[str, str]) -> str:
    key = (name, tuple(labels.items()))
    prefix = _PREFIXES.get(key)
    if prefix is None:
        inner = ",".join(f'{k}="{str(v).translate(_ESCAPE_LABEL)}"' for k, v in labels.items())
        prefix = f"{name}{{{inner}}} "
        if len(_PREFIXES) >= _PREFIX_CACHE_SIZE:
            _PREFIXES.clear()
        _PREFIXES[key] = prefix
    return prefix


_HEADERS: dict[tuple[str, str, str], str] = {}


def _header(name: str, documentation: str, kind: str) -> str:
    key = (name, documentation, kind)
    header = _HEADERS.get(key)
    if header is None:
        exposed = name + "_total" if kind == "counter" else name
        header = f"# HELP {exposed} {documentation.translate(_ESCAPE_HELP)}\n# TYPE {exposed} {kind}\n"
        if len(_HEADERS) >= _PREFIX_CACHE_SIZE:
            _HEADERS.clear()
        _HEADERS[key] = header
    return header


def render(metrics: Iterable[Metric]) -> bytes:
    """The text exposition of ``metrics`` (families with distinct names).

    A family with ``text_chunks`` (bytes, whole lines) is written as it is: exporters with many
    series (Slurm's) render them once and keep them, and the body is then joined from bytes, so
    that it is not held twice, as text and encoded.
    """
    out: list[Any] = []
    append = out.append
    given = False
    for metric in metrics:
        if metric.type not in ("gauge", "counter", "untyped"):
            append(generate_latest(_One(metric)).decode())
            continue
        append(_header(metric.name, metric.documentation, metric.type))
        chunks = getattr(metric, "text_chunks", None)
        if chunks is not None:
            out.extend(chunks)
            given = True
            continue
        for sample in metric.samples:
            if sample.name.endswith("_created"):
                continue
            if sample.labels:
                append(f"{_prefix(sample.name, sample.labels)}{format_value(sample.value)}\n")
            else:
                append(f"{sample.name} {format_value(sample.value)}\n")
    if given:
        return b"".join([part if type(part) is bytes else part.encode() for part in out])
    return "".join(out).encode()

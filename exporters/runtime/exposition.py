"""A fast renderer of the Prometheus text format (0.0.4) and OpenMetrics for the exposition hot path.

prometheus_client's ``generate_latest`` is general (exemplars, every metric type) and costs
microseconds per sample: each sample is a namedtuple with a label dict, formatted afresh on
every scrape.  A scrape then spends more time formatting than reading hardware.  Exporters here
emit gauges and counters (info metrics are gauges of value 1), so the hot path is narrower:

- ``Family`` (what ``MetricSpec.family()`` returns) keeps each series as a tuple of label values
  and a float, with no per-sample namedtuple or dict.  It is a prometheus_client ``Metric``:
  ``samples`` builds the namedtuples on demand, so every prometheus_client consumer (the
  registry, the parser-based tests, ``generate_latest``) still sees an ordinary family.
- Rendered ``name{labels}`` prefixes are cached per family by the tuple of label values:
  series repeat scrape after scrape, so their escaped label sets are built once.

Any other metric (histograms, summaries, plain prometheus_client families) is rendered from its
samples, and types this module does not know fall back to prometheus_client.  Output is
equivalent to prometheus_client's (the same families, series and values; labels in their
declared order), checked with prometheus_client's parsers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from prometheus_client import generate_latest
from prometheus_client.core import Metric
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.samples import Sample

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"
_ESCAPE_LABEL = str.maketrans({"\\": "\\\\", "\n": "\\n", '"': '\\"'})
_ESCAPE_HELP = str.maketrans({"\\": "\\\\", "\n": "\\n"})
_ESCAPE_OM_HELP = _ESCAPE_LABEL
#: Bound on each cache below: cleared when a high-churn exporter fills it.
_CACHE_SIZE = 200_000


_CHECKED: set[tuple[str, str]] = set()


def format_value(value: float) -> str:
    if value - value == 0:  # finite: the common case first
        return repr(float(value))
    if value == math.inf:
        return "+Inf"
    if value == -math.inf:
        return "-Inf"
    if value != value:  # NaN
        return "NaN"
    return repr(float(value))


class Family(Metric):
    """A gauge or counter family stored as rows of (label values, value).

    ``name`` follows prometheus_client: a counter's family name has no ``_total`` (its samples
    do).  Built by ``MetricSpec.family()``; ``add_metric`` has prometheus_client's signature.
    """

    def __init__(self, name: str, documentation: str, typ: str, labels: Sequence[str] = ()) -> None:
        self._extra: list[Sample] = []
        if (name, typ) in _CHECKED:
            # prometheus_client checks the name with a regular expression on every family: a
            # scrape builds the same families each time, so each name is checked once.
            self.name, self.documentation, self.unit, self.type = name, documentation, "", typ
        else:
            super().__init__(name, documentation, typ)
            if len(_CHECKED) >= _CACHE_SIZE:
                _CHECKED.clear()
            _CHECKED.add((name, typ))
        self.labelnames = tuple(labels)
        self.sample_name = name + "_total" if typ == "counter" else name
        self.rows: list[tuple[tuple[str, ...], float]] = []

    def add_metric(self, labels: Sequence[str], value: float, *_args: Any, **_kwargs: Any) -> None:
        if len(labels) != len(self.labelnames):
            raise ValueError(f"{self.name}: {len(labels)} label values for {len(self.labelnames)} labels")
        self.rows.append((tuple(labels), value))

    @property
    def samples(self) -> list[Sample]:
        names = self.labelnames
        rows = [
            Sample(self.sample_name, dict(zip(names, v, strict=True)), x, None, None) for v, x in self.rows
        ]
        return rows + self._extra

    @samples.setter
    def samples(self, value: list[Sample]) -> None:
        # prometheus_client's constructor assigns []; anything else assigned is kept as is.
        self._extra = list(value)

    def __len__(self) -> int:
        return len(self.rows) + len(self._extra)

    @classmethod
    def merged(cls, parts: Sequence[Family]) -> Family:
        """One family from several collectors' families of the same name."""
        first = parts[0]
        family = cls(first.name, first.documentation, first.type, first.labelnames)
        for part in parts:
            family.rows.extend(part.rows)
            family._extra.extend(part._extra)
        return family


class _One:
    def __init__(self, metric: Metric) -> None:
        self.metric = metric

    def collect(self) -> Iterable[Metric]:
        yield self.metric


_PREFIXES: dict[tuple[str, tuple[str, ...]], dict[tuple[str, ...], list[Any]]] = {}
_SAMPLE_PREFIXES: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}
_HEADERS: dict[tuple[str, str, str, bool], str] = {}


def _row_prefixes(name: str, labelnames: tuple[str, ...]) -> dict[tuple[str, ...], list[Any]]:
    key = (name, labelnames)
    cache = _PREFIXES.get(key)
    if cache is None:
        if len(_PREFIXES) >= 10_000:
            _PREFIXES.clear()
        cache = _PREFIXES[key] = {}
    elif len(cache) >= _CACHE_SIZE:
        cache.clear()
    return cache


def _labels(names: Iterable[str], values: Iterable[str]) -> str:
    return ",".join(f'{k}="{str(v).translate(_ESCAPE_LABEL)}"' for k, v in zip(names, values, strict=True))


def _sample_prefix(name: str, labels: dict[str, str]) -> str:
    key = (name, tuple(labels.items()))
    prefix = _SAMPLE_PREFIXES.get(key)
    if prefix is None:
        prefix = f"{name}{{{_labels(labels, labels.values())}}} " if labels else f"{name} "
        if len(_SAMPLE_PREFIXES) >= _CACHE_SIZE:
            _SAMPLE_PREFIXES.clear()
        _SAMPLE_PREFIXES[key] = prefix
    return prefix


def _header(metric: Metric, openmetrics: bool) -> str:
    key = (metric.name, metric.documentation, metric.type, openmetrics)
    header = _HEADERS.get(key)
    if header is None:
        if openmetrics:
            # OpenMetrics names the family (a counter without _total), TYPE before HELP.
            help_text = metric.documentation.translate(_ESCAPE_OM_HELP)
            header = f"# TYPE {metric.name} {metric.type}\n# HELP {metric.name} {help_text}\n"
        else:
            exposed = metric.name + "_total" if metric.type == "counter" else metric.name
            help_text = metric.documentation.translate(_ESCAPE_HELP)
            header = f"# HELP {exposed} {help_text}\n# TYPE {exposed} {metric.type}\n"
        if len(_HEADERS) >= _CACHE_SIZE:
            _HEADERS.clear()
        _HEADERS[key] = header
    return header


def _rows(family: Family, out: list[str]) -> None:
    # Each series' cache entry is [prefix, last value, last line]: a value that has not changed
    # since the last scrape (limits, states, info metrics) reuses its line, since formatting a
    # float is the most expensive step left.
    cache = _row_prefixes(family.sample_name, family.labelnames)
    get = cache.get
    append = out.append
    name = family.sample_name
    names = family.labelnames
    for values, value in family.rows:
        entry = get(values)
        if entry is None:
            prefix = f"{name}{{{_labels(names, values)}}} " if values else f"{name} "
            entry = cache[values] = [prefix, None, ""]
        elif entry[1] == value:
            append(entry[2])
            continue
        line = entry[0] + format_value(value) + "\n"
        entry[1] = value
        entry[2] = line
        append(line)


def _samples(metric: Metric, out: list[str]) -> None:
    for sample in metric.samples:
        if sample.name.endswith("_created"):
            continue
        out.append(f"{_sample_prefix(sample.name, sample.labels)}{format_value(sample.value)}\n")


_TEXT_KINDS = ("gauge", "counter", "untyped")
_OPENMETRICS_KINDS = ("gauge", "counter")


def _families(metrics: Iterable[Metric], openmetrics: bool, out: list[Any]) -> bool:
    """Append each family's lines to ``out``; whether any were given as bytes (``text_chunks``)."""
    known = _OPENMETRICS_KINDS if openmetrics else _TEXT_KINDS
    given = False
    for metric in metrics:
        if metric.type not in known:
            if openmetrics:
                text = generate_openmetrics(_One(metric)).decode()  # type: ignore[no-untyped-call]
                out.append(text.removesuffix("# EOF\n"))
            else:
                out.append(generate_latest(_One(metric)).decode())
            continue
        out.append(_header(metric, openmetrics))
        # A gauge's series lines are the same in both formats, so pre-rendered chunks serve both.
        chunks = getattr(metric, "text_chunks", None)
        if chunks is not None and (metric.type == "gauge" or not openmetrics):
            out.extend(chunks)
            given = True
        elif isinstance(metric, Family):
            _rows(metric, out)
            _samples_extra(metric, out)
        else:
            _samples(metric, out)
    return given


def _joined(out: list[Any], given: bool) -> bytes:
    # Families given as bytes (Slurm's largest) are joined as bytes, so that a large body is not
    # held twice, as text and encoded.
    if given:
        return b"".join([part if type(part) is bytes else part.encode() for part in out])
    return "".join(out).encode()


def render(metrics: Iterable[Metric]) -> bytes:
    """The text exposition (0.0.4) of ``metrics`` (families with distinct names).

    A family with ``text_chunks`` (bytes, whole lines) is written as it is: exporters with many
    series (Slurm's) render them once and keep them.
    """
    out: list[Any] = []
    return _joined(out, _families(metrics, False, out))


def render_openmetrics(metrics: Iterable[Metric]) -> bytes:
    """The OpenMetrics 1.0 exposition of ``metrics``, ending in ``# EOF``."""
    out: list[Any] = []
    given = _families(metrics, True, out)
    out.append("# EOF\n")
    return _joined(out, given)


def _samples_extra(family: Family, out: list[str]) -> None:
    for sample in family._extra:
        if not sample.name.endswith("_created"):
            out.append(f"{_sample_prefix(sample.name, sample.labels)}{format_value(sample.value)}\n")

"""The largest families (one series per node or per job and node) written straight as text.

A cluster of 10,000 nodes and 30,000 running jobs has some 300,000 such series.  Built as
prometheus_client samples they cost a tuple, a dict and a formatted line each, every scrape.
Here each record's lines are formatted once, kept while the record is unchanged (records are
frozen and hashable: an equal record renders equal lines) and joined per family at exposition:
a scrape after a change formats only the records that changed.

``Lines`` is a prometheus_client ``Metric`` whose ``text_chunks`` (bytes) the text renderer
writes as they are (``exporters/runtime/exposition.py``); its ``samples`` are parsed back from the
text only where something asks for them (the OpenMetrics format, a family merged across
collectors).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from prometheus_client.core import Metric
from prometheus_client.parser import text_string_to_metric_families

from ..runtime.exposition import format_value
from ..runtime.metrics import MetricSpec

_ESCAPE = str.maketrans({"\\": "\\\\", "\n": "\\n", '"': '\\"'})


_ESCAPED: dict[str, str] = {}
_ESCAPED_SIZE = 1 << 16


def escape(value: str) -> str:
    """A label value as the text format writes it between quotes (names repeat: kept once)."""
    found = _ESCAPED.get(value)
    if found is None:
        found = value.translate(_ESCAPE)
        if len(_ESCAPED) >= _ESCAPED_SIZE:
            _ESCAPED.clear()
        _ESCAPED[value] = found
    return found


def number(value: float) -> str:
    """A sample value as the text format writes it."""
    return repr(float(value)) if type(value) is int else format_value(value)


class Line:
    """The start of a family's series, ``name{``: callers write the labels in the order given
    here, which must be the spec's (checked), then ``} value``."""

    __slots__ = ("head",)

    def __init__(self, spec: MetricSpec, *labels: str) -> None:
        if labels != spec.labels:
            raise ValueError(f"{spec.name}: labels {labels} are not the declared {spec.labels}")
        self.head = spec.name + "{"


class Lines(Metric):
    """A gauge family given as rendered chunks of the text format (bytes, each whole lines)."""

    def __init__(self, spec: MetricSpec, chunks: Sequence[bytes]) -> None:
        super().__init__(spec.name, spec.help, "gauge")
        self.text_chunks = chunks

    @property
    def samples(self) -> list[Any]:
        text = b"".join(self.text_chunks).decode()
        if not text:
            return []
        (family,) = text_string_to_metric_families(f"# TYPE {self.name} gauge\n{text}")
        return list(family.samples)

    @samples.setter
    def samples(self, value: list[Any]) -> None:
        if value:  # Metric.__init__ sets it empty; nothing else may
            raise AttributeError("Lines families are built from text")


class RecordLines:
    """Per record, its lines in each of several families, formatted once while it stays the same.

    ``render(record)`` gives one string per family (``""`` where it has no series there), kept
    encoded.  The cache keeps only the records of the latest call to ``families``: it follows the
    cluster.
    """

    def __init__(self, render: Callable[[Any], tuple[str, ...]], specs: Sequence[MetricSpec]) -> None:
        self.render = render
        self.specs = tuple(specs)
        self._cache: dict[Any, tuple[bytes, ...]] = {}

    def families(self, records: Iterable[Any]) -> list[Lines]:
        parts: list[list[bytes]] = [[] for _ in self.specs]
        cache, fresh = self._cache, {}
        for record in records:
            lines = cache.get(record)
            if lines is None:
                lines = tuple(text.encode() for text in self.render(record))
            fresh[record] = lines
            for part, text in zip(parts, lines, strict=True):
                if text:
                    part.append(text)
        self._cache = fresh
        return [Lines(spec, part) for spec, part in zip(self.specs, parts, strict=True)]

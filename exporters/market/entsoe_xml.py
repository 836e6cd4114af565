"""ENTSO-E XML, parsed incrementally into just the fields the market exporter reads.

A Transparency Platform answer is a ``Publication_MarketDocument`` (prices), a
``GL_MarketDocument`` (load, generation) or an ``Acknowledgement_MarketDocument`` (no data).
Everything the exporter needs sits at a few fixed paths below the root::

    TimeSeries/<field>                       curveType, currency_Unit.name, …, inBiddingZone_Domain.mRID
    TimeSeries/MktPSRType/psrType            the production type (A75)
    TimeSeries/Period/timeInterval/start|end
    TimeSeries/Period/resolution
    TimeSeries/Period/Point/position|<value> price.amount or quantity
    Reason/code|text                         an acknowledgement's explanation

``XmlStream`` is fed the body chunk by chunk as it arrives (``runtime.http.feed_body``) and
keeps only those fields: no element tree is built, a Point becomes ``(position, value)`` as soon
as it closes, and text is kept only for the leaves above, at most ``MAX_TEXT`` characters each.
Memory is therefore bounded by the number of Points, and that by ``MAX_ELEMENTS``: a document
of millions of tiny elements is refused after the first ``MAX_ELEMENTS`` of them.

The parser is defusedxml's, with DTDs forbidden: entity expansion ("billion laughs") and
external entities are refused at the DOCTYPE, before anything is expanded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from xml.etree.ElementTree import ParseError

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser

from .provider import ProviderError

#: Most elements one document may hold.  Two days of generation per production type (25 types,
#: 192 quarter-hours, three elements a Point) are ~15,000; a month of quarter-hourly prices ~9,000.
MAX_ELEMENTS = 100_000
#: Most TimeSeries one document may hold (one per production type and direction, per span).
MAX_SERIES = 1_000
#: Deepest nesting accepted (ENTSO-E documents nest six deep).
MAX_NESTING = 32
#: Most acknowledgement Reasons kept (the rest are counted as elements and dropped).
MAX_REASONS = 20
#: Most characters kept of one field's text (an instant, a code, a number, a reason).
MAX_TEXT = 300
#: How much of a body given whole is fed per step (the same as a network read).
FEED_CHUNK = 64 * 1024

#: The deepest element read (the root is 1; TimeSeries/Period/Point/position is 5).
_MAX_DEPTH = 5
_SERIES = ("TimeSeries",)
_PERIOD = ("TimeSeries", "Period")
_POINT = ("TimeSeries", "Period", "Point")
_REASON = ("Reason",)
#: The TimeSeries fields kept (TimeSeries/<field>).
SERIES_FIELDS = frozenset(
    {
        "businessType",
        "curveType",
        "currency_Unit.name",
        "price_Measure_Unit.name",
        "quantity_Measure_Unit.name",
        "classificationSequence_AttributeInstanceComponent.position",
        "in_Domain.mRID",
        "out_Domain.mRID",
        "inBiddingZone_Domain.mRID",
        "outBiddingZone_Domain.mRID",
    }
)
#: Leaves whose text is kept, besides TimeSeries/<field> and Point/<field>.
_LEAVES = {
    ("TimeSeries", "MktPSRType", "psrType"): "psrType",
    ("TimeSeries", "Period", "timeInterval", "start"): "timeInterval/start",
    ("TimeSeries", "Period", "timeInterval", "end"): "timeInterval/end",
    ("TimeSeries", "Period", "resolution"): "resolution",
    ("Reason", "code"): "code",
    ("Reason", "text"): "text",
}


@dataclass(slots=True)
class XmlPeriod:
    """A ``Period``: its fields (``timeInterval/start``, ``resolution``) and (position, value) points."""

    fields: dict[str, str] = field(default_factory=dict)
    points: list[tuple[int, float]] = field(default_factory=list)


@dataclass(slots=True)
class XmlSeries:
    """A ``TimeSeries``: its scalar fields (``curveType``, ``psrType``, …) and periods."""

    fields: dict[str, str] = field(default_factory=dict)
    periods: list[XmlPeriod] = field(default_factory=list)


@dataclass(slots=True)
class XmlDocument:
    """What the exporter reads of one document; ``kind`` is the root's local name."""

    kind: str = ""
    series: list[XmlSeries] = field(default_factory=list)
    #: An acknowledgement's ``Reason`` elements: {"code": …, "text": …}.
    reasons: list[dict[str, str]] = field(default_factory=list)

    def acknowledgement_reason(self) -> str:
        texts = [
            " ".join(part for part in (r.get("code", ""), r.get("text", "")) if part) for r in self.reasons
        ]
        # The text is the platform's; keep it short in logs.
        return "; ".join(t for t in texts if t)[:300] or "no reason given"


class _Extractor:
    """The parser's target: keeps the fields at the paths above, counts every element."""

    def __init__(self, what: str, value_field: str, max_elements: int) -> None:
        self.what = what
        self.value_field = value_field
        self.max_elements = max_elements
        self.doc = XmlDocument()
        self.elements = 0
        self._path: list[str] = []  # local names below the root
        self._depth = 0
        self._text: list[str] | None = None
        self._text_len = 0
        self._truncated = False
        self._point: dict[str, str] = {}

    def _where(self) -> str:
        where = f"{self.what}: TimeSeries {len(self.doc.series)}"
        if self.doc.series and self.doc.series[-1].periods:
            where += f" Period {len(self.doc.series[-1].periods)}"
        return where

    def start(self, tag: str, _attrib: dict[str, str]) -> None:
        self.elements += 1
        if self.elements > self.max_elements:
            raise ProviderError(
                f"{self.what}: document has more than {self.max_elements} XML elements", "too_large"
            )
        self._depth += 1
        if self._depth == 1:
            self.doc.kind = tag.rpartition("}")[2][:64]
            return
        if self._depth > _MAX_DEPTH:
            # Nothing below _MAX_DEPTH is read: deeper elements cost a counter, not a path.
            self._text = None
            if self._depth > MAX_NESTING:
                raise ProviderError(f"{self.what}: elements nest deeper than {MAX_NESTING}", "malformed")
            return
        self._path.append(tag.rpartition("}")[2])
        path = tuple(self._path)
        if path == _SERIES:
            if len(self.doc.series) >= MAX_SERIES:
                raise ProviderError(
                    f"{self.what}: document has more than {MAX_SERIES} TimeSeries", "too_large"
                )
            self.doc.series.append(XmlSeries())
        elif path == _PERIOD:
            self.doc.series[-1].periods.append(XmlPeriod())
        elif path == _POINT:
            self._point = {}
        elif path == _REASON and len(self.doc.reasons) < MAX_REASONS:
            self.doc.reasons.append({})
        self._text = [] if self._keeps(path) else None
        self._text_len = 0
        self._truncated = False

    def _keeps(self, path: tuple[str, ...]) -> bool:
        if path in _LEAVES:
            return True
        if len(path) == 2:
            return path[0] == "TimeSeries" and path[1] in SERIES_FIELDS
        return len(path) == 4 and path[:3] == _POINT and path[3] in ("position", self.value_field)

    def data(self, text: str) -> None:
        if self._text is None:
            return
        if self._text_len + len(text) > MAX_TEXT:
            self._truncated = True
        piece = text[: max(0, MAX_TEXT - self._text_len)]
        self._text.append(piece)
        self._text_len += len(piece)

    def end(self, _tag: str) -> None:
        self._depth -= 1
        if self._depth == 0 or self._depth >= _MAX_DEPTH:
            return
        path = tuple(self._path)
        text = "".join(self._text).strip() if self._text is not None else None
        self._text = None
        self._path.pop()
        if self._truncated and text is not None:
            raise ProviderError(
                f"{self._where()}: {path[-1]} is longer than {MAX_TEXT} characters", "malformed"
            )
        if path == _POINT:
            self._close_point()
        elif text is None or not text:
            return
        elif path in _LEAVES:
            self._leaf_owner(path).setdefault(_LEAVES[path], text)
        elif len(path) == 2:
            self.doc.series[-1].fields.setdefault(path[1], text)
        else:
            self._point.setdefault(path[3], text)

    def _leaf_owner(self, path: tuple[str, ...]) -> dict[str, str]:
        if path[0] == "Reason":
            return self.doc.reasons[-1] if self.doc.reasons else {}
        series = self.doc.series[-1]
        return series.periods[-1].fields if path[1] == "Period" else series.fields

    def _close_point(self) -> None:
        where = self._where()
        raw_position, raw_value = self._point.get("position"), self._point.get(self.value_field)
        if raw_position is None or raw_value is None:
            missing = "position" if raw_position is None else self.value_field
            raise ProviderError(f"{where}: missing {missing}", "malformed")
        try:
            position, value = int(raw_position), float(raw_value)
        except ValueError:
            raise ProviderError(f"{where}: Point with a non-numeric field", "malformed") from None
        if position < 1 or value != value or value in (float("inf"), float("-inf")):
            raise ProviderError(f"{where}: Point position {position} out of range", "malformed")
        self.doc.series[-1].periods[-1].points.append((position, value))

    def close(self) -> XmlDocument:
        return self.doc


class XmlStream:
    """An incremental, defused parser: ``feed(chunk)`` as the body arrives, then ``close()``."""

    def __init__(
        self, what: str, value_field: str = "price.amount", max_elements: int = MAX_ELEMENTS
    ) -> None:
        self.what = what
        self._target = _Extractor(what, value_field, max_elements)
        self._parser = DefusedXMLParser(
            target=self._target, forbid_dtd=True, forbid_entities=True, forbid_external=True
        )

    def feed(self, chunk: bytes) -> None:
        try:
            self._parser.feed(chunk)
        except DefusedXmlException as exc:
            raise ProviderError(
                f"{self.what}: refused hostile XML ({type(exc).__name__})", "malformed"
            ) from None
        except ParseError as exc:
            raise ProviderError(f"{self.what}: malformed XML: {exc}", "malformed") from None

    def close(self) -> XmlDocument:
        try:
            self._parser.close()
        except DefusedXmlException as exc:
            raise ProviderError(
                f"{self.what}: refused hostile XML ({type(exc).__name__})", "malformed"
            ) from None
        except ParseError as exc:
            raise ProviderError(f"{self.what}: malformed XML: {exc}", "malformed") from None
        return self._target.doc


def parse_document(body: bytes, what: str, value_field: str = "price.amount") -> XmlDocument:
    """A whole body through the same incremental parser (tests, files, small error answers)."""
    stream = XmlStream(what, value_field)
    for offset in range(0, len(body), FEED_CHUNK):
        stream.feed(body[offset : offset + FEED_CHUNK])
    return stream.close()

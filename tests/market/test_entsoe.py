"""ENTSO-E documents: A03 gaps, mixed resolutions, DE-LU sequences, DST days, hostile XML, the API."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from xml.sax.saxutils import escape

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from powerplane.exporters.market.curve import area_timezone, day_bounds
from powerplane.exporters.market.entsoe import EntsoeProvider, parse_load, parse_prices
from powerplane.exporters.market.provider import NotPublished, ProviderError
from powerplane.exporters.runtime import Secret
from powerplane.lab import market as lab

BERLIN = area_timezone("DE-LU")
NS = 'xmlns="urn:iec62325.351:tc57wg16:451-3:publicationdocument:7:3"'


def doc(*series: str) -> bytes:
    body = "".join(series)
    return f"<Publication_MarketDocument {NS}><mRID>t</mRID>{body}</Publication_MarketDocument>".encode()


def ts(periods: str, curve_type: str = "A03", sequence: int | None = None) -> str:
    seq = (
        f"<classificationSequence_AttributeInstanceComponent.position>{sequence}"
        "</classificationSequence_AttributeInstanceComponent.position>"
        if sequence is not None
        else ""
    )
    return (
        "<TimeSeries><mRID>1</mRID><businessType>A62</businessType>"
        "<currency_Unit.name>EUR</currency_Unit.name><price_Measure_Unit.name>MWH</price_Measure_Unit.name>"
        f"{seq}<curveType>{curve_type}</curveType>{periods}</TimeSeries>"
    )


def period(start: str, end: str, resolution: str, points: dict[int, float]) -> str:
    body = "".join(
        f"<Point><position>{p}</position><price.amount>{v}</price.amount></Point>" for p, v in points.items()
    )
    return (
        f"<Period><timeInterval><start>{start}</start><end>{end}</end></timeInterval>"
        f"<resolution>{resolution}</resolution>{body}</Period>"
    )


def test_a03_omitted_points_are_forward_filled_to_the_end_of_the_interval() -> None:
    # Eight quarter-hours; positions 2, 3, 5, 7 and 8 repeat their predecessor and are left out.
    body = doc(ts(period("2025-11-20T23:00Z", "2025-11-21T01:00Z", "PT15M", {1: 50.5, 4: 61.0, 6: -3.25})))
    curve = parse_prices(body, "DE-LU")
    assert [p.price for p in curve] == [50.5, 50.5, 50.5, 61.0, 61.0, -3.25, -3.25, -3.25]
    assert curve.start == datetime(2025, 11, 20, 23, tzinfo=UTC)
    assert curve.end == datetime(2025, 11, 21, 1, tzinfo=UTC)
    assert all(p.seconds == 900 for p in curve)


def test_a01_missing_point_is_a_gap_not_a_repeat() -> None:
    body = doc(ts(period("2025-11-20T23:00Z", "2025-11-21T00:00Z", "PT15M", {1: 10, 2: 20, 4: 40}), "A01"))
    curve = parse_prices(body, "FR")
    assert [p.price for p in curve] == [10, 20, 40]
    assert curve.price_at(datetime(2025, 11, 20, 23, 30, tzinfo=UTC)) is None


def test_mixed_pt15m_and_pt60m_finest_wins_where_they_overlap() -> None:
    hourly = ts(period("2025-11-20T23:00Z", "2025-11-21T02:00Z", "PT60M", {1: 100.0, 2: 200.0, 3: 300.0}))
    quarter = ts(period("2025-11-21T00:00Z", "2025-11-21T01:00Z", "PT15M", {1: 1.0, 2: 2.0, 3: 3.0, 4: 4.0}))
    curve = parse_prices(doc(hourly, quarter), "NL")
    assert [(p.seconds, p.price) for p in curve] == [
        (3600, 100.0),
        (900, 1.0),
        (900, 2.0),
        (900, 3.0),
        (900, 4.0),
        (3600, 300.0),
    ]


def test_de_lu_with_both_sequences_uses_sequence_1() -> None:
    sdac = ts(period("2025-11-20T23:00Z", "2025-11-20T23:30Z", "PT15M", {1: 80.0, 2: 81.0}), sequence=1)
    exaa = ts(period("2025-11-20T23:00Z", "2025-11-20T23:30Z", "PT15M", {1: 95.0, 2: 96.0}), sequence=2)
    # The EXAA series first, to show that order does not matter.
    curve = parse_prices(doc(exaa, sdac), "DE-LU")
    assert [p.price for p in curve] == [80.0, 81.0]


def test_de_lu_with_sequence_1_missing_is_reported_not_substituted() -> None:
    exaa = ts(period("2025-11-20T23:00Z", "2025-11-20T23:30Z", "PT15M", {1: 95.0, 2: 96.0}), sequence=2)
    with pytest.raises(ProviderError) as info:
        parse_prices(doc(exaa), "DE-LU")
    assert info.value.reason == "sequence_missing"
    assert "position 1 is missing" in str(info.value) and "present: 2" in str(info.value)


@pytest.mark.parametrize(
    ("day", "count"), [(date(2026, 3, 29), 92), (date(2026, 10, 25), 100), (date(2026, 6, 1), 96)]
)
def test_dst_days_have_92_and_100_quarter_hours(day: date, count: int) -> None:
    source = lab.day_curve("DE-LU", day)
    body = lab.publication_document([lab.series_from_curve(source, sequence=1)])
    curve = parse_prices(body, "DE-LU")
    assert len(curve) == count == len(curve.day(day, BERLIN))
    assert curve.has_day(day, BERLIN)
    assert [p.price for p in curve] == [p.price for p in source]
    start, end = day_bounds(day, BERLIN)
    assert (end - start) == timedelta(minutes=15 * count)


def test_negative_prices_are_kept() -> None:
    body = doc(ts(period("2025-05-11T10:00Z", "2025-05-11T10:30Z", "PT15M", {1: -135.45, 2: -0.01})))
    assert [p.price for p in parse_prices(body, "DE-LU")] == [-135.45, -0.01]


def test_acknowledgement_means_not_published() -> None:
    with pytest.raises(NotPublished) as info:
        parse_prices(lab.acknowledgement_document("No matching data found for Data item X"), "DE-LU")
    assert info.value.reason == "no_data"
    assert "No matching data" in str(info.value)


def test_document_without_series_means_not_published() -> None:
    with pytest.raises(NotPublished):
        parse_prices(doc(), "DE-LU")


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (lab.BILLION_LAUGHS, "hostile"),
        (lab.EXTERNAL_ENTITY, "hostile"),
        (b"<Publication_MarketDocument><TimeSeries>", "malformed XML"),
        (b"", "malformed XML"),
        (b"\xff\xfe<a/>", "malformed"),
        (b"<html><body>Bad Gateway</body></html>", "unexpected document"),
        (doc(ts(period("2025-11-20T23:00Z", "2025-11-21T00:00Z", "PT15M", {1: "abc"}))), "non-numeric"),  # type: ignore[dict-item]
        (doc(ts(period("2025-11-20T23:00Z", "2025-11-21T00:00Z", "PT15M", {9: 1.0}))), "beyond"),
        (doc(ts(period("2025-11-20T23:00Z", "2025-11-21T00:00Z", "P1Y", {1: 1.0}))), "resolution"),
        (doc(ts(period("2025-11-20T23:00Z", "2025-11-20T23:10Z", "PT15M", {1: 1.0}))), "whole number"),
        (doc(ts(period("bogus", "2025-11-21T00:00Z", "PT15M", {1: 1.0}))), "bad instant"),
        (doc(ts(period("9999-12-31T23:00Z", "9999-12-31T23:15Z", "PT15M", {1: 1.0}))), "bad instant"),
        (doc(ts(period("1990-01-01T00:00Z", "2025-11-21T00:00Z", "PT1M", {1: 1.0}))), "implausibly long"),
        (doc(ts(period("2025-11-21T00:00Z", "2025-11-20T00:00Z", "PT15M", {1: 1.0}))), "ends before"),
        (
            doc(ts(period("2025-11-20T23:00Z", "2025-11-21T00:00Z", "PT15M", {1: float("nan")}))),
            "out of range",
        ),
        (doc(ts("<Period><resolution>PT15M</resolution></Period>")), "missing timeInterval"),
        (doc(ts("").replace("EUR", "GBP")), "not EUR"),
    ],
)
def test_hostile_and_malformed_documents_fail_with_a_named_cause(body: bytes, needle: str) -> None:
    with pytest.raises(ProviderError) as info:
        parse_prices(body, "DE-LU")
    assert info.value.reason == "malformed"
    assert needle in str(info.value)


def test_load_forecast_document() -> None:
    start = datetime(2025, 11, 20, 23, tzinfo=UTC)
    body = lab.load_document([(start, timedelta(hours=1), [41000.0, 39500.5])], "10Y1001A1001A82H")
    load = parse_load(body, "DE-LU")
    assert load.at(start + timedelta(minutes=59)) == 41000.0
    assert load.at(start + timedelta(hours=1)) == 39500.5
    assert load.at(start + timedelta(hours=2)) is None
    assert load.peak(start, start + timedelta(hours=2)) == 41000.0


# --- the provider against the fake API --------------------------------------------------------

TOKEN = "s3cret-token-value"
DAY = date(2025, 11, 21)


@pytest.fixture
async def fake_entsoe():
    fake = lab.FakeEntsoe(TOKEN, {"DE-LU": lab.day_curve("DE-LU", DAY)}, stall_seconds=5.0)
    await fake.start()
    yield fake
    await fake.stop()


async def fetch(fake: lab.FakeEntsoe, token: str = TOKEN, limit: float = 5.0, area: str = "DE-LU"):
    provider = EntsoeProvider("entsoe", Secret("test", token), fake.url + "/api", limit)
    try:
        return await provider.fetch(area, *day_bounds(DAY, BERLIN))
    finally:
        await provider.close()


async def test_provider_fetches_the_sdac_day(fake_entsoe: lab.FakeEntsoe) -> None:
    curve = await fetch(fake_entsoe)
    assert len(curve) == 96 and curve.source == "entsoe"
    assert [p.price for p in curve] == [p.price for p in lab.day_curve("DE-LU", DAY)]
    request = fake_entsoe.requests[-1]
    assert request["documentType"] == "A44"
    assert request["periodStart"] == "202511202300" and request["periodEnd"] == "202511212300"


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("401", "auth"),
        ("429", "rate_limited"),
        ("503", "unavailable"),
        ("malformed", "malformed"),
        ("hostile", "malformed"),
        ("ack", "no_data"),
        ("empty", "no_data"),
    ],
)
async def test_provider_faults(fake_entsoe: lab.FakeEntsoe, fault: str, reason: str) -> None:
    fake_entsoe.fail(fault)
    with pytest.raises(ProviderError) as info:
        await fetch(fake_entsoe)
    assert info.value.reason == reason
    assert TOKEN not in str(info.value)
    if fault == "429":
        assert info.value.retry_after == 120


async def test_provider_wrong_token_is_auth_and_never_echoed(fake_entsoe: lab.FakeEntsoe) -> None:
    with pytest.raises(ProviderError) as info:
        await fetch(fake_entsoe, token="wrong-token-123")
    assert info.value.reason == "auth"
    assert "wrong-token-123" not in str(info.value)


async def test_provider_timeout(fake_entsoe: lab.FakeEntsoe) -> None:
    fake_entsoe.fail("timeout")
    loop = asyncio.get_running_loop()
    began = loop.time()
    with pytest.raises(ProviderError) as info:
        await fetch(fake_entsoe, limit=1.0)
    assert info.value.reason == "timeout"
    assert loop.time() - began < 4.0


async def test_provider_unpublished_day_and_missing_sequence(fake_entsoe: lab.FakeEntsoe) -> None:
    provider = EntsoeProvider("entsoe", Secret("test", TOKEN), fake_entsoe.url + "/api", 5.0)
    try:
        with pytest.raises(NotPublished):
            await provider.fetch("DE-LU", *day_bounds(DAY + timedelta(days=1), BERLIN))
        fake_entsoe.drop_sequence_1 = True
        with pytest.raises(ProviderError) as info:
            await provider.fetch("DE-LU", *day_bounds(DAY, BERLIN))
        assert info.value.reason == "sequence_missing"
    finally:
        await provider.close()


async def test_provider_connection_refused_is_concise() -> None:
    provider = EntsoeProvider("entsoe", Secret("test", TOKEN), "http://127.0.0.1:9/api", 2.0)
    try:
        with pytest.raises(ProviderError) as info:
            await provider.fetch("DE-LU", *day_bounds(DAY, BERLIN))
    finally:
        await provider.close()
    assert info.value.reason == "connection"
    assert TOKEN not in str(info.value) and "securityToken" not in str(info.value)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_fail_cleanly(body: bytes) -> None:
    try:
        parse_prices(body, "DE-LU")
    except ProviderError:
        pass


@settings(max_examples=100, deadline=None)
@given(
    start=st.text(max_size=30),
    resolution=st.text(max_size=12),
    position=st.text(max_size=8),
    amount=st.text(max_size=12),
    sequence=st.one_of(st.none(), st.integers(-2, 3)),
)
def test_mistyped_fields_fail_cleanly(
    start: str, resolution: str, position: str, amount: str, sequence: int | None
) -> None:
    body = doc(
        ts(
            f"<Period><timeInterval><start>{escape(start)}</start><end>2025-11-21T00:00Z</end></timeInterval>"
            f"<resolution>{escape(resolution)}</resolution><Point><position>{escape(position)}</position>"
            f"<price.amount>{escape(amount)}</price.amount></Point></Period>",
            sequence=sequence,
        )
    )
    try:
        curve = parse_prices(body, "DE-LU")
    except ProviderError:
        return
    assert all(p.end > p.start for p in curve)

"""Hostile answers: compression bombs, oversized and endless bodies, element floods, deep nesting.

Each attack is served by the lab's fake ENTSO-E or Energy-Charts server; the client must refuse
it with a clear error naming the cap, keep its memory bounded (measured in a subprocess, peak
RSS), and the feed must go on with the next provider.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from powerplane.exporters.market.curve import area_timezone, day_bounds
from powerplane.exporters.market.energycharts import EnergyChartsProvider
from powerplane.exporters.market.entsoe import EntsoeProvider, parse_prices
from powerplane.exporters.market.entsoe_xml import (
    MAX_ELEMENTS,
    MAX_SERIES,
    MAX_TEXT,
    XmlStream,
    parse_document,
)
from powerplane.exporters.market.feed import AreaFeed
from powerplane.exporters.market.files import StaticProvider
from powerplane.exporters.market.provider import ProviderError
from powerplane.exporters.runtime import Secret
from powerplane.lab import market as lab

BERLIN = area_timezone("DE-LU")
DAY = date(2025, 11, 21)
TOKEN = "hostile-test-token"

#: fault → (reason, words of the message)
ENTSOE_ATTACKS = {
    "gzip_bomb": ("too_large", "exceeds the limit of 16 MiB (decompressed)"),
    "huge": ("too_large", "exceeds the limit of 16 MiB (decompressed)"),
    "endless": ("too_large", "exceeds the limit of 16 MiB (decompressed)"),
    "tiny_elements": ("too_large", f"more than {MAX_ELEMENTS} XML elements"),
    "long_text": ("malformed", f"price.amount is longer than {MAX_TEXT} characters"),
    "deep": ("malformed", "nest deeper than 32"),
}
ENERGY_CHARTS_ATTACKS = {
    "gzip_bomb": ("too_large", "exceeds the limit of 4 MiB (decompressed)"),
    "huge": ("too_large", "exceeds the limit of 4 MiB (decompressed)"),
    "deep": ("malformed", "nests too deeply to be JSON"),
}


@pytest.fixture
async def entsoe():
    fake = lab.FakeEntsoe(TOKEN, {"DE-LU": lab.day_curve("DE-LU", DAY)})
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def energy_charts():
    fake = lab.FakeEnergyCharts({"DE-LU": lab.day_curve("DE-LU", DAY)})
    await fake.start()
    yield fake
    await fake.stop()


@pytest.mark.parametrize("fault", sorted(ENTSOE_ATTACKS))
async def test_entsoe_attacks_are_refused_with_the_cap_named(entsoe: lab.FakeEntsoe, fault: str) -> None:
    provider = EntsoeProvider("entsoe", Secret("test", TOKEN), entsoe.url + "/api", 60.0)
    entsoe.fail(fault)
    try:
        with pytest.raises(ProviderError) as info:
            await provider.fetch("DE-LU", *day_bounds(DAY, BERLIN))
        # The same provider still works for the next, honest answer.
        curve = await provider.fetch("DE-LU", *day_bounds(DAY, BERLIN))
    finally:
        await provider.close()
    reason, words = ENTSOE_ATTACKS[fault]
    assert info.value.reason == reason
    message = str(info.value)
    assert words in message and "entsoe A44 DE-LU" in message
    assert TOKEN not in message and "securityToken" not in message
    assert len(curve) == 96


@pytest.mark.parametrize("fault", sorted(ENERGY_CHARTS_ATTACKS))
async def test_energy_charts_attacks_are_refused(energy_charts: lab.FakeEnergyCharts, fault: str) -> None:
    provider = EnergyChartsProvider("energy_charts", energy_charts.url + "/price", 60.0)
    energy_charts.fail(fault)
    try:
        with pytest.raises(ProviderError) as info:
            await provider.fetch("DE-LU", *day_bounds(DAY, BERLIN))
    finally:
        await provider.close()
    reason, words = ENERGY_CHARTS_ATTACKS[fault]
    assert info.value.reason == reason and words in str(info.value)
    assert "energy_charts DE-LU" in str(info.value)


async def test_a_bombed_provider_falls_back_and_is_counted(entsoe: lab.FakeEntsoe, tmp_path) -> None:
    static = StaticProvider("static", lab.write_profile_yaml(tmp_path / "p.yaml"))
    provider = EntsoeProvider("entsoe", Secret("test", TOKEN), entsoe.url + "/api", 60.0)
    now = datetime(2025, 11, 21, 10, tzinfo=UTC)
    feed = AreaFeed("DE-LU", BERLIN, [provider, static], clock=lambda: now)
    entsoe.fail("gzip_bomb")
    try:
        await feed.refresh()
    finally:
        await provider.close()
    assert feed.curve.source == "static" and feed.has_day(DAY)
    assert feed.errors == {("entsoe", "too_large"): 1}


@pytest.mark.parametrize(
    ("provider", "fault"),
    [("entsoe", f) for f in lab.MEMORY_FAULTS]
    + [("energy_charts", f) for f in ("gzip_bomb", "huge", "deep")],
)
def test_peak_memory_stays_bounded_under_attack(provider: str, fault: str) -> None:
    # A fresh interpreter per attack: ru_maxrss is the process's peak, server and client together.
    out = subprocess.run(
        [sys.executable, "-m", "powerplane.lab.market", "attack", fault, "--provider", provider],
        capture_output=True,
        text=True,
        timeout=240,
        check=True,
    ).stdout
    result = dict(item.split("=", 1) for item in out.strip().splitlines()[-1].removeprefix("RESULT ").split())
    assert result["reason"] in ("too_large", "malformed"), out
    growth = float(result["peak_rss_mib"]) - float(result["baseline_rss_mib"])
    # The attacks inflate to 16 MiB-1 GiB; what the client may hold is its caps, not the body.
    assert growth < 40, out


# --- the incremental parser ---------------------------------------------------------------------


def test_series_cap() -> None:
    body = b"<GL_MarketDocument>" + b"<TimeSeries/>" * (MAX_SERIES + 1) + b"</GL_MarketDocument>"
    with pytest.raises(ProviderError) as info:
        parse_document(body, "test")
    assert info.value.reason == "too_large" and f"more than {MAX_SERIES} TimeSeries" in str(info.value)


def test_unread_elements_and_fields_are_dropped_not_kept() -> None:
    # Thousands of unknown fields and children: counted against the element cap, nothing stored.
    fields = "".join(f"<field{i}>{'v' * 200}</field{i}>" for i in range(5000))
    body = (
        f"<GL_MarketDocument><TimeSeries>{fields}<curveType>A01</curveType></TimeSeries></GL_MarketDocument>"
    )
    doc = parse_document(body.encode(), "test", "quantity")
    assert doc.series[0].fields == {"curveType": "A01"}


def test_a_dtd_is_refused_before_any_entity_is_expanded() -> None:
    with pytest.raises(ProviderError, match="refused hostile XML"):
        parse_document(lab.BILLION_LAUGHS, "test")
    stream = XmlStream("test")
    with pytest.raises(ProviderError, match="refused hostile XML"):
        stream.feed(lab.EXTERNAL_ENTITY)


def test_acknowledgement_reasons_are_bounded() -> None:
    reasons = "".join(f"<Reason><code>999</code><text>{'r' * 250}</text></Reason>" for _ in range(500))
    doc = parse_document(
        f"<Acknowledgement_MarketDocument>{reasons}</Acknowledgement_MarketDocument>".encode(), "t"
    )
    assert len(doc.reasons) == 20
    assert len(doc.acknowledgement_reason()) <= 300


@settings(max_examples=60, deadline=None)
@given(cuts=st.lists(st.integers(min_value=1, max_value=4000), max_size=40))
def test_any_chunking_gives_the_same_curve(cuts: list[int]) -> None:
    source = lab.day_curve("DE-LU", DAY)
    body = lab.publication_document([lab.series_from_curve(source, sequence=1)])
    stream = XmlStream("test")
    offset = 0
    for cut in cuts:
        stream.feed(body[offset : offset + cut])
        offset += cut
    stream.feed(body[offset:])
    curve = parse_prices(stream.close(), "DE-LU")
    assert [(p.start, p.price) for p in curve] == [(p.start, p.price) for p in source]
    assert curve.end == source.end == source.start + timedelta(hours=24)  # type: ignore[operator]

"""The curve model, Energy-Charts JSON, static curves and the CSV store."""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from powerplane.exporters.market.curve import Curve, Period, area_timezone, day_bounds
from powerplane.exporters.market.energycharts import EnergyChartsProvider, parse_prices
from powerplane.exporters.market.files import CsvStore, StaticProvider
from powerplane.exporters.market.provider import NotPublished, ProviderError
from powerplane.lab import market as lab

BERLIN = area_timezone("DE-LU")
T0 = datetime(2025, 11, 21, 10, tzinfo=UTC)
Q = timedelta(minutes=15)


# --- Curve ------------------------------------------------------------------------------------


def test_curve_rejects_overlap_and_naive_times() -> None:
    with pytest.raises(ValueError, match="overlap"):
        Curve("FR", (Period(T0, T0 + Q, 1.0), Period(T0 + timedelta(minutes=10), T0 + 2 * Q, 2.0)))
    with pytest.raises(ValueError, match="timezone-aware"):
        Period(datetime(2025, 1, 1), datetime(2025, 1, 1, 0, 15), 1.0)
    with pytest.raises(ValueError, match="not finite"):
        Period(T0, T0 + Q, float("inf"))


def test_period_lookup_is_start_inclusive_end_exclusive() -> None:
    curve = Curve.uniform("FR", T0, Q, [1.0, 2.0, 3.0])
    assert curve.price_at(T0) == 1.0
    assert curve.price_at(T0 + Q - timedelta(microseconds=1)) == 1.0
    assert curve.price_at(T0 + Q) == 2.0
    assert curve.price_at(T0 + 3 * Q) is None
    assert curve.price_at(T0 - timedelta(seconds=1)) is None
    assert curve.next_period(T0 + Q).price == 3.0  # type: ignore[union-attr]
    assert curve.next_period(T0 + 2 * Q) is None


def test_stats_rank_and_cheapest_window() -> None:
    # Hourly 10, quarter-hourly afterwards: the mean is time-weighted.
    curve = Curve(
        "DE-LU",
        (
            Period(T0, T0 + 4 * Q, 10.0),
            *Curve.uniform("DE-LU", T0 + 4 * Q, Q, [50.0, -20.0, -30.0, 40.0, 0.0, 0.0]).periods,
        ),
    )
    stats = curve.stats()
    assert stats is not None
    assert (stats.min, stats.max, stats.count) == (-30.0, 50.0, 7)
    assert stats.mean == pytest.approx((10 * 60 + (50 - 20 - 30 + 40 + 0 + 0) * 15) / 150)
    # The 30-minute window at T0+1h15 (-20, -30) is the cheapest; one of 1 hour starts at T0+1h15 too.
    start, mean = curve.cheapest_window(T0, timedelta(minutes=30))  # type: ignore[misc]
    assert (start, mean) == (T0 + 5 * Q, -25.0)
    start, mean = curve.cheapest_window(T0, timedelta(hours=1))  # type: ignore[misc]
    assert (start, mean) == (T0 + 5 * Q, pytest.approx((-20 - 30 + 40 + 0) / 4))
    # A window must fit in the data and within the horizon.
    assert curve.cheapest_window(T0, timedelta(hours=3)) is None
    assert curve.cheapest_window(T0 + 6 * Q, timedelta(minutes=30), timedelta(minutes=30)) is not None
    assert curve.cheapest_window(T0 - Q, timedelta(minutes=30)) is None


def test_rank_ratio_ties_rank_alike() -> None:
    day = date(2025, 11, 21)
    start, _end = day_bounds(day, BERLIN)
    prices = [float(i % 4) for i in range(96)]
    curve = Curve.uniform("DE-LU", start, Q, prices)
    assert curve.rank_ratio(start, BERLIN) == 0.0  # price 0: nothing cheaper
    assert curve.rank_ratio(start + 3 * Q, BERLIN) == pytest.approx(72 / 95)  # price 3: 72 cheaper


def test_json_round_trip() -> None:
    curve = Curve.uniform("AT", T0, Q, [1.5, -2.0], "entsoe", T0)
    doc = curve.to_json(area_timezone("AT"))
    assert doc["periods"][0] == {
        "start": "2025-11-21T10:00:00Z",
        "end": "2025-11-21T10:15:00Z",
        "seconds": 900,
        "value": 1.5,
        "price": 1.5,
        "local_start": "2025-11-21T11:00:00+01:00",
    }
    assert Curve.from_json(doc) == curve
    # Either key alone is enough: "price" (documents before "value" existed) or "value".
    for key in ("value", "price"):
        alone = {**doc, "periods": [{k: v for k, v in p.items() if k != key} for p in doc["periods"]]}
        assert Curve.from_json(alone) == curve
    with pytest.raises(ValueError, match="missing or mistyped"):
        Curve.from_json({"area": "AT"})


@given(st.lists(st.floats(min_value=-500, max_value=4000, allow_nan=False), min_size=1, max_size=40))
def test_cheapest_window_is_no_dearer_than_any_window(prices: list[float]) -> None:
    curve = Curve.uniform("FR", T0, Q, prices)
    best = curve.cheapest_window(T0, 2 * Q)
    if len(prices) < 2:
        assert best is None
        return
    assert best is not None
    means = [(prices[i] + prices[i + 1]) / 2 for i in range(len(prices) - 1)]
    assert best[1] == pytest.approx(min(means))


# --- Energy-Charts ----------------------------------------------------------------------------


def test_energy_charts_infers_resolution_per_day() -> None:
    # 30 Sep 2025 hourly, 1 Oct 2025 quarter-hourly (the switch to 15-minute periods).
    hourly = lab.day_curve("DE-LU", date(2025, 9, 30), step=timedelta(hours=1))
    quarter = lab.day_curve("DE-LU", date(2025, 10, 1))
    doc = lab.energy_charts_document(hourly.merge(quarter))
    curve = parse_prices(doc, "DE-LU")
    assert len(curve.day(date(2025, 9, 30), BERLIN)) == 24
    assert len(curve.day(date(2025, 10, 1), BERLIN)) == 96
    assert curve.has_day(date(2025, 9, 30), BERLIN) and curve.has_day(date(2025, 10, 1), BERLIN)


def test_energy_charts_nulls_are_gaps_and_gaps_do_not_stretch_periods() -> None:
    stamps = [int((T0 + i * Q).timestamp()) for i in range(8)]
    del stamps[3:5]  # a missing half hour
    prices: list[float | None] = [1.0, 2.0, None, 4.0, 5.0, 6.0]
    curve = parse_prices({"unix_seconds": stamps, "price": prices, "unit": "EUR / MWh"}, "DE-LU")
    assert [(p.start - T0) // Q for p in curve] == [0, 1, 5, 6, 7]
    assert all(p.seconds == 900 for p in curve)


@pytest.mark.parametrize(
    ("doc", "needle"),
    [
        ([], "not a JSON object"),
        ({"unix_seconds": [1], "price": [1, 2]}, "has 1 entries but 'price' has 2"),
        ({"unix_seconds": "x", "price": []}, "must be lists"),
        ({"unix_seconds": [1, "2"], "price": [1, 2]}, "unix_seconds[1]"),
        ({"unix_seconds": [0, 900], "price": [1, "x"]}, "price[1]"),
        ({"unix_seconds": [0, 900], "price": [1, True]}, "price[1]"),
        ({"unix_seconds": [900, 0], "price": [1, 2]}, "strictly increasing"),
        ({"unix_seconds": [1e300], "price": [1]}, "out of range"),
        ({"unix_seconds": [0], "price": [1], "unit": "EUR / kWh"}, "not EUR/MWh"),
    ],
)
def test_energy_charts_malformed(doc: object, needle: str) -> None:
    with pytest.raises(ProviderError) as info:
        parse_prices(doc, "DE-LU")
    assert info.value.reason == "malformed"
    assert needle in str(info.value)


def test_energy_charts_empty_is_not_published() -> None:
    with pytest.raises(NotPublished):
        parse_prices({"unix_seconds": [], "price": []}, "DE-LU")
    with pytest.raises(NotPublished):
        parse_prices({"unix_seconds": [0], "price": [None]}, "DE-LU")


async def test_energy_charts_provider_against_fake() -> None:
    day = date(2025, 11, 21)
    fake = lab.FakeEnergyCharts({"DE-LU": lab.day_curve("DE-LU", day)}, stall_seconds=5.0)
    await fake.start()
    provider = EnergyChartsProvider("ec", fake.url + "/price", timeout=1.0)
    try:
        curve = await provider.fetch("DE-LU", *day_bounds(day, BERLIN))
        assert len(curve) == 96 and curve.source == "ec"
        assert fake.requests[-1]["bzn"] == "DE-LU"
        with pytest.raises(NotPublished):
            await provider.fetch("DE-LU", *day_bounds(day + timedelta(days=1), BERLIN))
        for fault, reason in (("429", "rate_limited"), ("503", "unavailable"), ("malformed", "malformed")):
            fake.fail(fault)
            with pytest.raises(ProviderError) as info:
                await provider.fetch("DE-LU", *day_bounds(day, BERLIN))
            assert info.value.reason == reason
        fake.fail("timeout")
        with pytest.raises(ProviderError) as info:
            await provider.fetch("DE-LU", *day_bounds(day, BERLIN))
        assert info.value.reason == "timeout"
    finally:
        await provider.close()
        await fake.stop()


# --- static curves ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "count"), [(date(2026, 3, 29), 92), (date(2026, 10, 25), 100), (date(2026, 7, 1), 96)]
)
async def test_static_profile_follows_the_wall_clock_on_dst_days(
    tmp_path: Path, day: date, count: int
) -> None:
    provider = StaticProvider("static", lab.write_profile_yaml(tmp_path / "p.yaml"))
    curve = await provider.fetch("DE-LU", *day_bounds(day, BERLIN))
    assert len(curve) == count
    shape = lab.profile()
    for p in curve:
        local = p.start.astimezone(BERLIN)
        assert p.price == shape[(local.hour * 60 + local.minute) // 15]


async def test_static_periods_override_profile_and_csv(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "profile: [" + ", ".join(["10"] * 24) + "]\nresolution_minutes: 60\n"
        "periods:\n  - {start: '2025-11-21T10:00:00Z', end: '2025-11-21T10:15:00Z', price: 999}\n"
    )
    curve = await StaticProvider("s", path).fetch("DE-LU", T0, T0 + timedelta(hours=2))
    assert [(p.seconds, p.price) for p in curve] == [(900, 999.0), (3600, 10.0)]
    csv_path = tmp_path / "c.csv"
    csv_path.write_text("start,price\n2025-11-21T11:00:00+01:00,42.5\n2025-11-21T11:15:00+01:00,-1\n")
    curve = await StaticProvider("s", csv_path).fetch("DE-LU", T0, T0 + timedelta(hours=1))
    assert [p.price for p in curve] == [42.5, -1.0]


async def test_static_csv_skips_comments_and_counts_lines_of_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text(
        "# prices in EUR/MWh\nstart,price\n\n2025-11-21T11:00:00+01:00,42.5\n  # noon\n"
        "2025-11-21T11:15:00+01:00,-1\n"
    )
    curve = await StaticProvider("s", path).fetch("DE-LU", T0, T0 + timedelta(hours=1))
    assert [p.price for p in curve] == [42.5, -1.0]
    path.write_text(path.read_text() + "# late\n2025-11-21T11:30:00+01:00,high\n")
    with pytest.raises(ProviderError, match=r"c\.csv: line 8: could not convert"):
        await StaticProvider("s", path).fetch("DE-LU", T0, T0 + timedelta(hours=1))


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("- 1\n", "is a mapping"),
        ("profile: [1, 2]\n", "profile has 2 prices"),
        ("profile: [a]\n", "list of numbers"),
        ("periods: [{start: '2025-11-21T10:00:00', price: 1}]\n", "naive"),
        ("bogus: 1\nprofile: []\n", "unknown key"),
        ("timezone: Mars/Olympus\nprofile: []\n", "unknown timezone"),
        ("{}\n", "neither a profile nor periods"),
        ("profile: [1\n", "invalid YAML"),
    ],
)
async def test_static_malformed(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ProviderError) as info:
        await StaticProvider("s", path).fetch("DE-LU", T0, T0 + Q)
    assert needle in str(info.value)


# --- CSV store --------------------------------------------------------------------------------


async def test_store_round_trip_and_atomic_day_files(tmp_path: Path) -> None:
    day = date(2026, 10, 25)
    store = CsvStore("store", tmp_path)
    curve = lab.day_curve("DE-LU", day)
    assert store.write_day(Curve("DE-LU", curve.periods, "entsoe"), day)
    path = tmp_path / "DE-LU" / "2026-10-25.csv"
    assert path.read_text().splitlines()[0] == "start,end,price_eur_per_mwh,source"
    assert [p.name for p in tmp_path.joinpath("DE-LU").iterdir()] == ["2026-10-25.csv"]
    back = CsvStore("store", tmp_path).read_day("DE-LU", day)
    assert back is not None and back.periods == curve.periods and len(back) == 100
    assert back.source == "entsoe"
    # An incomplete day is not stored.
    assert not store.write_day(Curve("DE-LU", curve.periods[:-1]), day)
    assert store.read_day("DE-LU", day + timedelta(days=1)) is None


def test_store_damaged_file_and_path_traversal(tmp_path: Path) -> None:
    store = CsvStore("store", tmp_path)
    (tmp_path / "FR").mkdir()
    (tmp_path / "FR" / "2025-11-21.csv").write_text("start,end,price_eur_per_mwh\nnot-a-time,x,1\n")
    with pytest.raises(ProviderError, match="line 2"):
        store.read_day("FR", date(2025, 11, 21))
    with pytest.raises(ProviderError, match="not a bidding-zone code"):
        store.read_day("../etc", date(2025, 11, 21))
    assert not os.path.exists(tmp_path.parent / "etc")


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@given(
    st.fixed_dictionaries(
        {
            "unix_seconds": st.lists(st.integers(0, 2**32) | st.floats() | st.none(), max_size=8),
            "price": _json,
        },
        optional={"unit": _json},
    )
    | _json
)
def test_energy_charts_arbitrary_json_fails_cleanly(doc: object) -> None:
    try:
        curve = parse_prices(doc, "DE-LU")
    except ProviderError:
        return
    assert all(p.end > p.start for p in curve)

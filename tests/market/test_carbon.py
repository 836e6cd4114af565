"""Grid carbon intensity: emission factors, A75 generation documents, the computation, providers."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from powerplane.exporters.market.carbon import (
    default_factors,
    factor_sources,
    factor_table,
    intensity,
)
from powerplane.exporters.market.curve import Curve, Period, area_timezone, day_bounds
from powerplane.exporters.market.electricitymaps import ElectricityMapsProvider, parse_intensities
from powerplane.exporters.market.entsoe import UNTYPED, EntsoeCarbonProvider, parse_generation
from powerplane.exporters.market.files import CARBON_KEYS, StaticProvider
from powerplane.exporters.market.provider import NotPublished, ProviderError
from powerplane.exporters.runtime import Secret
from powerplane.lab import market as lab

ROOT = Path(__file__).resolve().parents[2]
BERLIN = area_timezone("DE-LU")
DAY = date(2026, 1, 15)
START, END = day_bounds(DAY, BERLIN)
Q = timedelta(minutes=15)
TOKEN = "carbon-test-token"
FACTORS = factor_table()


def curve(values: list[float | None], step: timedelta = Q, start: datetime = START) -> Curve:
    periods = [
        Period(start + i * step, start + (i + 1) * step, v) for i, v in enumerate(values) if v is not None
    ]
    return Curve("DE-LU", tuple(periods))


# --- emission factors -----------------------------------------------------------------------------


def test_every_production_type_b01_to_b20_has_a_cited_factor() -> None:
    factors = default_factors()
    assert sorted(factors) == [f"B{i:02d}" for i in range(1, 21)]
    sources = factor_sources()
    for factor in factors.values():
        assert factor.source in sources, factor
        assert 0 < factor.grams_per_kwh < 1500 and factor.name and factor.note
    for source in sources.values():
        assert source.url.startswith("https://") and len(source.title) > 40
    # The IPCC AR5 lifecycle medians the table cites.
    assert {c: factors[c].grams_per_kwh for c in ("B04", "B05", "B14", "B19", "B18", "B09")} == {
        "B04": 490,
        "B05": 820,
        "B14": 12,
        "B19": 11,
        "B18": 12,
        "B09": 38,
    }


def test_the_docs_table_lists_every_factor_as_shipped() -> None:
    text = (ROOT / "docs" / "market.md").read_text()
    rows = dict(re.findall(r"^\| `(B\d\d)` \| [^|]+ \| (\d+) \|", text, re.MULTILINE))
    assert rows == {code: f"{f.grams_per_kwh:g}" for code, f in default_factors().items()}


def test_overrides_replace_and_add_codes() -> None:
    table = factor_table({"B02": 1100.0, "B25": 0.0})
    assert table["B02"] == 1100.0 and table["B25"] == 0.0 and table["B04"] == 490


# --- the computation -----------------------------------------------------------------------------


def test_intensity_is_the_generation_weighted_mean_of_the_factors() -> None:
    generation = {"B02": curve([1000.0, 3000.0]), "B19": curve([3000.0, 1000.0]), "B16": curve([0.0, 0.0])}
    result = intensity("DE-LU", generation, FACTORS, START, END)
    assert [p.price for p in result.curve] == [
        round((1000 * 820 + 3000 * 11) / 4000, 3),
        round((3000 * 820 + 1000 * 11) / 4000, 3),
    ]
    assert [p.start for p in result.curve] == [START, START + Q]
    assert result.unknown_types == () and result.gaps == 0


def test_a_type_missing_from_the_latest_periods_makes_them_gaps_not_a_clean_grid() -> None:
    # Lignite is 50 % of generation and absent from the last two quarter-hours (published late).
    generation = {"B02": curve([5000.0, 5000.0, None, None]), "B19": curve([5000.0] * 4)}
    result = intensity("DE-LU", generation, FACTORS, START, END)
    assert len(result.curve) == 2 and result.gaps == 2
    assert result.curve.end == START + 2 * Q


def test_a_small_missing_type_is_tolerated_within_the_coverage() -> None:
    # Run-of-river is 1 % of generation: missing it still covers 99 %.
    generation = {"B02": curve([5000.0, 5000.0]), "B19": curve([4900.0, 4900.0]), "B11": curve([100.0, None])}
    result = intensity("DE-LU", generation, FACTORS, START, END)
    assert len(result.curve) == 2
    assert result.curve.periods[1].price == round((5000 * 820 + 4900 * 11) / 9900, 3)


def test_unknown_codes_count_as_uncovered_generation() -> None:
    generation = {"B04": curve([9000.0, 9000.0]), "B99": curve([100.0, 5000.0])}
    result = intensity("DE-LU", generation, FACTORS, START, END)
    assert result.unknown_types == ("B99",)
    # 1 % unknown: computed from the known part; 36 % unknown: a gap.
    assert [p.price for p in result.curve] == [490.0] and result.gaps == 1
    # With a factor for it (a site override), the same document is complete.
    overridden = intensity("DE-LU", generation, factor_table({"B99": 0.0}), START, END)
    assert len(overridden.curve) == 2 and overridden.unknown_types == ()


def test_mixed_resolutions_are_computed_at_the_finest() -> None:
    generation = {"B04": curve([1000.0], timedelta(hours=1)), "B19": curve([1000.0, 2000.0, 3000.0, 4000.0])}
    result = intensity("DE-LU", generation, FACTORS, START, END)
    assert [p.seconds for p in result.curve] == [900] * 4
    assert [p.price for p in result.curve] == [
        round((1000 * 490 + w * 11) / (1000 + w), 3) for w in (1000, 2000, 3000, 4000)
    ]


def test_negative_generation_is_no_generation() -> None:
    generation = {"B10": curve([-500.0]), "B04": curve([1000.0])}
    assert [p.price for p in intensity("DE-LU", generation, FACTORS, START, END).curve] == [490.0]


def test_no_generation_at_all_is_a_gap() -> None:
    result = intensity("DE-LU", {"B16": curve([0.0, 0.0])}, FACTORS, START, END)
    assert not result.curve and result.gaps == 2


def test_an_absurd_span_is_refused() -> None:
    generation = {"B04": curve([1.0] * 10, timedelta(minutes=1)), "B19": curve([1.0], timedelta(days=30))}
    with pytest.raises(ProviderError) as info:
        intensity("DE-LU", generation, FACTORS, START, START + timedelta(days=30))
    assert info.value.reason == "too_large"


@settings(max_examples=80, deadline=None)
@given(
    st.dictionaries(st.sampled_from(sorted(FACTORS)), st.lists(st.floats(0, 40000), min_size=1, max_size=8))
)
def test_intensity_stays_within_the_factors(mix: dict[str, list[float]]) -> None:
    generation = {code: curve(list(values)) for code, values in mix.items()}
    result = intensity("DE-LU", generation, FACTORS, START, END, min_coverage=0.5)
    for p in result.curve:
        assert min(FACTORS.values()) - 1e-6 <= p.price <= max(FACTORS.values()) + 1e-6


# --- A75 documents -------------------------------------------------------------------------------


def mix(hours: int = 4) -> dict[str, Curve]:
    return lab.generation_mix("DE-LU", START, START + timedelta(hours=hours))


def document(fault: str | None = None, hours: int = 4) -> bytes:
    pumped = lab.pumping("DE-LU", START, START + timedelta(hours=hours))
    return lab.generation_document(lab.faulty_generation(mix(hours), fault, pumped), "10Y1001A1001A82H")


def test_generation_document_per_production_type_without_consumption() -> None:
    generation = parse_generation(document(), "DE-LU")
    assert sorted(generation) == sorted(lab.GENERATION_SHAPES)
    truth = mix()
    for code, series in generation.items():
        assert [p.price for p in series] == [p.price for p in truth[code]], code
    # The pumping series (outBiddingZone) is consumption: B10 is only the generating one.
    assert [p.price for p in generation["B10"]] == [p.price for p in truth["B10"]]


def test_computed_intensity_matches_the_hand_computed_mix() -> None:
    result = intensity("DE-LU", parse_generation(document(), "DE-LU"), FACTORS, START, END)
    assert len(result.curve) == 16
    for p in result.curve:
        assert p.price == pytest.approx(lab.mix_intensity(mix(), FACTORS, p.start), abs=1e-3)


@pytest.mark.parametrize(
    ("fault", "periods", "unknown"),
    [
        ("missing_psr", 12, ()),  # lignite absent from the last hour: 4 gaps
        ("unknown_psr", 0, ("B99",)),  # 40 GW without a factor: nothing covered enough
        ("untyped", 0, (UNTYPED,)),
        ("gaps", 14, ()),  # positions 3 and 4 missing everywhere
        ("mixed_resolution", 16, ()),
    ],
)
def test_generation_faults(fault: str, periods: int, unknown: tuple[str, ...]) -> None:
    result = intensity("DE-LU", parse_generation(document(fault), "DE-LU"), FACTORS, START, END)
    assert len(result.curve) == periods and result.unknown_types == unknown
    if fault == "mixed_resolution":
        hourly_gas = lab.hourly(mix()["B04"])
        expected = dict(mix())
        expected["B04"] = Curve("DE-LU", tuple(p for h in hourly_gas for p in _quarters(h)))
        for p in result.curve:
            assert p.price == pytest.approx(lab.mix_intensity(expected, FACTORS, p.start), abs=1e-3)


def _quarters(hour: Period) -> list[Period]:
    return [Period(hour.start + i * Q, hour.start + (i + 1) * Q, hour.price) for i in range(4)]


@pytest.mark.parametrize(
    ("body", "error", "needle"),
    [
        (lab.acknowledgement_document("No matching data found"), NotPublished, "No matching data"),
        (b"<GL_MarketDocument></GL_MarketDocument>", NotPublished, "without generation points"),
        (lab.publication_document([]), ProviderError, "unexpected document"),
        (document().replace(b"MAW", b"KWH"), ProviderError, "is not MAW"),
        (document().replace(b"<quantity>", b"<quantity>x", 1), ProviderError, "non-numeric"),
        (document().replace(b"PT15M", b"P1D", 1), ProviderError, "resolution"),
    ],
)
def test_malformed_generation_documents(body: bytes, error: type[Exception], needle: str) -> None:
    with pytest.raises(error) as info:
        parse_generation(body, "DE-LU")
    assert needle in str(info.value)


# --- the providers against the lab ---------------------------------------------------------------


@pytest.fixture
async def fake_entsoe():
    start = START - timedelta(hours=6)
    fake = lab.FakeEntsoe(
        TOKEN,
        {},
        generation={"DE-LU": lab.generation_mix("DE-LU", start, END)},
        pumped={"DE-LU": lab.pumping("DE-LU", start, END)},
        clock=lambda: START + timedelta(hours=10, minutes=7),
        stall_seconds=5.0,
    )
    await fake.start()
    yield fake
    await fake.stop()


def entsoe_provider(fake: lab.FakeEntsoe, **kwargs: object) -> EntsoeCarbonProvider:
    return EntsoeCarbonProvider("entsoe", Secret("t", TOKEN), fake.url + "/api", 5.0, **kwargs)  # type: ignore[arg-type]


async def test_entsoe_carbon_provider_asks_a75_a16_and_lags_like_the_platform(
    fake_entsoe: lab.FakeEntsoe,
) -> None:
    provider = entsoe_provider(fake_entsoe)
    try:
        result = await provider.fetch("DE-LU", START, END)
    finally:
        await provider.close()
    request = fake_entsoe.requests[-1]
    assert request["documentType"] == "A75" and request["processType"] == "A16"
    assert request["in_Domain"] == "10Y1001A1001A82H"
    # Published up to an hour before the fake's now (10:07 after midnight): nine hours.
    assert result.end == START + timedelta(hours=9) and len(result) == 36
    assert result.source == "entsoe"


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("ack", "no_data"),
        ("unknown_psr", "no_data"),
        ("429", "rate_limited"),
        ("401", "auth"),
        ("gzip_bomb", "too_large"),
    ],
)
async def test_entsoe_carbon_provider_faults(fake_entsoe: lab.FakeEntsoe, fault: str, reason: str) -> None:
    provider = entsoe_provider(fake_entsoe)
    fake_entsoe.fail(fault)
    try:
        with pytest.raises(ProviderError) as info:
            await provider.fetch("DE-LU", START, END)
    finally:
        await provider.close()
    assert info.value.reason == reason and TOKEN not in str(info.value)


async def test_unknown_codes_are_logged_once(
    fake_entsoe: lab.FakeEntsoe, caplog: pytest.LogCaptureFixture
) -> None:
    provider = entsoe_provider(fake_entsoe, min_coverage=0.5)
    try:
        for _ in range(3):
            fake_entsoe.fail("unknown_psr")
            await provider.fetch("DE-LU", START, END)
    finally:
        await provider.close()
    lines = [r for r in caplog.records if "without an emission factor" in r.getMessage()]
    assert len(lines) == 1


@pytest.fixture
async def fake_maps():
    hourly = Curve(
        "DE-LU",
        tuple(
            Period(START + timedelta(hours=h), START + timedelta(hours=h + 1), 300.0 + h)
            for h in range(-24, 48)
        ),
    )
    fake = lab.FakeElectricityMaps(
        "maps-token", {"DE": hourly}, clock=lambda: START + timedelta(hours=10, minutes=30)
    )
    await fake.start()
    yield fake
    await fake.stop()


async def test_electricity_maps_history_and_forecast(fake_maps: lab.FakeElectricityMaps) -> None:
    provider = ElectricityMapsProvider(
        "electricity_maps", Secret("t", "maps-token"), fake_maps.url + "/v3", 5.0, forecast=True
    )
    try:
        result = await provider.fetch("DE-LU", START - timedelta(hours=3), END)
    finally:
        await provider.close()
    assert [r["zone"] for r in fake_maps.requests] == ["DE", "DE"]
    assert {r["path"] for r in fake_maps.requests} == {
        "/v3/carbon-intensity/history",
        "/v3/carbon-intensity/forecast",
    }
    assert result.price_at(START + timedelta(hours=10, minutes=40)) == 310.0  # history up to now
    assert result.price_at(START + timedelta(hours=15)) == 315.0  # forecast
    assert result.start == START - timedelta(hours=3) and all(p.seconds == 3600 for p in result)


@pytest.mark.parametrize(
    ("fault", "reason"),
    [("401", "auth"), ("429", "rate_limited"), ("503", "unavailable"), ("malformed", "malformed"),
     ("empty", "no_data"), ("gzip_bomb", "too_large"), ("deep", "malformed")],
)  # fmt: skip
async def test_electricity_maps_faults(fake_maps: lab.FakeElectricityMaps, fault: str, reason: str) -> None:
    provider = ElectricityMapsProvider(
        "electricity_maps", Secret("t", "maps-token"), fake_maps.url + "/v3", 5.0
    )
    fake_maps.fail(fault)
    try:
        with pytest.raises(ProviderError) as info:
            await provider.fetch("DE-LU", START, END)
    finally:
        await provider.close()
    assert info.value.reason == reason and "maps-token" not in str(info.value)
    if fault == "429":
        assert info.value.retry_after == 120


async def test_electricity_maps_wrong_token(fake_maps: lab.FakeElectricityMaps) -> None:
    provider = ElectricityMapsProvider("em", Secret("t", "not-the-token"), fake_maps.url + "/v3", 5.0)
    try:
        with pytest.raises(ProviderError) as info:
            await provider.fetch("DE-LU", START, END)
    finally:
        await provider.close()
    assert info.value.reason == "auth" and "not-the-token" not in str(info.value)


@pytest.mark.parametrize(
    ("doc", "needle"),
    [
        ([], "not a JSON object"),
        ({"history": {}}, "must be a list"),
        ({"history": [1]}, "history[0] is not an object"),
        ({"history": [{"carbonIntensity": "x", "datetime": "2026-01-15T10:00:00Z"}]}, "is not a number"),
        ({"history": [{"carbonIntensity": True, "datetime": "2026-01-15T10:00:00Z"}]}, "is not a number"),
        ({"history": [{"carbonIntensity": -3, "datetime": "2026-01-15T10:00:00Z"}]}, "outside 0..5000"),
        ({"history": [{"carbonIntensity": 1e9, "datetime": "2026-01-15T10:00:00Z"}]}, "outside 0..5000"),
        ({"history": [{"carbonIntensity": 300, "datetime": 17}]}, "datetime is not a string"),
        ({"history": [{"carbonIntensity": 300, "datetime": "2026-01-15T10:00:00"}]}, "with an offset"),
        ({"history": [{"carbonIntensity": 300, "datetime": "yesterday"}]}, "not an instant"),
        (
            {"history": [{"carbonIntensity": 3, "datetime": "2026-01-15T10:00:00Z"},
                         {"carbonIntensity": 4, "datetime": "2026-01-15T10:30:00Z"}]},
            "overlap",
        ),
        ({"history": [{"carbonIntensity": 1, "datetime": "2026-01-15T10:00:00Z"}] * 2001}, "at most 2000"),
    ],
)  # fmt: skip
def test_electricity_maps_answers_are_checked_field_by_field(doc: object, needle: str) -> None:
    with pytest.raises(ProviderError) as info:
        parse_intensities(doc, "history", "DE-LU", "em DE-LU", "em")
    assert needle in str(info.value)


def test_electricity_maps_nulls_are_gaps() -> None:
    doc = {"history": [{"carbonIntensity": None, "datetime": "2026-01-15T10:00:00Z"},
                       {"carbonIntensity": 250.5, "datetime": "2026-01-15T11:00:00.000Z"}]}  # fmt: skip
    periods = parse_intensities(doc, "history", "DE-LU", "em", "em")
    assert [(p.start.hour, p.price) for p in periods] == [(11, 250.5)]


async def test_static_carbon_curves(tmp_path: Path) -> None:
    profile = StaticProvider(
        "static", lab.carbon_profile_yaml(tmp_path / "c.yaml"), timedelta(hours=1), value_keys=CARBON_KEYS
    )
    curve = await profile.fetch("DE-LU", START, END)
    assert len(curve) == 24 and curve.price_at(START + timedelta(hours=13)) == pytest.approx(230.0)
    csv = tmp_path / "c.csv"
    csv.write_text("start,end,grams_per_kwh\n2026-01-15T10:00:00Z,2026-01-15T11:00:00Z,321.5\n")
    rows = await StaticProvider("csv", csv, value_keys=CARBON_KEYS).fetch("DE-LU", START, END)
    assert [p.price for p in rows] == [321.5]
    csv.write_text("start,price\n2026-01-15T10:00:00Z,1\n")
    with pytest.raises(ProviderError, match="'grams_per_kwh'"):
        await StaticProvider("csv2", csv, value_keys=CARBON_KEYS).fetch("DE-LU", START, END)

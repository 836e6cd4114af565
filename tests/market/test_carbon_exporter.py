"""The carbon feed, its metrics and curve endpoint, its config, the controller signal, end to end."""

from __future__ import annotations

import contextlib
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from click.testing import CliRunner
from prometheus_client import generate_latest

from powerplane.cli import main
from powerplane.exporters.market import KIND, CarbonFeed, CarbonPolicy, Curve, make_server, render_carbon
from powerplane.exporters.market.carbon import factor_table
from powerplane.exporters.market.curve import Period, area_timezone, day_bounds
from powerplane.exporters.market.feed import Market
from powerplane.exporters.market.provider import NotPublished, Provider, ProviderError
from powerplane.exporters.runtime import ConfigError
from powerplane.lab import market as lab
from tests.helpers import parse, undocumented, value

BERLIN = area_timezone("DE-LU")
DAY = date(2026, 1, 15)
MIDNIGHT = day_bounds(DAY, BERLIN)[0]
NOW = MIDNIGHT + timedelta(hours=11, minutes=7)  # 11:07 local, 10:07Z
Q = timedelta(minutes=15)
TOKEN = "carbon-exporter-token"
FACTORS = factor_table()


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class Scripted(Provider):
    """A carbon provider whose answer the test sets."""

    def __init__(self, name: str, curve: Curve | None, error: ProviderError | None = None) -> None:
        super().__init__(name)
        self.curve, self.error, self.calls = curve, error, 0

    async def fetch(self, area: str, start: datetime, end: datetime) -> Curve:
        self.calls += 1
        if self.error is not None:
            raise self.error
        part = self.curve.slice(start, end) if self.curve else None
        if not part:
            raise NotPublished(f"{self.name}: nothing")
        return Curve(area, part.periods, self.name)


def measured(until: datetime, value: float = 300.0) -> Curve:
    """Quarter-hourly intensities from the previous evening up to ``until``, rising by one per period."""
    start = MIDNIGHT - timedelta(hours=6)
    count = int((until - start) / Q)
    return Curve("DE-LU", tuple(Period(start + i * Q, start + (i + 1) * Q, value + i) for i in range(count)))


# --- the feed ----------------------------------------------------------------------------------


async def test_the_first_provider_with_a_current_value_wins() -> None:
    clock = Clock(NOW)
    entsoe = Scripted("entsoe", measured(NOW - timedelta(hours=1)))
    static = Scripted("static", measured(NOW + timedelta(days=1), 500.0))
    feed = CarbonFeed("DE-LU", BERLIN, [entsoe, static], clock=clock)
    await feed.refresh()
    assert feed.curve.source == "entsoe" and static.calls == 0
    current = feed.state().current(NOW)
    assert current is not None and current.end == NOW.replace(minute=0) - timedelta(hours=1)
    assert feed.next_refresh == NOW + timedelta(minutes=15)
    # The window: the local day so far and at least max_age back, through tomorrow.
    assert feed.curve.start == MIDNIGHT and feed.errors == {}


async def test_a_stale_answer_falls_through_and_is_counted() -> None:
    clock = Clock(NOW)
    late = Scripted("entsoe", measured(NOW - timedelta(hours=5)))  # older than max_age (3 h)
    static = Scripted("static", measured(NOW + timedelta(days=1), 500.0))
    feed = CarbonFeed("DE-LU", BERLIN, [late, static], clock=clock)
    await feed.refresh()
    assert feed.curve.source == "static"
    assert feed.errors == {("entsoe", "stale"): 1}
    assert feed.state().current(NOW).contains(NOW)  # type: ignore[union-attr]


async def test_failures_back_off_and_the_held_value_serves_until_it_is_too_old() -> None:
    clock = Clock(NOW)
    entsoe = Scripted("entsoe", measured(NOW - timedelta(hours=1)))
    feed = CarbonFeed("DE-LU", BERLIN, [entsoe], CarbonPolicy(retry_min=60, retry_max=600), clock=clock)
    await feed.refresh()
    held = feed.state().current(NOW)
    entsoe.error = ProviderError("entsoe: HTTP 503", "unavailable", retry_after=120)
    clock.now = NOW + timedelta(minutes=15)
    await feed.refresh()
    assert feed.errors == {("entsoe", "unavailable"): 1}
    assert feed.state().current(clock.now) == held  # still within max_age
    assert feed.next_refresh == clock.now + timedelta(seconds=120)  # Retry-After over 60 s
    clock.now = NOW + timedelta(hours=2, minutes=30)  # the held value is now 3.5 h old
    await feed.refresh()
    assert feed.state().current(clock.now) is None
    assert feed.errors == {("entsoe", "unavailable"): 2}


async def test_a_provider_bug_is_a_counted_failure_not_a_dead_feed() -> None:
    class Buggy(Provider):
        async def fetch(self, area: str, start: datetime, end: datetime) -> Curve:
            raise KeyError("boom")

    feed = CarbonFeed(
        "DE-LU", BERLIN, [Buggy("buggy"), Scripted("static", measured(NOW + Q))], clock=Clock(NOW)
    )
    await feed.refresh()
    assert feed.errors == {("buggy", "other"): 1} and feed.curve.source == "static"


# --- metrics -------------------------------------------------------------------------------------


class _Families:
    def __init__(self, market: Market, now: datetime) -> None:
        self.market, self.now = market, now

    def collect(self) -> Any:
        return render_carbon(self.now, self.market.carbon_states())


def scrape(market: Market, now: datetime) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    text = generate_latest(_Families(market, now)).decode()  # type: ignore[arg-type]
    assert undocumented(text) == set()
    return parse(text)


def carbon_config(tmp_path: Path, providers: list[dict[str, Any]], **carbon: Any) -> Any:
    curve = lab.write_profile_yaml(tmp_path / "prices.yaml")
    doc = {
        "areas": ["DE-LU"],
        "providers": [{"type": "static", "path": str(curve)}],
        "carbon": {"providers": providers, **carbon},
    }
    return KIND.load_text(yaml.safe_dump(doc))


@pytest.fixture
async def fake():
    start = MIDNIGHT - timedelta(hours=6)
    end = MIDNIGHT + timedelta(days=2)
    server = lab.FakeEntsoe(
        TOKEN,
        {},
        generation={"DE-LU": lab.generation_mix("DE-LU", start, end)},
        pumped={"DE-LU": lab.pumping("DE-LU", start, end)},
        clock=lambda: NOW,
    )
    await server.start()
    yield server
    await server.stop()


def entsoe_config(
    tmp_path: Path, fake: lab.FakeEntsoe, monkeypatch: pytest.MonkeyPatch, **carbon: Any
) -> Any:
    monkeypatch.setenv("CARBON_TOKEN", TOKEN)
    providers = [
        {"type": "entsoe", "url": fake.url + "/api", "token": {"env": "CARBON_TOKEN"}},
        {"type": "static", "path": str(lab.carbon_profile_yaml(tmp_path / "carbon.yaml"))},
    ]
    return carbon_config(tmp_path, providers, **carbon)


async def test_metrics_from_entsoe_generation(
    fake: lab.FakeEntsoe, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = entsoe_config(tmp_path, fake, monkeypatch)
    _server, market = make_server(config, Clock(NOW))
    try:
        await market.refresh_all()
        s = scrape(market, NOW)
    finally:
        await market.stop()
    truth = lab.generation_mix("DE-LU", MIDNIGHT - timedelta(hours=6), NOW)
    # Published up to an hour before now (09:07Z): the newest period is 08:45-09:00Z.
    newest = NOW.replace(minute=0) - timedelta(hours=1) - Q
    expected = lab.mix_intensity(truth, FACTORS, newest)
    assert value(s, "powerplane_grid_carbon_intensity_grams_per_kwh", area="DE-LU") == pytest.approx(
        expected, abs=1e-3
    )
    assert value(s, "powerplane_grid_carbon_intensity_data_age_seconds") == (NOW - newest - Q).total_seconds()
    assert value(s, "powerplane_grid_carbon_source_info", provider="entsoe") == 1
    # Today so far: from 00:00 local (23:00Z) to 09:00Z, 40 quarter-hours.
    assert value(s, "powerplane_grid_carbon_intensity_day_periods", day="today") == 40
    today = [lab.mix_intensity(truth, FACTORS, MIDNIGHT + i * Q) for i in range(40)]
    assert value(s, "powerplane_grid_carbon_intensity_day_max_grams_per_kwh", day="today") == pytest.approx(
        max(today), abs=1e-3
    )
    assert value(s, "powerplane_grid_carbon_intensity_day_mean_grams_per_kwh", day="today") == pytest.approx(
        sum(today) / 40, abs=1e-3
    )
    # Measured data says nothing of the future: no next period, horizons or cleanest windows.
    for name in ("next_grams_per_kwh", "ahead_grams_per_kwh"):
        assert f"powerplane_grid_carbon_intensity_{name}" not in s
    assert "powerplane_grid_carbon_cleanest_window_grams_per_kwh" not in s


async def test_metrics_from_a_static_profile_look_ahead(tmp_path: Path) -> None:
    providers = [{"type": "static", "path": str(lab.carbon_profile_yaml(tmp_path / "c.yaml"))}]
    _server, market = make_server(carbon_config(tmp_path, providers), Clock(NOW))
    try:
        await market.refresh_all()
        s = scrape(market, NOW)
    finally:
        await market.stop()
    profile = yaml.safe_load((tmp_path / "c.yaml").read_text())["profile"]
    assert value(s, "powerplane_grid_carbon_intensity_grams_per_kwh") == profile[11]  # 11:07 local
    assert value(s, "powerplane_grid_carbon_intensity_next_grams_per_kwh") == profile[12]
    assert value(s, "powerplane_grid_carbon_intensity_ahead_grams_per_kwh", horizon="3h") == profile[14]
    assert value(s, "powerplane_grid_carbon_intensity_data_age_seconds") == 0
    assert len(s["powerplane_grid_carbon_intensity_ahead_grams_per_kwh"]) == 10
    start = value(s, "powerplane_grid_carbon_cleanest_window_start_timestamp_seconds", window="1h")
    assert datetime.fromtimestamp(start, UTC) == MIDNIGHT + timedelta(hours=13)  # 13:00 local, the dip
    assert value(s, "powerplane_grid_carbon_intensity_day_periods", day="tomorrow") == 24


async def test_the_carbon_collector_fails_alone(tmp_path: Path) -> None:
    providers = [{"type": "static", "path": str(tmp_path / "missing.yaml")}]
    server, market = make_server(carbon_config(tmp_path, providers), Clock(NOW))
    host, port = await server.start("127.0.0.1", 0)
    try:
        await market.refresh_all()
        async with aiohttp.ClientSession() as session, session.get(f"http://{host}:{port}/metrics") as r:
            text = await r.text()
    finally:
        await server.stop()
    s = parse(text)
    assert undocumented(text) == set()
    assert value(s, "powerplane_scrape_collector_success", collector="carbon") == 0
    assert value(s, "powerplane_scrape_collector_success", collector="market") == 1
    assert value(s, "powerplane_grid_carbon_fetch_errors_total", provider="static", reason="other") == 1
    assert "powerplane_grid_carbon_intensity_grams_per_kwh" not in s


async def test_without_a_carbon_section_there_is_no_carbon_collector(tmp_path: Path) -> None:
    config = KIND.load_text(
        yaml.safe_dump(
            {
                "areas": ["DE-LU"],
                "providers": [{"type": "static", "path": str(lab.write_profile_yaml(tmp_path / "p.yaml"))}],
            }
        )
    )
    server, market = make_server(config, Clock(NOW))
    assert [c.name for c in server.collectors] == ["market"] and market.carbon == {}  # type: ignore[attr-defined]
    await market.stop()


# --- the curve endpoint and the controller --------------------------------------------------------


async def test_carbon_curve_endpoint_with_held_periods_and_the_controller_signal(
    fake: lab.FakeEntsoe, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from powerplane.controller.config import KIND as POLICY_KIND
    from powerplane.controller.signals import signal_from_spec

    text = (Path(__file__).resolve().parents[2] / "docs" / "market.md").read_text()  # noqa: ASYNC240
    server, market = make_server(entsoe_config(tmp_path, fake, monkeypatch), Clock(NOW))
    host, port = await server.start("127.0.0.1", 0)
    base = f"http://{host}:{port}/api/v1/curve"
    try:
        await market.refresh_all()
        async with aiohttp.ClientSession() as session:
            async with session.get(base + "?area=DE-LU&series=carbon") as r:
                assert r.status == 200
                doc = await r.json()
            async with session.get(base + "?series=wind") as r:
                assert r.status == 400 and "series must be one of price, carbon" in await r.text()
            async with session.get(base + "?area=FR&series=carbon") as r:
                assert r.status == 400
            async with session.get(base) as r:
                prices = await r.json()
        s = scrape(market, NOW)
        # The documented policy, read as the controller reads it, pointed at this exporter.
        block = next(b for b in re.findall(r"```yaml\n(.*?)```", text, re.DOTALL) if "PowerCapPolicy" in b)
        policy = POLICY_KIND.load_text(
            block.replace("http://powerplane-market.monitoring:9875", f"http://{host}:{port}")
        )
        signal = signal_from_spec(policy.document["spec"]["signal"])
        controller_value = await signal.value(NOW)
    finally:
        await server.stop()
    assert doc["series"] == "carbon" and doc["unit"] == "gCO2eq/kWh" and doc["source"] == "entsoe"
    assert prices["series"] == "price" and prices["unit"] == "EUR/MWh"
    held = [p for p in doc["periods"] if p.get("held")]
    # From the end of the newest measured period (09:00Z) to the one containing now (10:00-10:15Z).
    starts = [f"2026-01-15T{t}:00Z" for t in ("09:00", "09:15", "09:30", "09:45", "10:00")]
    assert [p["start"] for p in held] == starts
    current = value(s, "powerplane_grid_carbon_intensity_grams_per_kwh")
    assert {p["value"] for p in held} == {current}
    curve = Curve.from_json(doc)
    assert curve.price_at(NOW) == current == controller_value


# --- config --------------------------------------------------------------------------------------


def test_carbon_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EM_TOKEN", "em-secret-value")
    config = KIND.load_text(
        yaml.safe_dump(
            {
                "areas": ["DE-LU", {"area": "FR", "electricity_maps_zone": "FR"}],
                "providers": [{"type": "static", "path": "p.yaml"}],
                "carbon": {
                    "areas": ["FR"],
                    "providers": [
                        {"type": "electricity_maps", "token": {"env": "EM_TOKEN"}, "forecast": True},
                        {"type": "static", "path": "c.yaml", "resolution_minutes": 60},
                    ],
                    "emission_factors": {"B02": 1100, "B25": 0},
                    "min_coverage": 0.9,
                    "refresh": {"interval_seconds": 600, "max_age_seconds": 7200},
                },
            }
        )
    )
    carbon = config.carbon
    assert carbon is not None and carbon.areas == ("FR",)
    assert carbon.factors["B02"] == 1100 and carbon.factors["B25"] == 0 and carbon.factors["B04"] == 490
    assert carbon.refresh.interval == 600 and carbon.refresh.max_age == 7200 and carbon.min_coverage == 0.9
    providers = config.build_carbon_providers()
    assert [p.kind for p in providers] == ["electricity_maps", "static"]
    assert providers[0].zones["FR"] == "FR" and providers[0].forecast  # type: ignore[attr-defined]
    assert "em-secret-value" not in repr(config)


S = [{"type": "static", "path": "c"}]
EM = "electricity_maps"


@pytest.mark.parametrize(
    ("carbon", "needles"),
    [
        ({"providers": []}, ["carbon.providers: [] should be non-empty"]),
        ({"providers": S, "areas": ["NL"]}, ["carbon.areas.0: NL is not one of"]),
        ({"providers": S, "emission_factors": {"coal": 800}}, ["carbon.emission_factors"]),
        ({"providers": S, "emission_factors": {"B02": -1}}, ["carbon.emission_factors.B02"]),
        ({"providers": S, "emission_factors": {"B02": float("nan")}}, ["nan is not a finite number"]),
        ({"providers": S, "min_coverage": 0.1}, ["carbon.min_coverage"]),
        ({"providers": S, "refresh": {"max_age_seconds": 60}}, ["max_age_seconds"]),
        ({"providers": [{"type": EM, "token": "inline"}]}, ["carbon.providers.0"]),
        ({"providers": [{"type": EM, "token": {"env": "NOPE_UNSET_EM"}}]}, ["NOPE_UNSET_EM is not set"]),
        ({"providers": [{"type": "energy_charts"}]}, ["carbon.providers.0"]),
        (
            {"providers": [*S, {"type": "static", "path": "b"}]},
            ["carbon.providers.1.name: 'static' is used twice"],
        ),
        ({"providers": S, "bogus": 1}, ["unknown key(s) 'bogus'"]),
    ],
)
def test_carbon_config_errors(carbon: dict[str, Any], needles: list[str]) -> None:
    doc = {"areas": ["DE-LU"], "providers": [{"type": "static", "path": "p"}], "carbon": carbon}
    with pytest.raises(ConfigError) as info:
        KIND.load_text(yaml.dump(doc))
    for needle in needles:
        assert needle in str(info.value)


def test_check_config_redacts_carbon_tokens(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("carbon-secret-token\n")
    path = tmp_path / "market.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "areas": ["DE-LU"],
                "providers": [{"type": "static", "path": "p.yaml"}],
                "carbon": {"providers": [{"type": "electricity_maps", "token": {"file": str(token)}}]},
            }
        )
    )
    result = CliRunner().invoke(main, ["check-config", "--kind", "market", str(path)])
    assert result.exit_code == 0, result.output
    assert "carbon-secret-token" not in result.output and "<redacted>" in result.output


# --- end to end ----------------------------------------------------------------------------------


@pytest.mark.e2e
def test_carbon_end_to_end_with_prometheus(
    tmp_path: Path, background_loop: Any, prometheus: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = datetime.now(UTC)
    start, end = now - timedelta(hours=30), now + timedelta(hours=30)
    aligned = start.replace(minute=0, second=0, microsecond=0)
    mix = lab.generation_mix("DE-LU", aligned, end)
    fake = lab.FakeEntsoe(TOKEN, {}, generation={"DE-LU": mix}, clock=lambda: datetime.now(UTC))
    background_loop.run(fake.start())
    monkeypatch.setenv("CARBON_TOKEN", TOKEN)
    config = KIND.load_text(
        yaml.safe_dump(
            {
                "areas": ["DE-LU"],
                "providers": [{"type": "static", "path": str(lab.write_profile_yaml(tmp_path / "p.yaml"))}],
                "carbon": {
                    "providers": [
                        {"type": "entsoe", "url": fake.url + "/api", "token": {"env": "CARBON_TOKEN"}},
                        {"type": "static", "path": str(lab.carbon_profile_yaml(tmp_path / "c.yaml"))},
                    ]
                },
            }
        )
    )
    server, market = make_server(config)
    host, port = background_loop.run(server.start("127.0.0.1", 0))
    try:
        background_loop.run(market.refresh_all())
        state = market.carbon_states()[0]
        current = state.current(datetime.now(UTC))
        assert current is not None and state.curve.source == "entsoe"
        prom = prometheus([{"job_name": "market", "static_configs": [{"targets": [f"{host}:{port}"]}]}])
        prom.wait_targets_up(1)
        intensity = prom.wait_value('powerplane_grid_carbon_intensity_grams_per_kwh{area="DE-LU"}')
        assert intensity == pytest.approx(lab.mix_intensity(mix, FACTORS, current.start), abs=1e-3)
        assert prom.wait_value('powerplane_grid_carbon_source_info{provider="entsoe"}') == 1
        age = prom.wait_value("powerplane_grid_carbon_intensity_data_age_seconds")
        assert 3600 <= age <= 3600 + 900 + 120  # an hour's lag, plus the quarter-hour in progress
        # The documented emissions example: 500 W at the current intensity, in grams per hour.
        metric = 'powerplane_grid_carbon_intensity_grams_per_kwh{area="DE-LU"}'
        grams = prom.wait_value(f"vector(500) * on() group_left {metric} / 1000")
        assert grams == pytest.approx(500 * intensity / 1000)
        assert prom.wait_value('powerplane_scrape_collector_success{collector="carbon"}') == 1
        a75 = [r for r in fake.requests if r.get("documentType") == "A75"]
        assert len(a75) == 1  # scrapes never trigger fetches
    finally:
        background_loop.run(server.stop())
        background_loop.run(fake.stop())


async def test_demo_component_serves_a_carbon_curve(tmp_path: Path) -> None:
    from powerplane.lab.demo import DemoContext

    async with contextlib.AsyncExitStack() as stack:
        ctx = DemoContext(tmp_path, ["node-01"], stack)
        await lab.market_component(ctx)
        shared = ctx.shared["market"]
        async with aiohttp.ClientSession() as session, session.get(shared["carbon_url"]) as response:
            doc = await response.json()
    assert doc["series"] == "carbon" and doc["source"] == "entsoe"
    assert Curve.from_json(doc).price_at(datetime.now(UTC)) is not None

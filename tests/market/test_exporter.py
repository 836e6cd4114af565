"""Market metrics at period boundaries and local midnight, the curve endpoint, config, end to end."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from click.testing import CliRunner
from prometheus_client import generate_latest

from powerplane.cli import main
from powerplane.exporters.market import KIND, Curve, build_market, make_server, render_states
from powerplane.exporters.market.curve import area_timezone, day_bounds
from powerplane.exporters.market.feed import Market
from powerplane.exporters.runtime import ConfigError
from powerplane.lab import market as lab
from tests.helpers import parse, undocumented, value

BERLIN = area_timezone("DE-LU")
DAY = date(2026, 10, 24)  # Saturday before the autumn change: 96, then 100 quarter-hours


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def local(day: date, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=BERLIN).astimezone(UTC)


def static_config(tmp_path: Path, curve: Curve, **extra: Any) -> Any:
    path = lab.write_static_yaml(tmp_path / "curve.yaml", curve)
    doc = {"areas": ["DE-LU"], "providers": [{"type": "static", "path": str(path)}], **extra}
    return KIND.load_text(yaml.safe_dump(doc))


class _Families:
    def __init__(self, market: Market, now: datetime) -> None:
        self.market, self.now = market, now

    def collect(self) -> Any:
        return render_states(self.now, self.market.states())


def scrape(market: Market, now: datetime) -> str:
    text = generate_latest(_Families(market, now)).decode()  # type: ignore[arg-type]
    assert undocumented(text) == set()
    return text


@pytest.fixture
async def market(tmp_path: Path):
    curve = lab.days_curve("DE-LU", DAY, 3)  # 24, 25 (100 periods) and 26 October
    clock = Clock(local(DAY, 10))
    m = build_market(static_config(tmp_path, curve), clock)
    await m.refresh_all()
    yield m, clock, curve
    await m.stop()


async def test_metrics_at_a_period_boundary(market: tuple[Market, Clock, Curve]) -> None:
    m, _clock, curve = market
    before, at = local(DAY, 10, 14, 59), local(DAY, 10, 15)
    p1014 = curve.price_at(before)
    p1015 = curve.price_at(at)
    p1030 = curve.price_at(local(DAY, 10, 30))
    assert p1014 is not None and p1015 is not None and p1014 != p1015 != p1030
    s = parse(scrape(m, before))
    assert value(s, "powerplane_market_price_eur_per_mwh", area="DE-LU") == p1014
    assert value(s, "powerplane_market_next_price_eur_per_mwh", area="DE-LU") == p1015
    assert value(s, "powerplane_market_price_ahead_eur_per_mwh", horizon="15m") == p1015
    assert value(s, "powerplane_market_price_ahead_eur_per_mwh", horizon="1h") == curve.price_at(
        local(DAY, 11, 14)
    )
    assert value(s, "powerplane_market_period_seconds") == 900
    assert len(s["powerplane_market_price_ahead_eur_per_mwh"]) == 10
    s = parse(scrape(m, at))
    assert value(s, "powerplane_market_price_eur_per_mwh", area="DE-LU") == p1015
    assert value(s, "powerplane_market_next_price_eur_per_mwh", area="DE-LU") == p1030
    assert value(s, "powerplane_market_price_ahead_eur_per_mwh", horizon="15m") == p1030
    today = [p.price for p in curve.day(DAY, BERLIN)]
    assert value(s, "powerplane_market_price_rank_ratio") == pytest.approx(
        sum(1 for x in today if x < p1015) / (len(today) - 1)
    )


async def test_metrics_at_local_midnight(market: tuple[Market, Clock, Curve]) -> None:
    m, clock, curve = market
    before = local(DAY, 23, 59, 59)
    midnight = day_bounds(DAY + timedelta(days=1), BERLIN)[0]
    assert midnight == datetime(2026, 10, 24, 22, tzinfo=UTC)
    s = parse(scrape(m, before))
    today, tomorrow = curve.day(DAY, BERLIN), curve.day(DAY + timedelta(days=1), BERLIN)
    assert value(s, "powerplane_market_day_periods", day="today") == 96
    assert value(s, "powerplane_market_day_periods", day="tomorrow") == 100
    assert value(s, "powerplane_market_day_max_eur_per_mwh", day="today") == today.stats().max  # type: ignore[union-attr]
    assert value(s, "powerplane_market_day_min_eur_per_mwh", day="tomorrow") == tomorrow.stats().min  # type: ignore[union-attr]
    assert value(s, "powerplane_market_day_mean_eur_per_mwh", day="tomorrow") == pytest.approx(
        sum(p.price for p in tomorrow) / 100
    )
    assert value(s, "powerplane_market_tomorrow_published") == 1
    assert value(s, "powerplane_market_price_eur_per_mwh") == today.periods[-1].price
    assert value(s, "powerplane_market_next_price_eur_per_mwh") == tomorrow.periods[0].price
    # One second later it is the 25th: its 100 periods are "today", the 26th is "tomorrow".
    s = parse(scrape(m, midnight))
    assert value(s, "powerplane_market_day_periods", day="today") == 100
    assert value(s, "powerplane_market_day_max_eur_per_mwh", day="today") == tomorrow.stats().max  # type: ignore[union-attr]
    assert value(s, "powerplane_market_price_eur_per_mwh") == tomorrow.periods[0].price
    # The feed fetched the 24th and 25th; until its midnight round the 26th is not held.
    assert value(s, "powerplane_market_tomorrow_published") == 0
    assert not any(("day", "tomorrow") in k for k in s["powerplane_market_day_periods"])
    clock.now = midnight
    await m.refresh_all()
    s = parse(scrape(m, midnight))
    assert value(s, "powerplane_market_tomorrow_published") == 1
    assert value(s, "powerplane_market_day_periods", day="tomorrow") == 96
    assert value(s, "powerplane_market_data_age_seconds") == 0


async def test_cheapest_window_and_data_age(market: tuple[Market, Clock, Curve]) -> None:
    m, clock, curve = market
    now = local(DAY, 10, 5)
    s = parse(scrape(m, now))
    for label, hours in (("1h", 1), ("2h", 2), ("4h", 4), ("8h", 8)):
        start = value(s, "powerplane_market_cheapest_window_start_timestamp_seconds", window=label)
        expected = curve.cheapest_window(now, timedelta(hours=hours))
        assert expected is not None and start == expected[0].timestamp()
        assert local(DAY, 10) <= expected[0] <= now + timedelta(hours=24 - hours)
        assert value(s, "powerplane_market_cheapest_window_price_eur_per_mwh", window=label) == pytest.approx(
            expected[1]
        )
    assert value(s, "powerplane_market_data_age_seconds") == (now - clock.now).total_seconds()
    assert value(s, "powerplane_market_source_info", provider="static") == 1


async def test_collector_fails_without_a_current_price(tmp_path: Path) -> None:
    clock = Clock(local(DAY, 10))
    config = KIND.load_text(
        yaml.safe_dump(
            {"areas": ["DE-LU"], "providers": [{"type": "energy_charts", "url": "http://127.0.0.1:9/price"}]}
        )
    )
    server, market = make_server(config, clock)
    host, port = await server.start("127.0.0.1", 0)
    try:
        await market.refresh_all()
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://{host}:{port}/metrics") as response,
        ):
            text = await response.text()
        s = parse(text)
        assert undocumented(text) == set()
        assert value(s, "powerplane_scrape_collector_success", collector="market") == 0
        assert (
            value(s, "powerplane_market_fetch_errors_total", provider="energy_charts", reason="connection")
            == 1
        )
        assert value(s, "powerplane_market_tomorrow_published") == 0
        assert "powerplane_market_price_eur_per_mwh" not in s
    finally:
        await server.stop()


async def test_curve_endpoint(tmp_path: Path) -> None:
    curve = lab.days_curve("DE-LU", DAY, 2)
    clock = Clock(local(DAY, 10))
    server, market = make_server(static_config(tmp_path, curve), clock)
    host, port = await server.start("127.0.0.1", 0)
    try:
        await market.refresh_all()
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://{host}:{port}/api/v1/curve") as response:
                assert response.status == 200
                doc = await response.json()
            async with session.get(f"http://{host}:{port}/api/v1/curve?area=FR") as response:
                assert response.status == 400
            async with session.get(f"http://{host}:{port}/api/v1/areas") as response:
                areas = await response.json()
            async with session.get(f"http://{host}:{port}/") as response:
                assert "/api/v1/curve" in await response.text()
    finally:
        await server.stop()
    assert Curve.from_json(doc).periods == curve.periods
    assert doc["timezone"] == "Europe/Berlin" and doc["unit"] == "EUR/MWh"
    assert doc["days"] == {
        "2026-10-24": {"complete": True, "periods": 96},
        "2026-10-25": {"complete": True, "periods": 100},
    }
    assert doc["tomorrow_published"] is True and doc["now"] == "2026-10-24T08:00:00Z"
    assert areas == [{"area": "DE-LU", "timezone": "Europe/Berlin", "providers": ["static"]}]


# --- config -------------------------------------------------------------------------------------


def test_config_full(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ENTSOE_TOKEN", "abcd-1234-secret")
    config = KIND.load_text(
        yaml.safe_dump(
            {
                "areas": [
                    "DE-LU",
                    {"area": "AT", "timezone": "Europe/Vienna"},
                    {"area": "XK", "entsoe_eic": "10Y1001C--00100H"},
                ],
                "providers": [
                    {"type": "entsoe", "token": {"env": "ENTSOE_TOKEN"}, "classification_sequence": 1},
                    {"type": "energy_charts", "name": "ec"},
                    {"type": "static", "path": str(tmp_path / "c.yaml")},
                ],
                "store": {"path": str(tmp_path / "store")},
                "refresh": {"publication_time": "12:55", "interval_seconds": 14400},
                "load_forecast": {"provider": "entsoe"},
            }
        )
    )
    assert [a.area for a in config.areas] == ["DE-LU", "AT", "XK"]
    assert config.refresh.interval == 14400 and config.refresh.publication == "12:55"
    providers = config.build_providers()
    assert [p.name for p in providers] == ["entsoe", "ec", "static"]
    assert providers[0].eic["XK"] == "10Y1001C--00100H"  # type: ignore[attr-defined]
    assert "abcd-1234-secret" not in repr(config)


@pytest.mark.parametrize(
    ("doc", "needles"),
    [
        (
            {"areas": [], "providers": []},
            ["areas: [] should be non-empty", "providers: [] should be non-empty"],
        ),
        ({"areas": ["de-lu"], "providers": [{"type": "static", "path": "x"}]}, ["areas.0"]),
        ({"areas": ["DE-LU"], "providers": [{"type": "entsoe", "token": "inline"}]}, ["providers.0"]),
        ({"areas": ["DE-LU"], "providers": [{"type": "ftp"}]}, ["providers.0"]),
        (
            {"areas": ["DE-LU"], "providers": [{"type": "static", "path": "x"}], "bogus": 1},
            ["unknown key(s) 'bogus'"],
        ),
        (
            {
                "areas": ["DE-LU", "DE-LU"],
                "providers": [{"type": "static", "path": "x"}, {"type": "static", "path": "y"}],
            },
            ["DE-LU is listed twice", "'static' is used twice"],
        ),
        (
            {"areas": ["ZZ"], "providers": [{"type": "entsoe", "token": {"env": "NOPE_NOT_SET"}}]},
            ["NOPE_NOT_SET is not set", "ZZ has no known ENTSO-E EIC code"],
        ),
        (
            {
                "areas": ["DE-LU"],
                "providers": [{"type": "static", "path": "x"}],
                "load_forecast": {"provider": "static"},
            },
            ["is not an entsoe provider"],
        ),
        (
            {
                "areas": [{"area": "DE-LU", "timezone": "Mars/Base"}],
                "providers": [{"type": "static", "path": "x"}],
            },
            ["unknown time zone"],
        ),
    ],
)
def test_config_errors_are_all_reported(doc: dict[str, Any], needles: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        KIND.load_text(yaml.safe_dump(doc))
    text = str(info.value)
    for needle in needles:
        assert needle in text


def test_check_config_redacts_the_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token = tmp_path / "token"
    token.write_text("very-secret-token\n")
    path = tmp_path / "market.yaml"
    path.write_text(
        yaml.safe_dump({"areas": ["DE-LU"], "providers": [{"type": "entsoe", "token": {"file": str(token)}}]})
    )
    result = CliRunner().invoke(main, ["check-config", "--kind", "market", str(path)])
    assert result.exit_code == 0, result.output
    assert "valid market config" in result.output
    assert "very-secret-token" not in result.output and "<redacted>" in result.output


def test_exporter_command_rejects_a_bad_config(tmp_path: Path) -> None:
    path = tmp_path / "market.yaml"
    path.write_text("areas: [DE-LU]\n")
    result = CliRunner().invoke(main, ["exporter", "market", "--config", str(path)])
    assert result.exit_code != 0
    assert "'providers' is a required property" in result.output


# --- end to end -----------------------------------------------------------------------------------


@pytest.mark.e2e
def test_end_to_end_with_prometheus(tmp_path: Path, background_loop: Any, prometheus: Any) -> None:
    now = datetime.now(UTC)
    curve = lab.demo_curve("DE-LU", now)
    fake = lab.FakeEntsoe("e2e-token", {"DE-LU": curve})
    background_loop.run(fake.start())
    token = tmp_path / "token"
    token.write_text("e2e-token")
    config = KIND.load_text(
        yaml.safe_dump(
            {
                "areas": ["DE-LU"],
                "providers": [
                    {"type": "entsoe", "url": fake.url + "/api", "token": {"file": str(token)}},
                    {"type": "static", "path": str(lab.write_profile_yaml(tmp_path / "p.yaml"))},
                ],
                "store": {"path": str(tmp_path / "store")},
            }
        )
    )
    server, market = make_server(config)
    host, port = background_loop.run(server.start("127.0.0.1", 0))
    try:
        background_loop.run(market.refresh_all())
        prom = prometheus(
            [
                {
                    "job_name": "market",
                    "static_configs": [{"targets": [f"{host}:{port}"], "labels": {"node": "n1"}}],
                }
            ]
        )
        prom.wait_targets_up(1)
        price = prom.wait_value('powerplane_market_price_eur_per_mwh{area="DE-LU"}')
        expected = {p.price for p in curve.between(now, datetime.now(UTC) + timedelta(seconds=1))}
        assert price in expected
        assert prom.wait_value("powerplane_market_tomorrow_published") == 1
        assert prom.wait_value('powerplane_market_source_info{provider="entsoe"}') == 1
        # The documented cost example: 500 W at the current price, in EUR per hour.
        cost = prom.wait_value(
            'vector(500) * on() group_left powerplane_market_price_eur_per_mwh{area="DE-LU"} / 1e6'
        )
        assert cost == pytest.approx(500 * price / 1e6)
        assert len(fake.requests) == 1  # scrapes never trigger fetches
    finally:
        background_loop.run(server.stop())
        background_loop.run(fake.stop())
    stored = json.dumps(sorted(p.name for p in (tmp_path / "store" / "DE-LU").iterdir()))
    assert ".csv" in stored


async def test_background_refresh_runs_once_per_feed(tmp_path: Path) -> None:
    curve = lab.days_curve("DE-LU", DAY, 2)
    clock = Clock(local(DAY, 10))
    market = build_market(static_config(tmp_path, curve), clock, tick=0.01)
    try:
        market.ensure_running()
        market.ensure_running()  # idempotent: still one task per feed
        assert len(market._tasks) == 1
        feed = market.feeds["DE-LU"]
        for _ in range(500):
            if feed.has_day(DAY + timedelta(days=1)):
                break
            await asyncio.sleep(0.01)
        assert feed.has_day(DAY + timedelta(days=1))
        assert feed.next_refresh is not None and feed.next_refresh > clock.now
    finally:
        await market.stop()
    assert market._tasks == []


async def test_demo_component_serves_a_spike(tmp_path: Path) -> None:
    import contextlib

    from powerplane.lab.demo import DemoContext

    async with contextlib.AsyncExitStack() as stack:
        ctx = DemoContext(tmp_path, ["node-01"], stack)
        await lab.market_component(ctx)
        shared = ctx.shared["market"]
        async with aiohttp.ClientSession() as session, session.get(shared["url"]) as response:
            doc = await response.json()
        curve = Curve.from_json(doc)
        assert doc["source"] == "entsoe" and doc["tomorrow_published"] is True
        assert max(p.price for p in curve) == 480.0  # the spike the controller reacts to
        spike = next(p for p in curve if p.price == 480.0)
        assert spike.start - datetime.now(UTC) < timedelta(minutes=31)
        assert ctx.scrape_configs[-1]["job_name"] == "powerplane-market"

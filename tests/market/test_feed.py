"""Feeds: fallback order, backoff, the refresh schedule and the CSV store across restarts."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from powerplane.exporters.market.curve import Curve, area_timezone, day_bounds
from powerplane.exporters.market.entsoe import EntsoeProvider
from powerplane.exporters.market.feed import AreaFeed, RefreshPolicy
from powerplane.exporters.market.files import CsvStore, StaticProvider
from powerplane.exporters.market.provider import NotPublished, Provider, ProviderError
from powerplane.exporters.runtime import Secret
from powerplane.lab import market as lab

BERLIN = area_timezone("DE-LU")
TODAY = date(2025, 11, 21)
TOMORROW = TODAY + timedelta(days=1)
TOKEN = "feed-test-token"


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class Scripted(Provider):
    """A provider whose answers the test sets; records the spans it was asked for."""

    def __init__(self, name: str, curve: Curve | None, error: ProviderError | None = None) -> None:
        super().__init__(name)
        self.curve = curve
        self.error = error
        self.calls: list[tuple[datetime, datetime]] = []

    async def fetch(self, area: str, start: datetime, end: datetime) -> Curve:
        self.calls.append((start, end))
        if self.error is not None:
            raise self.error
        part = self.curve.slice(start, end) if self.curve else None
        if not part:
            raise NotPublished(f"{self.name}: nothing")
        return Curve(area, part.periods, self.name)


def local(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=BERLIN).astimezone(UTC)


def two_days() -> Curve:
    return lab.days_curve("DE-LU", TODAY, 2)


async def test_fallback_to_the_next_provider_and_back_off_the_failed_one() -> None:
    clock = Clock(local(TODAY, 14))
    broken = Scripted("entsoe", two_days(), ProviderError("entsoe: HTTP 503", "unavailable"))
    backup = Scripted("energy_charts", two_days())
    feed = AreaFeed("DE-LU", BERLIN, [broken, backup], clock=clock)
    await feed.refresh()
    assert feed.has_day(TODAY) and feed.has_day(TOMORROW)
    assert feed.curve.source == "energy_charts"
    assert feed.errors == {("entsoe", "unavailable"): 1}
    # Both days asked for in one request.
    assert backup.calls == [(day_bounds(TODAY, BERLIN)[0], day_bounds(TOMORROW, BERLIN)[1])]
    # The routine refresh 6 h later; the failed provider's backoff (60 s) has passed by then.
    assert feed.next_refresh == clock.now + timedelta(hours=6)
    clock.now = feed.next_refresh
    broken.error = None
    await feed.refresh()
    assert feed.curve.source == "entsoe" and len(broken.calls) == 2


async def test_backoff_doubles_and_skips_the_provider_meanwhile() -> None:
    clock = Clock(local(TODAY, 9))
    broken = Scripted("entsoe", None, ProviderError("entsoe: HTTP 429", "rate_limited", retry_after=300))
    feed = AreaFeed(
        "DE-LU", BERLIN, [broken], clock=clock, policy=RefreshPolicy(retry_min=60, retry_max=3600)
    )
    await feed.refresh()
    # No data at all: retry, but not before the server's Retry-After.
    assert feed.next_refresh == clock.now + timedelta(seconds=300)
    clock.now += timedelta(seconds=100)
    await feed.refresh()
    assert len(broken.calls) == 1  # still backing off: not asked again
    clock.now += timedelta(seconds=200)
    broken.error = ProviderError("entsoe: HTTP 503", "unavailable")
    await feed.refresh()
    assert len(broken.calls) == 2
    assert feed.next_refresh == clock.now + timedelta(seconds=120)  # second failure: 2 x 60 s
    assert feed.errors == {("entsoe", "rate_limited"): 1, ("entsoe", "unavailable"): 1}


async def test_schedule_waits_for_publication_then_polls() -> None:
    clock = Clock(local(TODAY, 9))
    today_only = lab.day_curve("DE-LU", TODAY)
    provider = Scripted("entsoe", today_only)
    feed = AreaFeed("DE-LU", BERLIN, [provider], clock=clock)
    await feed.refresh()
    assert feed.has_day(TODAY) and not feed.has_day(TOMORROW)
    assert feed.errors == {}
    assert feed.next_refresh == local(TODAY, 13)  # publication time
    clock.now = local(TODAY, 13)
    await feed.refresh()
    assert feed.errors == {("entsoe", "no_data"): 1}
    assert feed.next_refresh == clock.now + timedelta(minutes=15)
    # Only the missing day is asked for: today is held already.
    assert provider.calls[-1] == day_bounds(TOMORROW, BERLIN)
    provider.curve = two_days()
    clock.now += timedelta(minutes=15)
    await feed.refresh()
    assert feed.has_day(TOMORROW)
    # Next: the routine refresh, or midnight, whichever comes first.
    assert feed.next_refresh == min(
        clock.now + timedelta(hours=6), day_bounds(TOMORROW, BERLIN)[0] + timedelta(seconds=1)
    )


async def test_feed_drops_yesterday_at_midnight() -> None:
    clock = Clock(local(TODAY, 23, 59))
    feed = AreaFeed("DE-LU", BERLIN, [Scripted("s", lab.days_curve("DE-LU", TODAY, 3))], clock=clock)
    await feed.refresh()
    assert feed.curve.start == day_bounds(TODAY, BERLIN)[0]
    clock.now = day_bounds(TOMORROW, BERLIN)[0]
    await feed.refresh()
    assert feed.curve.start == day_bounds(TOMORROW, BERLIN)[0]
    assert feed.has_day(TOMORROW + timedelta(days=1))


async def test_store_is_reused_after_a_restart(tmp_path: Path) -> None:
    fake = lab.FakeEntsoe(TOKEN, {"DE-LU": two_days()})
    await fake.start()
    clock = Clock(local(TODAY, 15))
    store = CsvStore("store", tmp_path)
    try:
        entsoe = EntsoeProvider("entsoe", Secret("t", TOKEN), fake.url + "/api", 5.0)
        feed = AreaFeed("DE-LU", BERLIN, [entsoe], store, clock=clock)
        await feed.refresh()
        await entsoe.close()
        assert len(fake.requests) == 1
        assert sorted(p.name for p in (tmp_path / "DE-LU").iterdir()) == ["2025-11-21.csv", "2025-11-22.csv"]
        # "Restart": a new feed, the API now down; the store answers and nothing is fetched.
        fake.fail("503", times=10)
        entsoe = EntsoeProvider("entsoe", Secret("t", TOKEN), fake.url + "/api", 5.0)
        restarted = AreaFeed("DE-LU", BERLIN, [entsoe], CsvStore("store", tmp_path), clock=clock)
        await restarted.refresh()
        await entsoe.close()
        assert len(fake.requests) == 1
        assert restarted.curve.periods == feed.curve.periods
        assert restarted.errors == {}
        assert restarted.state().fetched_at is not None
    finally:
        await fake.stop()


async def test_store_as_a_provider_in_the_chain(tmp_path: Path) -> None:
    store = CsvStore("archive", tmp_path)
    for day in (TODAY, TOMORROW):
        store.write_day(two_days(), day)
    clock = Clock(local(TODAY, 15))
    broken = Scripted("entsoe", None, ProviderError("entsoe: HTTP 401 (token rejected)", "auth"))
    feed = AreaFeed("DE-LU", BERLIN, [broken, store], clock=clock)
    await feed.refresh()
    assert feed.has_day(TODAY) and feed.has_day(TOMORROW)
    assert feed.errors == {("entsoe", "auth"): 1}


async def test_static_provider_as_last_resort(tmp_path: Path) -> None:
    clock = Clock(local(date(2026, 3, 29), 12))
    static = StaticProvider("static", lab.write_profile_yaml(tmp_path / "p.yaml"))
    broken = Scripted("entsoe", None, ProviderError("entsoe: timed out", "timeout"))
    feed = AreaFeed("DE-LU", BERLIN, [broken, static], clock=clock)
    await feed.refresh()
    assert len(feed.curve.day(date(2026, 3, 29), BERLIN)) == 92
    assert feed.curve.source == "static"


async def test_provider_bug_does_not_stop_the_feed() -> None:
    class Buggy(Provider):
        async def fetch(self, area: str, start: datetime, end: datetime) -> Curve:
            raise KeyError("oops")

    clock = Clock(local(TODAY, 15))
    feed = AreaFeed("DE-LU", BERLIN, [Buggy("buggy"), Scripted("ok", two_days())], clock=clock)
    await feed.refresh()
    assert feed.has_day(TOMORROW)
    assert feed.errors == {("buggy", "other"): 1}


@pytest.mark.parametrize("area", ["XX", "DE-LU"])
def test_unknown_area_providers_are_skipped(area: str) -> None:
    entsoe = EntsoeProvider("entsoe", Secret("t", TOKEN))
    feed = AreaFeed(area, BERLIN, [entsoe])
    assert [p.name for p in feed.providers] == ([] if area == "XX" else ["entsoe"])


async def test_failures_logged_once_per_condition_without_the_token(caplog: pytest.LogCaptureFixture) -> None:
    fake = lab.FakeEntsoe(TOKEN, {"DE-LU": two_days()})
    await fake.start()
    clock = Clock(local(TODAY, 15))
    entsoe = EntsoeProvider("entsoe", Secret("t", TOKEN), fake.url + "/api", 5.0)
    feed = AreaFeed("DE-LU", BERLIN, [entsoe], clock=clock, policy=RefreshPolicy(retry_min=5, retry_max=5))
    caplog.set_level("DEBUG", logger="powerplane.market")
    try:
        fake.fail("503", times=3)
        for _ in range(3):
            await feed.refresh()
            clock.now += timedelta(seconds=10)
        await feed.refresh()
    finally:
        await entsoe.close()
        await fake.stop()
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and warnings[0].getMessage() == "fetch failed"
    assert [r.getMessage() for r in caplog.records if r.levelname == "INFO"] == ["fetch recovered"]
    assert feed.errors == {("entsoe", "unavailable"): 3}
    assert feed.has_day(TOMORROW)
    for record in caplog.records:
        assert TOKEN not in record.getMessage() and TOKEN not in str(getattr(record, "fields", ""))


async def test_routine_refresh_never_replaces_published_prices_with_a_fallback(tmp_path: Path) -> None:
    clock = Clock(local(TODAY, 14))
    published = two_days()
    entsoe = Scripted("entsoe", published)
    static = StaticProvider("static", lab.write_profile_yaml(tmp_path / "p.yaml"))
    feed = AreaFeed("DE-LU", BERLIN, [entsoe, static], clock=clock, policy=RefreshPolicy(interval=3600))
    await feed.refresh()
    assert feed.curve.source == "entsoe"
    # An hour on, ENTSO-E fails the routine refresh: the held prices stay.
    entsoe.error = ProviderError("entsoe: HTTP 503", "unavailable")
    assert feed.next_refresh == clock.now + timedelta(hours=1)
    clock.now += timedelta(hours=1)
    await feed.refresh()
    assert len(entsoe.calls) == 2
    assert feed.curve.source == "entsoe"
    assert feed.curve.day(TOMORROW, BERLIN).periods == published.day(TOMORROW, BERLIN).periods
    # A correction published meanwhile is picked up by the next routine refresh.
    corrected = Curve("DE-LU", tuple(p.__class__(p.start, p.end, p.price + 1) for p in published))
    entsoe.error, entsoe.curve = None, corrected
    clock.now += timedelta(hours=1)
    await feed.refresh()
    assert feed.curve.day(TOMORROW, BERLIN).periods == corrected.day(TOMORROW, BERLIN).periods

"""Collectors: fetched concurrently under a deadline, rendered after every fetch, never raising."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

import pytest
from prometheus_client import generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from powerplane.exporters.runtime import (
    CollectorError,
    Deadline,
    FailureLog,
    NoData,
    Outcome,
    Part,
    Partial,
    Parts,
    Scrape,
    exposition,
    run_collectors,
)
from powerplane.exporters.runtime.collector import DeviceText
from tests.helpers import parse, undocumented, value

from .conftest import Fixed, expose


async def test_failing_collector_does_not_hide_the_others(caplog: pytest.LogCaptureFixture) -> None:
    failures = FailureLog(logging.getLogger("test"))
    collectors = [
        Fixed("good", 2.0),
        Fixed("bad", CollectorError("sensor/x: not a number")),
        Fixed("boom", KeyError("k")),
    ]
    outcomes = await run_collectors("test", collectors, Deadline.after(5), failures)
    samples = expose(outcomes)
    assert value(samples, "test_value", collector="good") == 2.0
    assert value(samples, "powerplane_scrape_collector_success", collector="good") == 1.0
    assert value(samples, "powerplane_scrape_collector_success", collector="bad") == 0.0
    assert value(samples, "powerplane_scrape_collector_success", collector="boom") == 0.0
    assert outcomes[1].error == "sensor/x: not a number"
    assert "KeyError" in outcomes[2].error


async def test_collector_deadline() -> None:
    failures = FailureLog(logging.getLogger("test"))
    slow, fast = Fixed("slow", 1.0, delay=5.0), Fixed("fast", 1.0)
    loop = asyncio.get_running_loop()
    start = loop.time()
    outcomes = await run_collectors("test", [slow, fast], Deadline.after(0.2), failures)
    assert loop.time() - start < 1.0
    assert [o.success for o in outcomes] == [False, True]
    assert outcomes[0].error == "deadline exceeded"


async def test_no_data_is_not_a_failure_and_partial_is() -> None:
    failures = FailureLog(logging.getLogger("test"))
    outcomes = await run_collectors(
        "test",
        [Fixed("absent", NoData("no GPU")), Fixed("partial", Partial(3.0, ["psu/1: missing"]))],
        Deadline.after(5),
        failures,
    )
    samples = expose(outcomes)
    assert value(samples, "powerplane_scrape_collector_success", collector="absent") == 1.0
    assert value(samples, "powerplane_scrape_collector_success", collector="partial") == 0.0
    assert value(samples, "test_value", collector="partial") == 3.0  # partial results are kept
    assert undocumented(generate_latest(Scrape("test", outcomes)).decode()) == {"test_value"}


async def test_failure_logged_once_per_condition(caplog: pytest.LogCaptureFixture) -> None:
    failures = FailureLog(logging.getLogger("powerplane.test"))
    bad = Fixed("bad", CollectorError("bmc: connection refused"))
    with caplog.at_level(logging.DEBUG, logger="powerplane.test"):
        for _ in range(5):
            await run_collectors("test", [bad], Deadline.after(5), failures, target="bmc-1")
        assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
        bad.result = CollectorError("bmc: timeout")  # a new cause is news
        await run_collectors("test", [bad], Deadline.after(5), failures, target="bmc-1")
        bad.result = 1.0
        await run_collectors("test", [bad], Deadline.after(5), failures, target="bmc-1")
    messages = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert messages == [
        ("WARNING", "collector failed"),
        ("WARNING", "collector failed"),
        ("INFO", "collector recovered"),
    ]


def test_same_family_from_two_collectors_is_exposed_once() -> None:

    a, b = GaugeMetricFamily("x", "X.", labels=["gpu"]), GaugeMetricFamily("x", "X.", labels=["gpu"])
    a.add_metric(["0"], 1.0)
    b.add_metric(["1"], 2.0)
    text = generate_latest(Scrape("t", [Outcome("a", True, 0.0, [a]), Outcome("b", True, 0.0, [b])])).decode()  # type: ignore[arg-type]
    assert text.count("# TYPE x gauge") == 1
    assert parse(text)["x"] == {(("gpu", "0"),): 1.0, (("gpu", "1"),): 2.0}


class TextFamily(Metric):
    """A gauge given as text lines, as exporters with many series write theirs."""

    def __init__(self, line: str, sample: Any) -> None:
        super().__init__("x", "X.", "gauge")
        self.text_chunks = [line]
        self.one = sample

    @property
    def samples(self) -> list[Any]:
        return [self.one]

    @samples.setter
    def samples(self, value: list[Any]) -> None:
        pass


def test_families_given_as_text_stay_text_when_merged() -> None:
    from prometheus_client.samples import Sample

    parts = [TextFamily(f'x{{gpu="{i}"}} {i}.0\n', Sample("x", {"gpu": str(i)}, float(i))) for i in (0, 1)]
    scrape = Scrape("t", [Outcome(f"c{i}", True, 0.0, [part]) for i, part in enumerate(parts)])
    (merged,) = [m for m in scrape.collect() if m.name == "x"]
    assert merged.text_chunks == ['x{gpu="0"} 0.0\n', 'x{gpu="1"} 1.0\n']  # type: ignore[attr-defined]
    assert [s.labels for s in merged.samples] == [{"gpu": "0"}, {"gpu": "1"}]
    body = exposition.render(scrape.collect()).decode()
    assert parse(body)["x"] == {(("gpu", "0"),): 0.0, (("gpu", "1"),): 1.0}
    # A text part merged with a sample part: the samples of both.
    plain = GaugeMetricFamily("x", "X.", labels=["gpu"])
    plain.add_metric(["2"], 2.0)
    mixed = Scrape("t", [Outcome("a", True, 0.0, [parts[0]]), Outcome("b", True, 0.0, [plain])])
    (merged,) = [m for m in mixed.collect() if m.name == "x"]
    assert not hasattr(merged, "text_chunks")
    assert [s.labels for s in merged.samples] == [{"gpu": "0"}, {"gpu": "2"}]


async def test_every_fetch_finishes_before_any_render() -> None:
    """A render may use what another collector fetched in the same scrape, however slow."""
    shared: dict[str, str] = {}

    class Slow(Fixed):
        async def fetch(self, deadline: Deadline) -> Any:
            await asyncio.sleep(0.05)
            shared["job"] = "slurm-77"
            return 1.0

    class Reader(Fixed):
        def render(self, snapshot: float) -> Iterable[Metric]:
            family = GaugeMetricFamily("test_labelled", "A test value.", labels=["job"])
            family.add_metric([shared.get("job", "")], snapshot)
            yield family

    outcomes = await run_collectors(
        "test", [Reader("reader"), Slow("slow")], Deadline.after(5), FailureLog(logging.getLogger("test"))
    )
    assert expose(outcomes)["test_labelled"] == {(("job", "slurm-77"),): 1.0}
    assert outcomes[1].duration >= 0.05  # the slow fetch is timed as its own


class Halves(Fixed):
    """A collector of two parts, read together (as the GPU collector reads every GPU)."""

    parts = ("left", "right")
    keeps_deadline = True

    def render(self, snapshot: Any) -> Iterable[Metric]:
        family = GaugeMetricFamily("test_value", "A test value.", labels=["part"])
        for part, number in snapshot:
            family.add_metric([part], number)
        yield family


async def test_each_part_is_reported_as_a_collector(caplog: pytest.LogCaptureFixture) -> None:
    failures = FailureLog(logging.getLogger("powerplane.test"))
    halves = Halves(
        "halves", Parts([("left", 2.0)], [Part("left", 0.25), Part("right", 0.5, ["right: no answer"])])
    )
    with caplog.at_level(logging.WARNING, logger="powerplane.test"):
        outcomes = await run_collectors("test", [halves, Fixed("other", 1.0)], Deadline.after(5), failures)
    assert [(o.collector, o.success, o.error) for o in outcomes] == [
        ("left", True, ""),
        ("right", False, "right: no answer"),
        ("other", True, ""),
    ]
    samples = expose(outcomes)
    assert samples["test_value"] == {(("part", "left"),): 2.0, (("collector", "other"),): 1.0}
    assert value(samples, "powerplane_scrape_collector_duration_seconds", collector="right") == 0.5
    assert "halves" not in str(samples)
    (record,) = caplog.records
    assert record.fields == {"exporter": "test", "collector": "right", "cause": "right: no answer"}  # type: ignore[attr-defined]


async def test_a_collector_of_parts_that_fails_fails_every_part() -> None:
    failures = FailureLog(logging.getLogger("test"))
    outcomes = await run_collectors(
        "test", [Halves("halves", CollectorError("bus: gone"))], Deadline.after(5), failures
    )
    assert [(o.collector, o.success, o.error) for o in outcomes] == [
        ("left", False, "bus: gone"),
        ("right", False, "bus: gone"),
    ]
    outcomes = await run_collectors("test", [Halves("halves", NoData("no bus"))], Deadline.after(5), failures)
    assert [(o.collector, o.success) for o in outcomes] == [("left", True), ("right", True)]


async def test_a_collector_that_keeps_its_deadline_is_not_cancelled_at_it() -> None:
    """Its fetch answers with what it has: the scrape's own timer would lose that."""
    late = Halves("halves", Parts([("left", 1.0)], [Part("left", 0.0), Part("right", 0.0)]), delay=0.2)
    outcomes = await run_collectors(
        "test", [late], Deadline.after(0.05), FailureLog(logging.getLogger("test"))
    )
    assert [(o.collector, o.success) for o in outcomes] == [("left", True), ("right", True)]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("PSU.Slot.1", "PSU.Slot.1"),
        ("  padded\x00 ", "padded"),
        ("line\r\nbreak\tand tab", "line  break and tab"),
        ("bell\x07 escape\x1b[31m", "bell escape[31m"),
        ("lone \ud800 surrogate", "lone \ufffd surrogate"),
        ("right-to-left \u202eoverride\u200b", "right-to-left override"),
        (b"bytes \xff\xfe", "bytes \ufffd\ufffd"),
        (b"caf\xc3\xa9", "café"),
        (42, "42"),
        ("x" * 200, "x" * 127 + "…"),
    ],
)
def test_device_strings_are_made_fit_for_labels(raw: object, expected: str) -> None:
    text = DeviceText()
    assert text(raw) == expected
    cleaned = text(raw)
    assert cleaned.encode("utf-8").decode("utf-8") == cleaned and cleaned.isprintable()


def test_device_strings_count_what_they_change() -> None:
    text = DeviceText(limit=8)
    for raw in ("ok", "a\x00b", "123456789", "\ud800" * 20):
        text(raw)
    assert (text.invalid, text.truncated) == (2, 2)

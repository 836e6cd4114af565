"""The exposition renderer against prometheus_client: the same families, series and values in the
text format and in OpenMetrics, scrape after scrape (the line cache must follow every change)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from powerplane.exporters.runtime.exposition import Family, render, render_openmetrics
from powerplane.exporters.runtime.metrics import MetricSpec
from powerplane.exporters.slurm.families import Lines

GAUGE = MetricSpec("t_power_watts", "gauge", "Power.", ("node", "gpu"))
COUNTER = MetricSpec("t_energy_joules_total", "counter", "Energy.", ("node", "gpu"))

hostile = st.text(alphabet=st.sampled_from('ab\\"\n{}=,é\t '), max_size=8)
values = st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(2**53), 2**53).map(float)


class _Registry:
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


def _samples(families: Any) -> list[tuple[str, tuple[tuple[str, str], ...], str]]:
    return sorted(
        (s.name, tuple(sorted(s.labels.items())), repr(s.value)) for f in families for s in f.samples
    )


def _both(rows: list[tuple[str, str, float]], help_text: str) -> tuple[list[Metric], list[Metric]]:
    gauge, counter = MetricSpec(GAUGE.name, "gauge", help_text, GAUGE.labels).family(), COUNTER.family()
    theirs_g = GaugeMetricFamily(GAUGE.name, help_text, labels=list(GAUGE.labels))
    theirs_c = CounterMetricFamily("t_energy_joules", COUNTER.help, labels=list(COUNTER.labels))
    seen = set()
    for node, gpu, value in rows:
        if (node, gpu) in seen:  # a label set once per family, as a valid exposition has it
            continue
        seen.add((node, gpu))
        gauge.add_metric((node, gpu), value)
        theirs_g.add_metric([node, gpu], value)
        magnitude = abs(value) if value == value else 0.0  # OpenMetrics: a counter is never NaN
        counter.add_metric((node, gpu), magnitude)
        theirs_c.add_metric([node, gpu], magnitude)
    return [gauge, counter], [theirs_g, theirs_c]


@settings(max_examples=150, deadline=None)
@given(
    scrapes=st.lists(st.lists(st.tuples(hostile, hostile, values), max_size=4), min_size=1, max_size=3),
    help_text=hostile,
)
def test_text_and_openmetrics_agree_with_prometheus_client_scrape_after_scrape(
    scrapes: list[list[tuple[str, str, float]]], help_text: str
) -> None:
    for rows in scrapes:  # the same series again with other values: cached lines must not linger
        ours, theirs = _both(rows, help_text)
        text = render(ours).decode()
        assert _samples(parse_text(text)) == _samples(parse_text(generate_latest(_Registry(theirs)).decode()))  # type: ignore[arg-type]
        om = render_openmetrics(ours).decode()
        reference = generate_openmetrics(_Registry(theirs)).decode()  # type: ignore[arg-type]
        assert om.endswith("# EOF\n")
        assert _samples(parse_openmetrics(om)) == _samples(parse_openmetrics(reference))
        assert [(f.name, f.type, f.documentation) for f in parse_openmetrics(om)] == [
            (f.name, f.type, f.documentation) for f in parse_openmetrics(reference)
        ]


def test_a_family_merged_from_collectors_and_plain_families_render_alike() -> None:
    parts = []
    for gpu in ("0", "1"):
        part = GAUGE.family()
        part.add_metric(("n1", gpu), float(gpu))
        parts.append(part)
    merged = Family.merged(parts)
    plain = GaugeMetricFamily(GAUGE.name, GAUGE.help, labels=list(GAUGE.labels))
    plain.add_metric(["n1", "0"], 0.0)
    plain.add_metric(["n1", "1"], 1.0)
    assert render([merged]) == render([plain])
    assert render_openmetrics([merged]) == render_openmetrics([plain])
    assert _samples([merged]) == _samples([plain])  # the samples view prometheus_client consumers use


def test_a_family_refuses_a_row_with_the_wrong_number_of_labels() -> None:
    family = GAUGE.family()
    try:
        family.add_metric(("n1",), 1.0)
    except ValueError as exc:
        assert "t_power_watts" in str(exc) and "1 label values for 2 labels" in str(exc)
    else:
        raise AssertionError("a short row was accepted")


def test_gauge_chunks_serve_openmetrics_too() -> None:
    spec = MetricSpec("t_node_state", "gauge", "State.", ("node",))
    chunks = [b't_node_state{node="a\\"b"} 1.0\n', b't_node_state{node="c"} 0.0\n']
    om = render_openmetrics([Lines(spec, chunks)]).decode()
    assert (
        om
        == "# TYPE t_node_state gauge\n# HELP t_node_state State.\n" + b"".join(chunks).decode() + "# EOF\n"
    )
    (family,) = parse_openmetrics(om)
    assert {s.labels["node"]: s.value for s in family.samples} == {'a"b': 1.0, "c": 0.0}


async def test_a_server_answers_openmetrics_from_the_same_families_as_text() -> None:
    import aiohttp

    from powerplane.exporters.runtime import Collector, Deadline, ExporterServer

    class Meter(Collector[float]):
        name = "meter"
        waits = False

        async def fetch(self, deadline: Deadline) -> float:
            return 12.5

        def render(self, snapshot: float) -> list[Metric]:
            gauge, counter = GAUGE.family(), COUNTER.family()
            gauge.add_metric(('n"1', "0"), snapshot)
            counter.add_metric(('n"1', "0"), snapshot * 3)
            return [gauge, counter]

    server = ExporterServer("test", collectors=[Meter()])
    host, port = await server.start("127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as http:
            url = f"http://{host}:{port}/metrics"
            async with http.get(url, headers={"Accept": "application/openmetrics-text; version=1.0.0"}) as r:
                assert r.headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
                om = await r.text()
            async with http.get(url) as r:
                text = await r.text()
    finally:
        await server.stop()
    volatile = ("process_", "powerplane_scrape_collector_duration")
    ours = [f for f in parse_openmetrics(om) if not f.name.startswith(volatile)]
    plain = [f for f in parse_text(text) if not f.name.startswith(volatile)]
    assert _samples(ours) == _samples(plain)
    assert ("t_energy_joules_total", (("gpu", "0"), ("node", 'n"1')), "37.5") in _samples(ours)

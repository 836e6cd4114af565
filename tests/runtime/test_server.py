"""The HTTP server: deadlines, listen addresses, landing and health pages, the exposition."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import generate_latest
from prometheus_client.core import GaugeMetricFamily

from powerplane.exporters.runtime import ExporterServer, Scrape, parse_listen_address, scrape_deadline
from tests.conftest import Serve

from .conftest import Fixed

# --- deadlines and addresses -------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "timeout", "expected"),
    [
        (None, 10.0, 10.0),  # no header: the configured timeout
        ("15", 10.0, 10.0),  # capped by the configured timeout
        ("5", 10.0, 4.5),  # the header minus the offset
        ("0.6", 10.0, 0.3),  # shorter than twice the offset: half of it
        ("garbage", 10.0, 10.0),
        ("-3", 10.0, 10.0),
        ("nan", 10.0, 10.0),
    ],
)
def test_scrape_deadline(header: str | None, timeout: float, expected: float) -> None:
    assert scrape_deadline(header, timeout).remaining() == pytest.approx(expected, abs=0.05)


@pytest.mark.parametrize(
    ("address", "expected"),
    [(":9871", ("0.0.0.0", 9871)), ("127.0.0.1:80", ("127.0.0.1", 80)), ("[::1]:9871", ("::1", 9871))],
)
def test_listen_address(address: str, expected: tuple[str, int]) -> None:
    assert parse_listen_address(address) == expected


@pytest.mark.parametrize("address", ["9871", "host:", "host:99999", "host:port"])
def test_listen_address_rejects(address: str) -> None:
    with pytest.raises(ValueError, match=r"--web\.listen-address"):
        parse_listen_address(address)


async def test_landing_health_and_ready(serve: Serve) -> None:
    server = ExporterServer("rapl", collectors=[Fixed("c")], description="test exporter")
    served = await serve(server)
    http, base = served.http, served.url
    async with http.get(base + "/") as r:
        assert "powerplane rapl exporter" in await r.text()
        assert 'href="metrics"' in await r.text()
    assert (await served.get("/-/healthy"))[0] == 200
    assert (await served.get("/-/ready"))[0] == 200
    server.ready = False
    assert (await served.get("/-/ready"))[0] == 503
    async with http.get(base + "/metrics", headers={"Accept": "application/openmetrics-text"}) as r:
        text = await r.text()
        assert r.headers["Content-Type"].startswith("application/openmetrics-text")
        assert text.endswith("# EOF\n")
    prometheus_accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
    async with http.get(base + "/metrics", headers={"Accept": prometheus_accept}) as r:
        assert r.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        assert "powerplane_scrape_collector_success" in await r.text()
    async with http.get(base + "/metrics", headers={"Accept-Encoding": "gzip"}) as r:
        assert r.headers.get("Content-Encoding") == "gzip"
        assert "powerplane_build_info" in await r.text()


# --- exposition --------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    labels=st.lists(st.text(max_size=12), min_size=1, max_size=3),
    values=st.lists(
        st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(2**53), 2**53).map(float),
        min_size=1,
        max_size=3,
    ),
    help_text=st.text(max_size=40),
)
def test_fast_renderer_agrees_with_prometheus_client(
    labels: list[str], values: list[float], help_text: str
) -> None:
    from prometheus_client.core import CounterMetricFamily
    from prometheus_client.parser import text_string_to_metric_families

    from powerplane.exporters.runtime import exposition

    gauge = GaugeMetricFamily("g_watts", help_text, labels=["a"])
    counter = CounterMetricFamily("c_joules", help_text, labels=["a"])
    for i, v in enumerate(values):
        for j, label in enumerate(labels):
            gauge.add_metric([f"{label}{i}-{j}"], v)
            counter.add_metric([f"{label}{i}-{j}"], abs(v) if v == v else v)
    ours = exposition.render([gauge, counter]).decode()
    theirs = generate_latest(Scrape("t", [], [gauge, counter])).decode()  # type: ignore[arg-type]

    def samples(text: str) -> list[tuple[str, tuple[tuple[str, str], ...], str]]:
        return sorted(
            (s.name, tuple(sorted(s.labels.items())), repr(s.value))
            for f in text_string_to_metric_families(text)
            if not f.name.startswith("powerplane_")
            for s in f.samples
        )

    assert samples(ours) == samples(theirs)


def test_process_metrics_agree_with_prometheus_client() -> None:
    from prometheus_client.process_collector import ProcessCollector

    from powerplane.exporters.runtime.process import ProcessMetrics

    theirs = {m.name: m.samples[0].value for m in ProcessCollector(registry=None).collect()}
    ours = {m.name: m.samples[0].value for m in ProcessMetrics().collect()}
    assert set(ours) == set(theirs)
    for name in ("process_start_time_seconds", "process_max_fds", "process_virtual_memory_bytes"):
        assert ours[name] == pytest.approx(theirs[name], rel=0.01), name
    assert ours["process_cpu_seconds"] == pytest.approx(theirs["process_cpu_seconds"], abs=0.5)
    assert ours["process_open_fds"] == pytest.approx(theirs["process_open_fds"], abs=3)


def test_exporters_raise_their_open_files_limit() -> None:
    import resource

    from powerplane.exporters.runtime.server import raise_open_files_limit

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowered = min(soft, 256)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowered, hard))
    try:
        raised = raise_open_files_limit(1024)
        assert raised == resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        assert raised == (1024 if hard == resource.RLIM_INFINITY else min(1024, hard))
        assert raise_open_files_limit(512) == raised  # never lowered
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

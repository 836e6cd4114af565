"""The SNMP recordings: the committed ones are what the builders write, the live ones follow the model."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

from powerplane.lab import procs
from powerplane.lab.model import ClusterModel, demo_layout
from powerplane.lab.snmp import BUILDERS, LIVE_WIDTH, RECORDINGS, Snmpsim, live_recordings

from ..conftest import IN_CI
from ..helpers import parse, value


def test_committed_recordings_are_what_the_builders_write() -> None:
    for community, build in BUILDERS.items():
        assert (RECORDINGS / f"{community}.snmprec").read_text() == build(), community


@pytest.fixture
def model(tmp_path: Path):
    cluster = ClusterModel(demo_layout(["node-01", "node-02", "node-03"]), tmp_path)
    yield cluster
    cluster.stop()


def test_live_recordings_keep_every_line_where_it_was(model: ClusterModel) -> None:
    """snmpsim reads lines at offsets it indexed earlier: a rewrite must not move any."""
    devices = live_recordings(model)
    assert set(devices) == {p.name for p in model.layout.pdus} | {c.name for c in model.layout.coolers}
    before = {name: build() for name, build in devices.items()}
    model.boost_rack("rack-01")  # every reading changes, most by several digits
    for _ in range(50):
        model.step(0.2)
    for name, build in devices.items():
        after = build()
        assert after != before[name], name
        assert [len(line) for line in after.splitlines()] == [len(line) for line in before[name].splitlines()]
    numbers = [line.rsplit("|", 1)[1] for line in before["pdu-rack-01-a"].splitlines() if "|66|" in line]
    assert numbers and all(len(n) == LIVE_WIDTH for n in numbers)


def test_a_negative_reading_keeps_its_width() -> None:
    from powerplane.lab.snmp import INTEGER, Row, snmprec_text

    text = snmprec_text([Row("1.3.6.1.2.1.1.1.0", INTEGER, -1), Row("1.3.6.1.2.1.1.2.0", INTEGER, 5)], 6)
    assert text == "1.3.6.1.2.1.1.1.0|2|-00001\n1.3.6.1.2.1.1.2.0|2|000005\n"


def _require_snmpsim() -> None:
    if importlib.util.find_spec("snmpsim") is None:
        message = "REAL COMPONENT MISSING: snmpsim is not installed (run scripts/setup)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


@pytest.mark.e2e
def test_snmpsim_serves_each_rewrite(
    tmp_path: Path, model: ClusterModel, background_loop: procs.BackgroundLoop
) -> None:
    from powerplane.exporters.snmp.config import KIND
    from powerplane.exporters.snmp.exporter import make_server

    _require_snmpsim()
    build = live_recordings(model)["pdu-rack-01-b"]  # a Sentry4: power in whole watts
    (tmp_path / "community").write_text("pdu-rack-01-b")
    config = KIND.load_text(
        yaml.safe_dump(
            {
                "auths": {"b": {"version": 2, "community": {"file": str(tmp_path / "community")}}},
                "allow": ["127.0.0.1/32:*"],
            }
        )
    )
    with Snmpsim(tmp_path / "sim", {"pdu-rack-01-b": build()}) as sim:
        server = make_server(config)
        host, port = background_loop.run(server.start("127.0.0.1", 0))
        try:
            url = f"http://{host}:{port}/probe?target=127.0.0.1:{sim.port}&auth=b"

            def watts() -> float:
                status, body = procs.http_get(url, timeout=30)
                assert status == 200
                return value(parse(body.decode()), "powerplane_pdu_power_watts")

            first = watts()
            assert first == pytest.approx(model.snapshot.pdus["pdu-rack-01-b"].watts, abs=1)
            model.boost_rack("rack-01")
            model.step(0.2)
            sim.replace("pdu-rack-01-b", build())
            expected = round(model.snapshot.pdus["pdu-rack-01-b"].watts)
            procs.wait_until(lambda: watts() == expected, 20, interval=0.5, what="the rewritten reading")
            assert expected > first + 500
        finally:
            background_loop.run(server.stop())

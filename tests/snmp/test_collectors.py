"""Table series written as text: the same series as their samples, labels escaped, counters named."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from powerplane.exporters.runtime import exposition
from powerplane.exporters.snmp.collectors import TableSeries
from powerplane.exporters.snmp.engine import GufoSession, TableWalk
from powerplane.exporters.snmp.exporter import make_server
from powerplane.exporters.snmp.metrics import CATALOGUE
from powerplane.lab.snmp import Snmpsim
from tests.conftest import Serve
from tests.helpers import parse, value

from .conftest import probe, snmp_config


def test_text_and_samples_agree_with_hostile_label_values() -> None:
    power = CATALOGUE["powerplane_pdu_outlet_power_watts"]
    energy = CATALOGUE["powerplane_pdu_outlet_energy_joules_total"]
    names = ['a "quoted" name', "back\\slash", "plain"]
    heads: dict = {}
    families = [
        TableSeries(power, [([str(i), n], 10.0 * i) for i, n in enumerate(names, 1)], {}, heads),
        TableSeries(energy, [([str(i), n], 3.6e6 * i) for i, n in enumerate(names, 1)], {}, heads),
    ]
    text = exposition.render(families).decode()
    parsed = {f.name: f for f in text_string_to_metric_families(text)}
    assert parsed["powerplane_pdu_outlet_energy_joules"].type == "counter"
    for family in families:
        expected = sorted((s.name, tuple(sorted(s.labels.items())), s.value) for s in family.samples)
        found = sorted(
            (s.name, tuple(sorted(s.labels.items())), s.value) for s in parsed[family.name].samples
        )
        assert found == expected
    assert {s.labels["outlet_name"] for s in families[0].samples} == set(names)
    assert all(s.name == "powerplane_pdu_outlet_energy_joules_total" for s in families[1].samples)
    # The next render reuses the line starts; one whose series is gone is not kept.
    again: dict = {}
    TableSeries(power, [(["1", names[0]], 1.0)], heads, again)
    assert list(again) == [("powerplane_pdu_outlet_power_watts", ("1", names[0]))]


def _series(samples: list) -> list:
    return sorted((s.name, tuple(sorted(s.labels.items())), s.value) for s in samples)


async def test_line_starts_are_kept_by_the_device_from_probe_to_probe(
    tmp_path: Path, agents: Snmpsim, serve: Serve
) -> None:
    """A probe's collectors live for that probe; the device's state keeps their line starts."""
    served = await serve(make_server(snmp_config(tmp_path, ["apc-8641"])))
    query = f"target=127.0.0.1:{agents.port}&auth=apc-8641&module=apc_rpdu2"
    first = parse((await probe(served, query))[1])
    (state,) = served.server.prober.devices.values()
    kept = {table: dict(heads) for table, heads in state.heads.items()}
    tables = served.server.prober.config.profiles["apc_rpdu2"].tables
    assert {table for _profile, table in kept} == {t.name for t in tables}
    second = parse((await probe(served, query))[1])
    assert {n: set(s) for n, s in second.items()} == {n: set(s) for n, s in first.items()}
    for table, heads in state.heads.items():  # the second render wrote its lines from the first's
        assert heads.keys() == kept[table].keys()
        assert all(heads[k] is kept[table][k] for k in heads)
    # The state also keeps each table's size, which sizes the next walk's first request.
    assert state.rows[("apc_rpdu2", "outlet")] == len(second["powerplane_pdu_outlet_power_watts"]) > 1
    assert state.rows[("apc_rpdu2", "device")] == 1


async def test_a_column_no_rule_reads_is_not_walked(tmp_path: Path, agents: Snmpsim, serve: Serve) -> None:
    asked: list[str] = []

    class Recording(GufoSession):
        async def walk_table(self, columns: Sequence[str], *args: Any, **kwargs: Any) -> TableWalk:
            asked.extend(columns)
            return await super().walk_table(columns, *args, **kwargs)

    served = await serve(make_server(snmp_config(tmp_path, ["apc-8641"]), session_factory=Recording))
    status, text = await probe(served, f"target=127.0.0.1:{agents.port}&auth=apc-8641&module=apc_rpdu2")
    assert status == 200 and value(parse(text), "powerplane_target_up") == 1.0
    sensor = {t.name: t for t in served.server.prober.config.profiles["apc_rpdu2"].tables}["sensor"]
    unread = dict(sensor.columns)["name"]  # the sensor label is the row index, not the name
    assert unread not in asked
    assert [n for n, _oid in sensor.walked] == ["temperature", "humidity"]
    assert dict(sensor.walked)["temperature"] in asked

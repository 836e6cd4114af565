"""Table series written as text: the same series as their samples, labels escaped, counters named."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from powerplane.exporters.runtime import exposition
from powerplane.exporters.snmp.collectors import TableSeries
from powerplane.exporters.snmp.metrics import CATALOGUE


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

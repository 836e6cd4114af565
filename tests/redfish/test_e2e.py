"""End to end: a real Prometheus scrapes simulated BMCs through the exporter's /probe."""

from __future__ import annotations

from typing import Any

import pytest

from powerplane.exporters.redfish.config import KIND
from powerplane.exporters.redfish.exporter import make_server
from powerplane.lab.redfish import IDRAC9_R640, IDRAC9_R760, IDRAC_XE9680, RedfishLab, SimulatedBMC

PASSWORD = "e2e-bmc-password"


def redfish_scrape_config(exporter: str, targets: dict[str, str], module: str = "default") -> dict[str, Any]:
    """The multi-target pattern: targets are BMCs, the address scraped is the exporter's."""
    return {
        "job_name": "redfish",
        "metrics_path": "/probe",
        "params": {"module": [module]},
        "static_configs": [
            {"targets": [address], "labels": {"node": node}} for node, address in targets.items()
        ],
        "relabel_configs": [
            {"source_labels": ["__address__"], "target_label": "__param_target"},
            {"source_labels": ["__param_target"], "target_label": "instance"},
            {"target_label": "__address__", "replacement": exporter},
        ],
    }


@pytest.mark.e2e
def test_prometheus_stores_the_simulated_node_power(
    prometheus: Any, background_loop: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RF_PW", PASSWORD)
    lab = RedfishLab()
    bmcs = [
        lab.add(
            SimulatedBMC(f"node-{i + 1:02d}", model, password=PASSWORD, load=lambda _t, x=0.2 + 0.3 * i: x)
        )
        for i, model in enumerate((IDRAC9_R640, IDRAC9_R760, IDRAC_XE9680))
    ]
    background_loop.run(lab.start())
    config = KIND.load_text(
        "auths: {idrac: {username: root, password: {env: RF_PW}}}\n"
        "defaults: {scheme: http}\nallow: ['127.0.0.0/8:*']\n"
    )
    server = make_server(config)
    host, port = background_loop.run(server.start())
    try:
        prom = prometheus([redfish_scrape_config(f"{host}:{port}", {b.name: b.address for b in bmcs})])
        prom.wait_targets_up(len(bmcs))
        for device in bmcs:
            stored = prom.wait_value(f'powerplane_redfish_power_watts{{job="redfish",node="{device.name}"}}')
            assert stored == device.power_watts()
            assert prom.value(f'powerplane_target_up{{node="{device.name}"}}') == 1.0
            assert prom.value(f'powerplane_redfish_power_limit_watts{{node="{device.name}"}}') == (
                device.power_limit_watts
            )
        failing = prom.query('powerplane_scrape_collector_success{job="redfish"} == 0')
        assert failing == []
        # each BMC keeps one session however often Prometheus probes it
        assert [b.open_sessions() for b in bmcs] == [1, 1, 1]
    finally:
        background_loop.run(server.stop())
        background_loop.run(lab.stop())
    assert [b.open_sessions() for b in bmcs] == [0, 0, 0]

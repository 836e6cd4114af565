"""End to end: a real Prometheus scrapes the simulated rack through the SNMP exporter's /probe."""

from __future__ import annotations

from pathlib import Path

import pytest

from powerplane.exporters.snmp.exporter import make_server
from powerplane.lab import procs
from powerplane.lab.snmp import Snmpsim

from .conftest import snmp_config


@pytest.mark.e2e
def test_prometheus_scrapes_the_simulated_rack(
    tmp_path: Path, agents: Snmpsim, background_loop: procs.BackgroundLoop, prometheus: object
) -> None:
    communities = ["apc-8641", "raritan-px3", "apc-inrow"]
    config = snmp_config(tmp_path, communities)
    server = make_server(config)
    host, port = background_loop.run(server.start())
    try:
        scrape_configs = [
            {
                "job_name": f"snmp-{c}",
                "metrics_path": "/probe",
                "params": {"auth": [c]},
                "scrape_interval": "2s",
                "scrape_timeout": "2s",
                "static_configs": [
                    {
                        "targets": [f"127.0.0.1:{agents.port}"],
                        "labels": {"cooler" if "inrow" in c else "pdu": c},
                    }
                ],
                "relabel_configs": [
                    {"source_labels": ["__address__"], "target_label": "__param_target"},
                    {"target_label": "__address__", "replacement": f"{host}:{port}"},
                ],
            }
            for c in communities
        ]
        prom = prometheus(scrape_configs)  # type: ignore[operator]
        prom.wait_targets_up(3, timeout=60)
        assert prom.wait_value('powerplane_pdu_power_watts{pdu="apc-8641"}') == pytest.approx(1210.0)
        assert prom.wait_value('powerplane_pdu_power_watts{pdu="raritan-px3"}') == pytest.approx(2840.0)
        assert prom.wait_value('powerplane_cooling_output_watts{cooler="apc-inrow"}') == pytest.approx(
            11800.0
        )
        assert prom.wait_value('sum(powerplane_target_up{job=~"snmp-.*"})') == 3
    finally:
        background_loop.run(server.stop())

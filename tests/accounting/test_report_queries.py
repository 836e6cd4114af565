"""Which queries a report asks: none for a metric without series in the range, the guard only if needed."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web

from powerplane.accounting.prometheus import ClientSettings, PrometheusClient
from powerplane.accounting.report import queries as q
from powerplane.accounting.report.build import Builder, Inventory, Options, metric_names
from powerplane.accounting.report.fold import Window
from powerplane.rulegen.config import RulesConfig

T0 = 1_772_409_600
WINDOW = Window(T0, T0 + 3600, 60)


def test_selected_metrics_are_the_selectors_not_the_labels_or_functions() -> None:
    by_source = {s.name: s for s in q.sources(RulesConfig())}
    bmc = by_source["bmc"].counter_query(60)
    assert q.selected_metrics(bmc) == {"powerplane_redfish_energy_joules_total"}
    assert q.selected_metrics(q.at_step(by_source["gpu"].power, 60)) == {"powerplane_gpu_power_watts"}
    assert q.selected_metrics(q.owner_query(q.UNATTRIBUTED, ("node",), 60)) == {q.UNATTRIBUTED}
    assert q.selected_metrics(q.ALERTS) == {"ALERTS"}


def _builder(present: frozenset[str] | None, groupings: tuple[str, ...] = ("rack",)) -> Builder:
    client = PrometheusClient(ClientSettings(url="http://127.0.0.1:1"))
    return Builder(client, Options(WINDOW, groupings), Inventory(), present)


def test_queries_of_absent_metrics_are_not_asked_and_the_guard_only_where_a_counter_exists() -> None:
    present = frozenset({"powerplane_redfish_power_watts", "powerplane_gpu_energy_joules_total"})
    present |= {"powerplane_gpu_power_watts", "powerplane_gpu_temperature_celsius"}
    nodes = _builder(present).sets["nodes"]
    asked = {name for name, expr in nodes.counters.items() if expr}
    assert asked == {"gpu"}
    # The BMC has only a gauge: integrated without the `unless` of a counter nobody has.
    bmc = "max by (node) (sum without (chassis) (avg_over_time(powerplane_redfish_power_watts[60s]))) * 60"
    assert nodes.integrated["bmc"] == bmc
    # The GPU has both: its gauge is read only where its counter is missing.
    assert "unless on (node)" in nodes.integrated["gpu"]
    assert nodes.integrated["pdu"] == ""
    assert {name for name, expr in nodes.gauges.items() if expr} == {"gpu_temperature"}


def test_without_the_names_every_query_is_asked() -> None:
    builder = _builder(None, ("rack", "job"))
    for entity_set in builder.sets.values():
        for exprs in (entity_set.counters, entity_set.integrated, entity_set.gauges):
            assert all(exprs.values()), entity_set.name
    assert all("unless" in e for e in builder.sets["nodes"].integrated.values())


@pytest.fixture
async def refusing() -> Any:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response({"status": "error", "errorType": "bad_data", "error": "no"}, status=400)

    app = web.Application()
    app.router.add_route("*", "/api/v1/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_an_api_that_cannot_list_names_gets_every_query(refusing: str) -> None:
    async with PrometheusClient(ClientSettings(url=refusing, retries=0)) as client:
        assert await metric_names(client, WINDOW) is None

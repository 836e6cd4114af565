"""The public system-status page for the clusters' users: server-rendered HTML and JSON.

One tab per system (a cluster label, its partitions, login nodes and filesystems) with
availability, utilisation and queues, filesystems, outages and maintenance (public alerts from
Alertmanager, Slurm maintenance reservations, an operator-edited file), power and energy, and
"last updated" per section.  The data comes from configured PromQL only, fetched once per
refresh interval whatever the number of viewers (docs/status-page.md)::

    powerplane status-page --config status.yml       # :9879
    curl http://127.0.0.1:9879/api/v1/status/alpha

Its own health on ``/metrics``:

    powerplane_statuspage_source_up{source="prometheus"} 1
    powerplane_statuspage_upstream_requests_total{source="prometheus"} 31
    powerplane_statuspage_query_up{query="partition_nodes"} 1
"""

from powerplane.components import Component

COMPONENT = Component(
    name="statuspage",
    order=80,
    commands=(("status-page", "powerplane.statuspage.cli:command"),),
    config_kinds=(
        ("statuspage", "powerplane.statuspage.config:KIND"),
        ("outages", "powerplane.statuspage.outages:KIND"),
    ),
    metrics=("powerplane.statuspage.metrics:METRICS",),
    demo="powerplane.statuspage.lab:statuspage_component",
)

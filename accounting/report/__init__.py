"""``powerplane report``: energy, cost and CO2 per cluster, row, rack, node, partition, job, user,
account, pod or namespace over a time range, from any Prometheus-compatible API.

A report reads the exporters' energy counters (and power gauges where a source has no counter),
the inventory's and the scheduler's info metrics for the joins, the attribution rules for owners,
the market exporter's prices and carbon intensity, and ALERTS.  A row of ``--by rack`` in CSV::

    grouping,group,members,energy_kwh,bmc_kwh,pdu_kwh,rapl_kwh,gpu_kwh,...,cost_eur,...,coverage,gaps
    rack,rack-b,3,1.9,0.7,1.2,,1.0,...,0.285,...,0.6667,1

Modules: ``queries`` (the PromQL), ``fold`` (chunks folded into bounded totals), ``build`` (the
queries run and folded), ``rows`` (totals to rows, cost per period), ``model`` (the result),
``columns`` (the tables all formats share), ``text`` / ``xlsx`` / ``html`` (the formats), ``cli``.
"""

"""Jobs and pods: GPU power, energy and cost per Kubernetes pod and per HPC job (from the info joins)."""

from __future__ import annotations

import grafanalib.core as g

from .common import Layout, bargauge, dashboard, table, timeseries

UID = "powerplane-jobs"
NS = 'namespace=~"$namespace"'
J = 'hpc_job=~"$hpc_job"'
#: Joules → MWh times the current price of the selected area gives euros.
EUR_PER_JOULE = '/ 3.6e9 * scalar(avg(powerplane_market_price_eur_per_mwh{area=~"$area"}))'


def build() -> g.Dashboard:
    layout = Layout()
    layout.row("Pods").add(
        timeseries(
            "GPU power per pod",
            [(f"pod:powerplane_gpu_power_watts:sum{{{NS}}}", "{{namespace}}/{{pod}}")],
            "watt",
            stacked=True,
            w=24,
        ),
    )
    layout.add(
        bargauge(
            "GPU energy per pod, last hour",
            [(f"pod:powerplane_gpu_energy_joules:increase1h{{{NS}}} / 3.6e6", "{{namespace}}/{{pod}}")],
            "kwatth",
        ),
        bargauge(
            "GPU energy cost per pod, last hour",
            [
                (
                    f"pod:powerplane_gpu_energy_joules:increase1h{{{NS}}} {EUR_PER_JOULE}",
                    "{{namespace}}/{{pod}}",
                )
            ],
            "currencyEUR",
            description="Last hour's energy at the current day-ahead price of the selected area.",
        ),
    )
    layout.row("HPC jobs").add(
        timeseries(
            "GPU power per job",
            [(f"hpc_job:powerplane_gpu_power_watts:sum{{{J}}}", "job {{hpc_job}}")],
            "watt",
            stacked=True,
            w=24,
        ),
    )
    layout.add(
        bargauge(
            "GPU energy per job, last hour",
            [(f"hpc_job:powerplane_gpu_energy_joules:increase1h{{{J}}} / 3.6e6", "job {{hpc_job}}")],
            "kwatth",
        ),
        bargauge(
            "GPU energy cost per job, last hour",
            [(f"hpc_job:powerplane_gpu_energy_joules:increase1h{{{J}}} {EUR_PER_JOULE}", "job {{hpc_job}}")],
            "currencyEUR",
        ),
    )
    layout.row("Attribution").add(
        table(
            "GPUs held by pods",
            [(f"powerplane_gpu_pod_info{{{NS}}}", "{{namespace}}/{{pod}}")],
            "none",
            hide=("Time", "__name__", "instance", "job", "Value"),
        ),
        table(
            "GPUs running HPC jobs",
            [(f"powerplane_gpu_job_info{{{J}}}", "job {{hpc_job}}")],
            "none",
            hide=("Time", "__name__", "instance", "job", "Value"),
        ),
    )
    return dashboard(
        UID,
        "GPU power, energy and cost per Kubernetes pod and per HPC job, joined through the GPU info metrics.",
        layout,
        ["area", "namespace", "hpc_job"],
    )

"""The scheduler's view from Slurm: partitions, node states, queues, reservations, job allocations.

One exporter per cluster (it is node-independent), reading slurmrestd (preferred; the API
version discovered from the server) or the Slurm commands' JSON (``squeue --json``, ``scontrol
--json show ...``, with the text output where Slurm 22.05 has no JSON).  Every endpoint is read
at most once per ``min_interval`` however many Prometheus replicas scrape; large answers are
streamed, so memory stays bounded by what is kept, not by the size of the job list.

    powerplane_slurm_up 1.0
    powerplane_slurm_node_state{node="node-03",state="drained"} 1.0
    powerplane_slurm_node_reason_info{node="node-03",reason="fan failure"} 1.0
    powerplane_slurm_partition_nodes{partition="gpu",state="idle"} 2.0
    powerplane_slurm_partition_cpus{partition="gpu",state="allocated"} 6.0
    powerplane_slurm_partition_gpus{partition="gpu",state="total",type="h100"} 12.0
    powerplane_slurm_jobs{partition="gpu",state="pending"} 1.0
    powerplane_slurm_jobs_pending{partition="gpu",reason="Resources"} 1.0
    powerplane_slurm_job_info{account="physics",job_id="41",partition="gpu",qos="normal",user="alice"} 1.0
    powerplane_slurm_job_allocation{job_id="41",node="node-01",resource="gpus"} 2.0
    powerplane_slurm_job_gpu_info{gpu="1",job_id="41",node="node-01"} 1.0
    powerplane_slurm_reservation_info{flags="maint,spec_nodes",partition="",reservation="maint"} 1.0
    powerplane_slurm_reservation_start_timestamp_seconds{reservation="maint"} 1.7961e+09
    powerplane_slurm_scheduler_cycle_last_seconds{scheduler="backfill"} 0.000213
"""

from powerplane.components import Component

COMPONENT = Component(
    name="slurm",
    order=80,
    exporter="powerplane.exporters.slurm.exporter:command",
    config_kinds=(("slurm", "powerplane.exporters.slurm.config:KIND"),),
    metrics=("powerplane.exporters.slurm.metrics:METRICS",),
    demo="powerplane.lab.slurm:slurm_component",
)

"""The ledger: node power attributed to jobs and pods, what is left unattributed, and the cost and
emissions rates per job, account, user, pod, namespace, node, rack and cluster.

The recording rules are the attribution model of ``powerplane.accounting.model`` (read there);
the alerts say when the ledger cannot be trusted for a node, a job or a GPU.
"""

from __future__ import annotations

from powerplane.accounting import model

from .config import RulesConfig
from .model import Alert, Family, fmt


def alerts(c: RulesConfig) -> list[Alert]:
    label = c.accounting_slurm_gpu_label
    return [
        Alert(
            "PowerplaneAccountingOverAttributed",
            f"min by (node) ({model.UNATTRIBUTED})\n/ on (node) (max by (node) ({model.BEST}) > 0)\n"
            f"< -{fmt(c.accounting_overattributed_ratio)}",
            "15m",
            "warning",
            "More power is attributed on {{ $labels.node }} than its meter reads",
            "The unattributed power of {{ $labels.node }} is {{ $value | humanizePercentage }} of the "
            "node's: its GPUs read more than the node's meter, or Slurm and Kubernetes both give its CPUs "
            "away. Energy and cost per owner on this node are overstated.",
        ),
        Alert(
            "PowerplaneAccountingJobWithoutPower",
            'max by (cluster, job_id, node) (powerplane_slurm_job_allocation{resource="cpus"})\n'
            f"unless on (node) {model.BEST}",
            "15m",
            "warning",
            "Job {{ $labels.job_id }} runs on {{ $labels.node }}, which has no power data",
            "No source (BMC, PDU outlets, RAPL, GPUs) gives the power of {{ $labels.node }}: the energy, "
            "cost and CO2 of job {{ $labels.job_id }} miss this node.",
        ),
        Alert(
            "PowerplaneAccountingGpuUnmatched",
            "max by (cluster, job_id, node, gpu) (powerplane_slurm_job_gpu_info)\n"
            f'unless on (node, gpu) label_replace(max by (node, {label}) (powerplane_gpu_info), "gpu", "$1", '
            f'"{label}", "(.+)")\n'
            "and on (node) powerplane_gpu_info",
            "30m",
            "warning",
            "Slurm's GPU {{ $labels.gpu }} of job {{ $labels.job_id }} is not a GPU of {{ $labels.node }}",
            "Slurm allocated GPU index {{ $labels.gpu }} on {{ $labels.node }}, but the GPU exporter "
            f"reports no GPU with that {label}: its power stays unattributed. Check "
            "accounting_slurm_gpu_label and the node's gres.conf.",
        ),
    ]


FAMILY = Family("accounting", tests="accounting.yaml", alerts=alerts, recording=model.recording_rules)

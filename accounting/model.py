"""The attribution model: how the metered power of a node becomes its owners' shares.

One description, used twice: the ``accounting`` rule family records these expressions, and
``powerplane job`` reads the recorded series and integrates them over a job's window.

Per node, every evaluation:

* **GPU part.**  Each GPU's measured power goes to its holders: Slurm jobs (their GPU index,
  IDX, joined to the GPU exporter through ``accounting_slurm_gpu_label``), Kubernetes pods
  (the kubelet's pod-resources) and jobs of the HPC job mapping directory when Slurm does not
  list them.  A GPU held by *n* owners gives each ``1/n`` of its power; a MIG instance is worth
  its memory share of the GPU and is split among its own holders.
* **Rest of the node** (node power from the best source minus its GPUs): to Slurm jobs by
  allocated CPUs over the node's CPUs, to pods by measured CPU usage (cAdvisor) over the node's
  capacity (kube-state-metrics).  When more is allocated than the node has, the shares are those
  of the allocation, so they never sum above one.  A job holding a whole node gets all of it.
* **Unattributed**: per node and part, what no owner holds (idle GPUs, idle cores, an idle
  node).  By construction, owners + unattributed = node power at every evaluation; a negative
  value means the meters disagree (GPUs above the node's meter) or two schedulers share a node.
* **Facility overhead** (optional, ``accounting_pue`` or ``accounting_facility_power_query``)
  is recorded apart, never mixed into IT power.

Cost and emissions rates multiply attributed power by the current price and carbon intensity of
the node's market area (inventory: node → cluster → area).

    hpc_job:powerplane_power_watts:attributed{cluster="hpc1",hpc_job="4242",node="gpu-07",part="gpu"} 1398.0
    hpc_job:powerplane_power_watts:attributed{cluster="hpc1",hpc_job="4242",node="gpu-07",part="rest"} 212.5
    pod:powerplane_power_watts:attributed{namespace="ml",node="k8s-03",part="gpu",pod="llm-0"} 690.0
    node:powerplane_power_watts:unattributed{node="gpu-07",part="rest"} 106.2
    hpc_job:powerplane_energy_cost_eur_per_hour:sum{cluster="hpc1",hpc_job="4242"} 0.1449
"""

from __future__ import annotations

from dataclasses import dataclass

from powerplane.rulegen.config import RulesConfig
from powerplane.rulegen.model import ALLOCATIONS_GROUP, NODE_INFO, Recording, sel

#: The parts of a node's IT power an owner can hold.
PARTS = ("gpu", "rest")

# --- recorded names (the contract with dashboards and ``powerplane job``) ----------------------
JOB_HOLDER = "hpc_job_gpu:powerplane_gpu_holder:info"
POD_HOLDER = "pod_gpu:powerplane_gpu_holder:info"
GPU_HOLDERS = "node_gpu:powerplane_gpu_holders:count"
GPU_SHARE = "node_gpu:powerplane_gpu_owner_share:ratio"
GPU_PER_OWNER = "node_gpu:powerplane_gpu_power_watts:per_owner"
REST = "node:powerplane_power_watts:rest"
JOB_CPU_SHARE = "hpc_job_node:powerplane_cpu_share:ratio"
POD_CPU_SHARE = "pod_node:powerplane_cpu_share:ratio"
POD_CPU_USAGE = "pod_node:powerplane_cpu_usage_cores:rate"
JOB_POWER = "hpc_job:powerplane_power_watts:attributed"
JOB_TOTAL = "hpc_job:powerplane_power_watts:sum"
JOB_OWNER = "hpc_job:powerplane_slurm_job_owner:info"
POD_POWER = "pod:powerplane_power_watts:attributed"
UNATTRIBUTED = "node:powerplane_power_watts:unattributed"
UNATTRIBUTED_RATIO = "node:powerplane_unattributed_power:ratio"
NODE_PRICE = "node:powerplane_market_price_eur_per_mwh:area"
NODE_CARBON = "node:powerplane_grid_carbon_intensity_grams_per_kwh:area"
NODE_OVERHEAD = "node:powerplane_facility_power_watts:overhead"
BEST = "node:powerplane_power_watts:best"
NODE_GPU_POWER = "node:powerplane_gpu_power_watts:sum"
GPU_POWER = "powerplane_gpu_power_watts"
GPU_ENERGY = "powerplane_gpu_energy_joules_total"
GPU_ENERGY_START = "powerplane_gpu_energy_start_timestamp_seconds"
RAPL_ENERGY = "powerplane_rapl_energy_joules_total"

_P = ("part",)
_PARTS = {"part": PARTS}


@dataclass(frozen=True)
class Owner:
    """A kind of owner: Slurm (and mapped HPC) jobs, or Kubernetes pods."""

    level: str
    #: The labels naming one owner (``cluster`` as the Prometheus side sets it, possibly absent).
    labels: tuple[str, ...]
    holder: str
    cpu_share: str
    what: str

    @property
    def by(self) -> str:
        return ", ".join(self.labels)

    def series(self, metric: str, operation: str) -> str:
        return f"{self.level}:{metric}:{operation}"

    @property
    def power(self) -> str:
        return self.series("powerplane_power_watts", "attributed")


JOBS = Owner("hpc_job", ("cluster", "hpc_job"), JOB_HOLDER, JOB_CPU_SHARE, "job")
PODS = Owner("pod", ("cluster", "namespace", "pod"), POD_HOLDER, POD_CPU_SHARE, "pod")
OWNERS = (JOBS, PODS)


def as_hpc_job(expr: str) -> str:
    """Slurm's ``job_id`` as the ledger's ``hpc_job`` label."""
    return f'label_replace({expr}, "hpc_job", "$1", "job_id", "(.+)")'


def _max_or_allocation(whole: str, used: str) -> str:
    """Per node: the whole (CPUs, capacity), or what is handed out when that is more."""
    # The whole plus any excess: what is handed out is summed once, not once per branch.
    return f"(\n  {whole}\n  + on (node) clamp_min({used} - on (node) {whole}, 0)\n)"


# --- GPU holders and shares --------------------------------------------------------------------


def _slurm_gpu_holders(c: RulesConfig) -> str:
    gpus = as_hpc_job("max by (cluster, job_id, node, gpu) (powerplane_slurm_job_gpu_info)")
    if c.accounting_slurm_gpu_label == "gpu":
        return (
            f"max by (cluster, hpc_job, node, gpu) (\n  {gpus}\n  and on (node, gpu) powerplane_gpu_info\n)"
        )
    return (
        "max by (cluster, hpc_job, node, gpu) (\n"
        f'  label_replace({gpus}, "minor_number", "$1", "gpu", "(.+)")\n'
        "  * on (node, minor_number) group_left (gpu)"
        ' max by (node, gpu, minor_number) (powerplane_gpu_info{minor_number!=""})\n)'
    )


def _holders(c: RulesConfig) -> list[Recording]:
    # The mapping directory's few series take Slurm's label, not Slurm's many series the ledger's.
    mapped = 'label_replace(powerplane_gpu_job_info, "job_id", "$1", "hpc_job", "(.+)")'
    known = 'powerplane_slurm_job_allocation{resource="cpus"}'
    return [
        Recording(
            JOB_HOLDER,
            f"{_slurm_gpu_holders(c)}\nor\n"
            # The mapping directory speaks for jobs Slurm does not list on that node; Slurm's own
            # allocation wins where both know the job (a prolog may write NVML indexes).
            f"max by (cluster, hpc_job, node, gpu, gpu_instance) (\n  {mapped}\n"
            f"  unless on (node, job_id) {known}\n)",
            ("cluster", "hpc_job", "node", "gpu", "gpu_instance"),
            "A GPU (or MIG instance) a job holds: Slurm's allocation joined on the GPU's "
            f"{c.accounting_slurm_gpu_label}, or the job mapping directory for jobs Slurm does not list; 1.",
            group=ALLOCATIONS_GROUP,
        ),
        Recording(
            POD_HOLDER,
            "max by (cluster, namespace, pod, node, gpu, gpu_instance) (powerplane_gpu_pod_info)",
            ("cluster", "namespace", "pod", "node", "gpu", "gpu_instance"),
            "A GPU (or MIG instance) a pod holds, from the kubelet's pod-resources; 1.",
            group=ALLOCATIONS_GROUP,
        ),
    ]


def _gpu_shares() -> list[Recording]:
    held = f"({JOB_HOLDER} or {POD_HOLDER})"
    mig = (
        "max by (node, gpu, gpu_instance) (powerplane_gpu_mig_memory_total_bytes)\n"
        "  / on (node, gpu) group_left () max by (node, gpu) (powerplane_gpu_memory_total_bytes)"
    )
    return [
        Recording(
            GPU_HOLDERS,
            f"count by (node, gpu, gpu_instance) {held}",
            ("node", "gpu", "gpu_instance"),
            "Owners (jobs and pods) holding the GPU, or the MIG instance when gpu_instance is set.",
            group=ALLOCATIONS_GROUP,
        ),
        Recording(
            GPU_SHARE,
            # Whole GPUs and MIG instances apart: MIG holder counts are selected on their own (the
            # fleet's holders are read once, not three times).
            f'1 / ({GPU_HOLDERS} unless {GPU_HOLDERS}{{gpu_instance!=""}})\n'
            "or\n"
            f'(\n  {mig}\n)\n/ on (node, gpu, gpu_instance) {GPU_HOLDERS}{{gpu_instance!=""}}',
            ("node", "gpu", "gpu_instance"),
            "Share of the GPU's power each holder of the GPU (or MIG instance) gets: 1 / holders, a MIG "
            "instance's memory share / its holders.",
            group=ALLOCATIONS_GROUP,
        ),
        Recording(
            GPU_PER_OWNER,
            f"{GPU_SHARE}\n* on (node, gpu) group_left () max by (node, gpu) ({GPU_POWER})",
            ("node", "gpu", "gpu_instance"),
            "The GPU power each holder of the GPU (or MIG instance) is given.",
        ),
    ]


# --- the rest of the node ----------------------------------------------------------------------


def _rest_shares(c: RulesConfig) -> list[Recording]:
    raw = 'powerplane_slurm_job_allocation{resource="cpus"}'
    alloc = f"max by (cluster, job_id, node) ({raw})"
    cpus = 'max by (node) (powerplane_slurm_node_cpus{state="total"})'
    usage = (
        "sum by (cluster, namespace, pod, node) (\n"
        f"  rate(container_cpu_usage_seconds_total{sel(c.accounting_pod_cpu_selector)}[{c.rate_window}])\n"
        "  * on (namespace, pod) group_left (node)"
        ' max by (namespace, pod, node) (kube_pod_info{node!=""})\n)'
    )
    capacity = 'max by (node) (kube_node_status_capacity{resource="cpu"})'
    return [
        Recording(
            REST,
            f"max by (node) ({BEST})\n- on (node) ({NODE_GPU_POWER} or max by (node) ({BEST}) * 0)",
            ("node",),
            "The node's power besides its GPUs (best node power - GPU power); below 0 when the GPUs "
            "read more than the node's meter.",
        ),
        Recording(
            JOB_CPU_SHARE,
            # One aggregation both drops job_id and merges exporter replicas.
            f"max by (cluster, hpc_job, node) ({as_hpc_job(raw)})\n/ on (node) group_left () "
            + _max_or_allocation(cpus, f"sum by (node) ({alloc})"),
            ("cluster", "hpc_job", "node"),
            "A Slurm job's share of the rest of the node: its allocated CPUs over the node's (or over all "
            "allocated, when more are).",
            group=ALLOCATIONS_GROUP,
        ),
        Recording(
            POD_CPU_USAGE,
            usage,
            ("cluster", "namespace", "pod", "node"),
            "A pod's CPU usage in cores (cAdvisor's container_cpu_usage_seconds_total, rate over "
            "rate_window), on the node kube-state-metrics places it.",
        ),
        Recording(
            POD_CPU_SHARE,
            f"{POD_CPU_USAGE}\n/ on (node) group_left () "
            + _max_or_allocation(capacity, f"sum by (node) ({POD_CPU_USAGE})"),
            ("cluster", "namespace", "pod", "node"),
            "A pod's share of the rest of the node: its measured CPU usage (cAdvisor) over the node's CPU "
            "capacity (kube-state-metrics).",
        ),
    ]


# --- owners, unattributed ----------------------------------------------------------------------


def _by_part(record: str, exprs: dict[str, str], labels: tuple[str, ...], help: str) -> list[Recording]:
    """One rule per part, each setting its ``part`` label."""
    return [
        Recording(record, expr, (*labels, "part"), help, _PARTS, sets={"part": part})
        for part, expr in exprs.items()
    ]


def _attributed(owner: Owner) -> list[Recording]:
    gpu = (
        f"sum by ({owner.by}, node) (\n  {owner.holder}\n"
        f"  * on (node, gpu, gpu_instance) group_left () {GPU_PER_OWNER}\n)"
    )
    rest = f"{owner.cpu_share}\n* on (node) group_left () clamp_min({REST}, 0)"
    return _by_part(
        owner.power,
        {"gpu": gpu, "rest": rest},
        (*owner.labels, "node"),
        f"Power attributed to a {owner.what} on a node, by part: gpu (its share of the GPUs it holds) "
        "and rest (its share of the rest of the node).",
    )


def _unattributed() -> list[Recording]:
    def left(part: str, whole: str) -> str:
        held = " or ".join(f'{o.power}{{part="{part}"}}' for o in OWNERS)
        return f"{whole}\n- on (node) (sum by (node) ({held}) or {whole} * 0)"

    return [
        *_by_part(
            UNATTRIBUTED,
            {"gpu": left("gpu", NODE_GPU_POWER), "rest": left("rest", REST)},
            ("node",),
            "Power of the node no owner holds, by part (idle GPUs, idle cores, an idle node); owners + "
            "unattributed = node power.  Below 0 when meters disagree or schedulers overlap.",
        ),
        Recording(
            UNATTRIBUTED_RATIO,
            f"sum by (node) ({UNATTRIBUTED})\n/ on (node) (max by (node) ({BEST}) > 0)",
            ("node",),
            "Share of the node's power no owner holds.",
        ),
    ]


# --- prices, carbon, and the rates per owner ---------------------------------------------------

_NODE_AREA = (
    "max by (node, area) (\n  powerplane_node_info\n"
    "  * on (cluster) group_left (area) max by (cluster, area) (powerplane_cluster_info)\n)"
)
_EUR = "powerplane_energy_cost_eur_per_hour"
_GRAMS = "powerplane_emissions_grams_per_hour"


def _per_node_rates() -> list[Recording]:
    return [
        Recording(
            NODE_PRICE,
            f"{_NODE_AREA}\n* on (area) group_left () max by (area) (powerplane_market_price_eur_per_mwh)",
            ("node", "area"),
            "The current day-ahead price of the node's market area (inventory: node, cluster, area).",
        ),
        Recording(
            NODE_CARBON,
            f"{_NODE_AREA}\n"
            "* on (area) group_left () max by (area) (powerplane_grid_carbon_intensity_grams_per_kwh)",
            ("node", "area"),
            "The current grid carbon intensity of the node's market area.",
        ),
    ]


def _rates(level: str, labels: tuple[str, ...], power: str, what: str) -> list[Recording]:
    """Cost and emissions of ``power`` (W, with a node label), summed by ``labels``."""
    by = ", ".join(labels)
    return [
        Recording(
            f"{level}:{_EUR}:sum",
            f"sum by ({by}) (\n  {power}\n  * on (node) group_left () {NODE_PRICE}\n) / 1e6",
            labels,
            f"Energy cost rate of {what} at the current price of each node's area, in EUR per hour.",
        ),
        Recording(
            f"{level}:{_GRAMS}:sum",
            f"sum by ({by}) (\n  {power}\n  * on (node) group_left () {NODE_CARBON}\n) / 1e3",
            labels,
            f"Emissions rate of {what} at the current grid carbon intensity, in grams CO2eq per hour.",
        ),
    ]


def _job_groups(c: RulesConfig) -> list[Recording]:
    groups = ("account", "user") if c.accounting_user_series else ("account",)
    owners = ", ".join(groups)
    rules = [
        Recording(
            JOB_TOTAL,
            f"sum by (cluster, hpc_job) ({JOBS.power})",
            ("cluster", "hpc_job"),
            "Power attributed to a job over all its nodes and parts.",
        ),
        Recording(
            JOB_OWNER,
            f"max by (cluster, hpc_job, {owners}) ({as_hpc_job('powerplane_slurm_job_info')})",
            ("cluster", "hpc_job", *groups),
            "A running Slurm job's owner as the ledger joins it (Slurm's job_id as hpc_job); 1.",
            group=ALLOCATIONS_GROUP,
        ),
    ]
    #: (per job, the groups' metric and operation, what it is)
    rates = [
        (JOB_TOTAL, "powerplane_power_watts:attributed", "Power attributed to the running jobs"),
        *((f"{JOBS.level}:{m}:sum", f"{m}:sum", f"Rate, in {unit}, of the running jobs")
          for m, unit in ((_EUR, "EUR per hour"), (_GRAMS, "grams CO2eq per hour"))),
    ]  # fmt: skip

    def by_owner(series: str) -> str:
        join = f"on (cluster, hpc_job) group_left ({owners}) {JOB_OWNER}"
        return f"sum by (cluster, {owners}) (\n  {series}\n  * {join}\n)"

    for series, metric, what in rates:
        if len(groups) > 1:
            # Each job joins its owner once, into (account, user) pairs (no more than the running jobs,
            # usually far fewer); accounts and users are sums over the pairs.
            pairs = f"account_user:{metric}"
            rules.append(
                Recording(
                    pairs, by_owner(series), ("cluster", *groups), f"{what} of each Slurm account and user."
                )
            )
            rules += [
                Recording(
                    f"{g}:{metric}",
                    f"sum by (cluster, {g}) ({pairs})",
                    ("cluster", g),
                    f"{what} of each Slurm {g}.",
                )
                for g in groups
            ]
        else:
            rules.append(
                Recording(
                    f"{owners}:{metric}",
                    by_owner(series),
                    ("cluster", owners),
                    f"{what} of each Slurm {owners}.",
                )
            )
    return rules


def _namespaces() -> list[Recording]:
    labels = ("cluster", "namespace")
    return [
        Recording(
            "namespace:powerplane_power_watts:attributed",
            f"sum by (cluster, namespace) ({PODS.power})",
            labels,
            "Power attributed to the pods of each namespace.",
        ),
        *(
            Recording(
                f"namespace:{metric}:sum",
                f"sum by (cluster, namespace) ({PODS.level}:{metric}:sum)",
                labels,
                f"Rate of the pods of each namespace, in {unit}.",
            )
            for metric, unit in ((_EUR, "EUR per hour"), (_GRAMS, "grams CO2eq per hour"))
        ),
    ]


def _site() -> list[Recording]:
    site = "(rack, row, cluster)"
    return [
        Recording(
            f"node:{_GRAMS}:sum",
            f"max by (node) ({BEST})\n* on (node) group_left () {NODE_CARBON} / 1e3",
            ("node",),
            "Emissions rate of the node's best power, in grams CO2eq per hour.",
        ),
        Recording(
            f"rack:{_GRAMS}:sum",
            f"sum by {site} (\n  node:{_GRAMS}:sum\n  * on (node) group_left {site} {NODE_INFO}\n)",
            ("rack", "row", "cluster"),
            "Emissions rate of the rack's nodes.",
        ),
        Recording(
            f"cluster:{_GRAMS}:sum",
            f"sum by (cluster) (rack:{_GRAMS}:sum)",
            ("cluster",),
            "Emissions rate of the cluster's nodes.",
        ),
        Recording(
            f"rack:{_EUR}:sum",
            f"sum by {site} (\n  node:{_EUR}:sum\n  * on (node) group_left {site} {NODE_INFO}\n)",
            ("rack", "row", "cluster"),
            "Energy cost rate of the rack's nodes, in EUR per hour.",
        ),
        Recording(
            f"node:{_EUR}:unattributed",
            f"sum by (node) ({UNATTRIBUTED})\n* on (node) group_left () {NODE_PRICE} / 1e6",
            ("node",),
            "Energy cost rate of the power no owner holds, in EUR per hour.",
        ),
    ]


# --- facility overhead -------------------------------------------------------------------------


def facility_mode(c: RulesConfig) -> str:
    """How facility overhead is known: "pue", "meter" or "" (not at all)."""
    if c.accounting_pue is not None:
        return "pue"
    return "meter" if c.accounting_facility_power_query else ""


def _facility(c: RulesConfig) -> list[Recording]:
    mode = facility_mode(c)
    if not mode:
        return []
    node_power = f"max by (node) ({BEST})"
    if mode == "pue":
        overhead = f"{node_power} * {c.accounting_pue - 1:g}"  # type: ignore[operator]
        how = f"IT power x (PUE {c.accounting_pue:g} - 1)"
    else:
        # The cluster's measured overhead, shared among its nodes in proportion to their power.
        per_watt = (
            f"(\n    ({c.accounting_facility_power_query})\n"
            "    / on (cluster) (cluster:powerplane_power_watts:sum > 0)\n  )"
        )
        overhead = (
            f"{node_power}\n* on (node) group_left () (\n  max by (node, cluster) (powerplane_node_info)\n"
            f"  * on (cluster) group_left () {per_watt}\n)"
        )
        how = "the measured facility overhead of its cluster, shared by node power"
    rules = [
        Recording(
            NODE_OVERHEAD, overhead, ("node",), f"Facility overhead power of the node: {how}; not IT power."
        )
    ]
    for owner in OWNERS:
        rules.append(
            Recording(
                owner.series("powerplane_facility_power_watts", "attributed"),
                f"sum by ({owner.by}, node) ({owner.power})\n"
                f"* on (node) group_left () ({NODE_OVERHEAD} / on (node) ({node_power} > 0))",
                (*owner.labels, "node"),
                f"Facility overhead given to a {owner.what} on a node, in proportion to its IT power there.",
            )
        )
    return rules


def recording_rules(c: RulesConfig) -> list[Recording]:
    """Every accounting recording rule, in evaluation order."""
    return [
        *_holders(c),
        *_gpu_shares(),
        *_rest_shares(c),
        *(rule for owner in OWNERS for rule in _attributed(owner)),
        *_unattributed(),
        *_per_node_rates(),
        *(rule for o in OWNERS for rule in _rates(o.level, o.labels, o.power, f"each {o.what}")),
        *_job_groups(c),
        *_namespaces(),
        *_site(),
        *_facility(c),
    ]

"""``powerplane doctor``: what this node offers powerplane, with the exact fix for each missing piece.

Run it on a node before (or after) installing the exporters; it reads, never writes::

    $ powerplane doctor --inventory /etc/powerplane/inventory.yaml
    powercap  ok      2 packages, 6 zones under /sys/class/powercap; energy_uj readable
                      package/0 (constraints long_term, short_term, peak_power): energy_uj mode 0440 root:pow…
    nvml      ok      driver 550.90.07, 2 GPUs
                      0 NVIDIA H100 80GB HBM3 GPU-5d1c… 312.4 W
    slurm     ok      scontrol ping: Slurmctld(primary) at head-1 is UP
    jobmap    ok      /var/lib/dcgm-exporter/job-mapping: 2 GPU files
    kubelet   absent  no pod-resources socket at /var/lib/kubelet/pod-resources/kubelet.sock
              fix:    nothing to do on a bare-metal node (pod info needs a kubelet) ...
    bmc       fail    https://10.20.2.101/redfish/v1: certificate verify failed
              fix:    give the BMC's CA with --bmc.ca-file FILE ...

Each check ends ``ok``, ``absent`` (the piece is not there; on some nodes that is expected),
``fail`` (it is there but unusable) or ``skip`` (not asked for); every ``absent`` and ``fail``
carries the fix.  The exit status is 1 when a check failed.  Each check runs under its own
time limit, so a hung NVML call or a BMC that never answers cannot stall the others.  Nothing
secret is read: the BMC check only asks the Redfish service root, which needs no credentials,
and a slurmrestd token comes from ``$SLURM_JWT`` and is never printed.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import stat
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import click

from powerplane.components import Component

COMPONENT = Component(name="doctor", order=95, commands=(("doctor", "powerplane.doctor:command"),))

OK, ABSENT, FAIL, SKIP = "ok", "absent", "fail", "skip"
#: Seconds each check may take before it is reported as hung.
CHECK_SECONDS = 15.0
#: The most of an HTTP answer that is read (a BMC or slurmrestd cannot make the doctor grow).
MAX_BODY = 1 << 20
DEFAULT_SOCKET = "/var/lib/kubelet/pod-resources/kubelet.sock"
DEFAULT_JOB_MAPPING = "/var/lib/dcgm-exporter/job-mapping"


@dataclass(frozen=True)
class Finding:
    check: str
    status: str
    summary: str
    details: tuple[str, ...] = ()
    fix: str = ""


@dataclass(frozen=True)
class Options:
    sysfs: Path = Path("/sys")
    pod_resources_socket: str = DEFAULT_SOCKET
    job_mapping_dir: str = DEFAULT_JOB_MAPPING
    slurmrestd: str = ""
    inventory: Path | None = None
    node: str = ""
    bmc_ca_file: Path | None = None
    timeout: float = 10.0
    #: Which checks to run (all when empty).
    only: tuple[str, ...] = field(default=())


def _clean(text: object, limit: int = 200) -> str:
    """A device's or a tool's text made safe for one terminal line."""
    flat = "".join(c if c.isprintable() else " " for c in str(text))
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


# --- powercap --------------------------------------------------------------------------------------


def _owner(path: Path) -> tuple[str, int]:
    """'mode 0440 root:powerplane-energy' and the permission bits of a file."""
    import grp
    import pwd

    try:
        st = path.stat()
    except OSError as exc:
        return f"metadata unreadable ({exc.strerror})", 0
    try:
        user = pwd.getpwuid(st.st_uid).pw_name
    except KeyError:
        user = str(st.st_uid)
    try:
        group = grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        group = str(st.st_gid)
    bits = stat.S_IMODE(st.st_mode)
    return f"mode {bits:04o} {user}:{group}", bits


def check_powercap(opts: Options) -> Finding:
    from powerplane.exporters.rapl.powercap import PowercapTree
    from powerplane.exporters.runtime import NoData

    tree = PowercapTree(opts.sysfs)
    try:
        tree.discover()
    except NoData as exc:
        return Finding(
            "powercap",
            ABSENT,
            _clean(exc),
            fix="load the RAPL driver: `modprobe intel_rapl_msr` (Intel, and AMD Zen since Linux 5.8; "
            "add it to /etc/modules-load.d/ to keep it); in a container mount the host's /sys and pass "
            "its path as --sysfs",
        )
    zones = tree.zones()
    details = [f"skipped: {_clean(e)}" for e in tree.errors]
    unreadable, root_only, writable = [], 0, 0
    for zone in zones:
        if not zone.has_energy:
            continue
        energy = Path(zone.energy_file or zone.path / "energy_uj")
        mode, bits = _owner(energy)
        try:
            with open(energy, "rb") as f:
                f.read(64)
        except OSError as exc:
            # A group grant (the systemd unit's) lets the exporter read what this user cannot.
            if not bits & stat.S_IRGRP:
                unreadable.append(f"{zone.zone}/{zone.index}: {exc.strerror}")
        root_only += not bits & (stat.S_IRGRP | stat.S_IROTH)
        names = ", ".join(c.name for c in zone.constraints) or "none"
        details.append(f"{zone.zone}/{zone.index} (constraints {names}): energy_uj {mode}")
        writable += sum(os.access(c.limit_file, os.W_OK) for c in zone.constraints if c.limit_file)
    where = f"{len({z.index for z in zones})} packages, {len(zones)} zones under {tree.root}"
    if writable:
        details.append(f"{writable} power-limit files writable by this user (the controller needs that)")
    if unreadable:
        return Finding(
            "powercap", FAIL, f"{where}; energy_uj not readable", (*details, *unreadable), _RAPL_FIX
        )
    if root_only:
        details.append("energy_uj is readable by root only: a non-root RAPL exporter needs the group grant")
        return Finding("powercap", OK, f"{where}; energy_uj readable by root only", tuple(details), _RAPL_FIX)
    return Finding("powercap", OK, f"{where}; energy_uj readable", tuple(details))


_RAPL_FIX = (
    "energy_uj is readable by root only (Linux 5.10 and later): either run the RAPL exporter as root "
    "with no capabilities, or grant one group read access with `systemd-tmpfiles --create "
    "powerplane-rapl.conf` (deploy/systemd/tmpfiles.d) and run the exporter in group "
    "powerplane-energy, as deploy/systemd/powerplane-rapl.service does"
)


# --- NVML ------------------------------------------------------------------------------------------


def _nvml_fix(nv: Any, exc: Exception) -> tuple[str, str]:
    def raised(name: str) -> bool:
        kind = getattr(nv, name, None)
        return isinstance(kind, type) and isinstance(exc, kind)

    if raised("NVMLError_LibraryNotFound"):
        return ABSENT, (
            "no NVIDIA driver library (libnvidia-ml.so.1): install the NVIDIA driver on GPU nodes; in a "
            "container run under the NVIDIA container runtime (the chart sets runtimeClassName: nvidia)"
        )
    if raised("NVMLError_DriverNotLoaded"):
        return FAIL, "the NVIDIA kernel module is not loaded: `modprobe nvidia`, then check `dmesg`"
    if raised("NVMLError_NoPermission"):
        return FAIL, "/dev/nvidia* is not readable and writable by this user: check the device modes"
    return FAIL, "NVML failed: check `nvidia-smi` on this node and the driver's kernel log (`dmesg`)"


def check_nvml(opts: Options) -> Finding:
    try:
        import pynvml
    except ImportError as exc:
        return Finding("nvml", FAIL, f"nvidia-ml-py missing: {exc}", fix="reinstall powerplane (pip)")
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # NVMLError subclasses are generated at run time
        status, fix = _nvml_fix(pynvml, exc)
        return Finding("nvml", status, f"NVML: {_clean(exc)}", fix=fix)
    try:
        driver = _clean(pynvml.nvmlSystemGetDriverVersion())
        count = int(pynvml.nvmlDeviceGetCount())
        details, broken = [], []
        for index in range(min(count, 64)):
            try:
                handle = pynvml.nvmlDeviceGetHandleByIndex(index)
                name = _clean(pynvml.nvmlDeviceGetName(handle), 60)
                uuid = _clean(pynvml.nvmlDeviceGetUUID(handle), 60)
                watts = pynvml.nvmlDeviceGetPowerUsage(handle) / 1000.0
                details.append(f"{index} {name} {uuid} {watts:.1f} W")
            except Exception as exc:
                broken.append(f"{index}: {_clean(exc)}")
    finally:
        pynvml.nvmlShutdown()
    summary = f"driver {driver}, {count} GPUs"
    if broken:
        return Finding(
            "nvml",
            FAIL,
            f"{summary}, {len(broken)} not answering",
            (*details, *broken),
            fix="a GPU that fails here has usually fallen off the bus: see `nvidia-smi -q` and the XID "
            "errors in `dmesg`; a reset or a reboot clears it",
        )
    if count == 0:
        return Finding(
            "nvml", ABSENT, f"{summary}", fix="the driver sees no GPU: check `lspci | grep -i nvidia`"
        )
    return Finding("nvml", OK, summary, tuple(details))


# --- Slurm -----------------------------------------------------------------------------------------


def check_slurm(opts: Options) -> Finding:
    ping = _scontrol_ping(opts)
    if not opts.slurmrestd:
        return ping
    rest = _check_slurmrestd(opts)
    worst = max((ping, rest), key=lambda f: _SEVERITY[f.status])
    fix = "; ".join(f.fix for f in (ping, rest) if f.fix)
    return Finding("slurm", worst.status, f"{ping.summary}; {rest.summary}", ping.details, fix)


_SEVERITY = {SKIP: 0, OK: 1, ABSENT: 2, FAIL: 3}


def _scontrol_ping(opts: Options) -> Finding:
    scontrol = shutil.which("scontrol")
    if scontrol is None:
        return Finding(
            "slurm",
            ABSENT,
            "no scontrol on PATH",
            fix="not a Slurm node, or the client is missing: install slurm-client (Debian) and give it "
            "the cluster's slurm.conf (or configless: SlurmctldHost in DNS SRV records)",
        )
    try:
        done = subprocess.run(
            [scontrol, "ping"], capture_output=True, text=True, errors="replace", timeout=opts.timeout
        )
    except subprocess.TimeoutExpired:
        return Finding(
            "slurm", FAIL, f"scontrol ping did not answer within {opts.timeout:g} s", fix=_SLURM_FIX
        )
    lines = [_clean(line) for line in (done.stdout + done.stderr).splitlines() if line.strip()][:6]
    up = [line for line in lines if line.rstrip().endswith("is UP")]
    if done.returncode == 0 and up:
        return Finding("slurm", OK, f"scontrol ping: {up[0]}", tuple(line for line in lines if line != up[0]))
    return Finding("slurm", FAIL, "scontrol ping: slurmctld not reachable", tuple(lines), _SLURM_FIX)


_SLURM_FIX = (
    "check that slurm.conf (or $SLURM_CONF) names the right SlurmctldHost, that munged runs "
    "(`systemctl status munge`, same /etc/munge/munge.key as the controller) and that SlurmctldPort "
    "(6817) is open from this node"
)


def _check_slurmrestd(opts: Options) -> Finding:
    url = opts.slurmrestd.rstrip("/") + "/openapi/v3"
    headers = {}
    token = os.environ.get("SLURM_JWT")
    if token:
        headers["X-SLURM-USER-TOKEN"] = token
    status, _body, error = _http_get(url, headers, opts.timeout, None)
    if error:
        return Finding(
            "slurm", FAIL, f"slurmrestd {url}: {error}", fix="start slurmrestd or fix --slurmrestd"
        )
    if status in (401, 403):
        return Finding(
            "slurm",
            FAIL,
            f"slurmrestd {url}: HTTP {status}",
            fix="slurmrestd refused the token: set SLURM_JWT (`scontrol token lifespan=3600`)",
        )
    if status != 200:
        return Finding("slurm", FAIL, f"slurmrestd {url}: HTTP {status}", fix="is this slurmrestd's address?")
    return Finding("slurm", OK, f"slurmrestd {url}: HTTP 200")


def check_jobmap(opts: Options) -> Finding:
    if not opts.job_mapping_dir:
        return Finding("jobmap", SKIP, "no job mapping directory asked for")
    path = Path(opts.job_mapping_dir)
    fix = (
        "install deploy/slurm/powerplane-slurm as the Prolog and Epilog of slurmd (docs/install.md, "
        "'Bare metal with Slurm'); it writes one file per GPU index listing the jobs on it"
    )
    if not path.is_dir():
        status = ABSENT if shutil.which("scontrol") else SKIP
        return Finding(
            "jobmap", status, f"no job mapping directory at {path}", fix=fix if status == ABSENT else ""
        )
    try:
        names = [n for n in os.listdir(path) if not n.startswith(".")]
    except OSError as exc:
        return Finding(
            "jobmap", FAIL, f"{path}: {exc.strerror}", fix="the GPU exporter must be able to read it"
        )
    odd = sorted(n for n in names if not n.isdigit())[:5]
    details = tuple(f"not a GPU index: {_clean(n, 40)}" for n in odd)
    return Finding("jobmap", OK, f"{path}: {len(names) - len(odd)} GPU files", details)


# --- kubelet ---------------------------------------------------------------------------------------


def check_kubelet(opts: Options) -> Finding:
    if not opts.pod_resources_socket:
        return Finding("kubelet", SKIP, "no pod-resources socket asked for")
    path = Path(opts.pod_resources_socket)
    if not path.exists():
        return Finding(
            "kubelet",
            ABSENT,
            f"no pod-resources socket at {path}",
            fix="nothing to do on a bare-metal node (pod info needs a kubelet); on Kubernetes mount "
            "/var/lib/kubelet/pod-resources into the GPU exporter (chart: gpu.podResources.enabled)",
        )
    if not stat.S_ISSOCK(path.stat().st_mode):
        return Finding(
            "kubelet", FAIL, f"{path} is not a socket", fix="point --pod-resources.socket at the kubelet's"
        )
    import asyncio

    from powerplane.exporters.gpu.podresources import list_assignments

    try:
        found = asyncio.run(list_assignments(str(path), opts.timeout))
    except PermissionError as exc:
        return Finding("kubelet", FAIL, f"{path}: {exc.strerror}", fix=_KUBELET_ROOT)
    except Exception as exc:  # grpc.RpcError and decode errors
        details = getattr(exc, "details", None)
        text = _clean((details() if callable(details) else None) or exc)
        fix = _KUBELET_ROOT if "ermission" in text else "check that the kubelet runs and serves pod-resources"
        return Finding("kubelet", FAIL, f"{path}: {text}", fix=fix)
    pods = {(a.namespace, a.pod) for a in found}
    return Finding("kubelet", OK, f"{path}: {len(found)} device assignments in {len(pods)} pods")


_KUBELET_ROOT = (
    "the socket is root's and needs write access to connect: run the GPU exporter as root "
    "(chart: gpu.podResources.enabled=true does that)"
)


# --- BMC -------------------------------------------------------------------------------------------


def _http_get(
    url: str, headers: dict[str, str], timeout: float, context: ssl.SSLContext | None
) -> tuple[int, bytes, str]:
    """(status, body, error): error is set when no HTTP answer came back."""
    if not url.startswith(("http://", "https://")):
        return 0, b"", "not an http:// or https:// address"
    request = urllib.request.Request(url, headers={"Accept": "application/json", **headers})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=context) as response:  # noqa: S310
            return int(response.status), response.read(MAX_BODY), ""
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(MAX_BODY) if exc.fp else b"", ""
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, ssl.SSLCertVerificationError):
            return 0, b"", _clean(f"certificate verify failed: {reason.verify_message}")
        return 0, b"", _clean(getattr(reason, "strerror", None) or reason)
    except (OSError, ValueError) as exc:
        return 0, b"", _clean(exc)


def _node_name(opts: Options) -> str:
    return opts.node or os.environ.get("NODE_NAME") or socket.gethostname().split(".")[0]


def check_bmc(opts: Options) -> Finding:
    if opts.inventory is None:
        return Finding("bmc", SKIP, "no --inventory given")
    from powerplane.exporters.inventory.config import KIND
    from powerplane.exporters.runtime.config import ConfigError

    try:
        inventory = KIND.load(opts.inventory)
    except ConfigError as exc:
        return Finding(
            "bmc",
            FAIL,
            f"{opts.inventory}: invalid inventory",
            tuple(_clean(e) for e in exc.errors[:10]),
            fix=f"`powerplane check-config --kind inventory {opts.inventory}` lists every error",
        )
    name = _node_name(opts)
    node = next((n for n in inventory.nodes if n.name == name), None)
    if node is None:
        return Finding(
            "bmc",
            FAIL,
            f"node {name!r} is not in {opts.inventory}",
            fix="add it under `nodes:`, or pass --node with its inventory name",
        )
    if node.bmc is None:
        return Finding(
            "bmc",
            ABSENT,
            f"node {name} has no bmc in {opts.inventory}",
            fix=f"add `bmc: {{address: https://<bmc>, module: …, auth: …}}` to node {name}",
        )
    address = node.bmc.address if "://" in node.bmc.address else f"https://{node.bmc.address}"
    url = address.rstrip("/") + "/redfish/v1"
    context = ssl.create_default_context(cafile=str(opts.bmc_ca_file) if opts.bmc_ca_file else None)
    status, body, error = _http_get(url, {}, opts.timeout, context if url.startswith("https:") else None)
    return _bmc_finding(url, status, body, error)


def _bmc_finding(url: str, status: int, body: bytes, error: str) -> Finding:
    if error:
        if "certificate" in error.lower():
            fix = (
                "the BMC's certificate is not trusted: give its CA with --bmc.ca-file FILE here, and "
                "`tls: {ca_file: FILE}` in the Redfish exporter's auth (never turn verification off "
                "unless the auth says `insecure_skip_verify: true` on purpose)"
            )
        else:
            fix = (
                "the BMC is not reachable from this host: BMC networks are often reachable only from "
                "the management host, so run the doctor where the Redfish exporter runs; check the "
                "address, DNS and the firewall (HTTPS, port 443)"
            )
        return Finding("bmc", FAIL, f"{url}: {error}", fix=fix)
    if status != 200:
        return Finding(
            "bmc",
            FAIL,
            f"{url}: HTTP {status}",
            fix="the service root should answer without credentials: is Redfish enabled on this BMC "
            "(iDRAC: Redfish service in iDRAC settings → Services) and is this its address?",
        )
    try:
        root = json.loads(body)
        version = _clean(root.get("RedfishVersion", "?"), 20)
        vendor = _clean(" ".join(str(root.get(k, "")) for k in ("Vendor", "Product")).strip() or "?", 80)
    except (ValueError, AttributeError, RecursionError):
        return Finding(
            "bmc", FAIL, f"{url}: the answer is not a Redfish service root (not JSON)", fix=_NOT_REDFISH
        )
    return Finding("bmc", OK, f"{url}: Redfish {version}, {vendor}")


_NOT_REDFISH = "the address answers HTTP but not Redfish: check the inventory's bmc address"


# --- running the checks ----------------------------------------------------------------------------

CHECKS: dict[str, Callable[[Options], Finding]] = {
    "powercap": check_powercap,
    "nvml": check_nvml,
    "slurm": check_slurm,
    "jobmap": check_jobmap,
    "kubelet": check_kubelet,
    "bmc": check_bmc,
}


def _bounded(name: str, check: Callable[[Options], Finding], opts: Options) -> Finding:
    """Run one check in a daemon thread: a hung driver call is reported, not waited for."""
    result: list[Finding] = []

    def run() -> None:
        try:
            result.append(check(opts))
        except Exception as exc:
            result.append(Finding(name, FAIL, f"the check itself failed: {_clean(exc)}", fix=_BUG))

    thread = threading.Thread(target=run, name=f"doctor-{name}", daemon=True)
    thread.start()
    thread.join(CHECK_SECONDS + opts.timeout)
    if not result:
        return Finding(name, FAIL, f"no answer within {CHECK_SECONDS + opts.timeout:g} s", fix=_HUNG[name])
    return result[0]


_BUG = "this is a bug in powerplane doctor: please report it with the line above"
_HUNG = {
    "powercap": "a sysfs read hung: check `dmesg` for the RAPL driver",
    "nvml": "NVML hung: a GPU or the driver is stuck; see `nvidia-smi` and `dmesg`",
    "slurm": _SLURM_FIX,
    "jobmap": "a read of the job mapping directory hung: is it on a stalled network file system?",
    "kubelet": "the kubelet does not answer on its pod-resources socket: restart the kubelet",
    "bmc": "the BMC does not answer: check it from the management network",
}


def diagnose(opts: Options) -> list[Finding]:
    """Every selected check, in order."""
    names = [n for n in CHECKS if not opts.only or n in opts.only]
    return [_bounded(name, CHECKS[name], opts) for name in names]


def render(findings: list[Finding], width: int = 100) -> str:
    """The findings as aligned text, long lines wrapped under their column."""
    import textwrap

    column = max((len(f.check) for f in findings), default=6) + 2
    indent = " " * (column + 8)
    lines = []
    for f in findings:
        lines += textwrap.wrap(
            f"{f.check:<{column}}{f.status:<8}{f.summary}", width, subsequent_indent=indent
        ) or [f.check]
        for detail in f.details:
            lines += textwrap.wrap(detail, width, initial_indent=indent, subsequent_indent=indent + "  ")
        if f.fix:
            lines += textwrap.wrap(
                f"{'':<{column}}{'fix:':<8}{f.fix}", width, subsequent_indent=indent, break_on_hyphens=False
            )
    return "\n".join(lines) + "\n"


@click.command("doctor")
@click.option(
    "--sysfs", type=click.Path(path_type=Path), default="/sys", show_default=True, help="sysfs mount point."
)
@click.option(
    "--pod-resources.socket",
    "pod_socket",
    default=DEFAULT_SOCKET,
    show_default=True,
    help="Kubelet socket ('' to skip).",
)
@click.option(
    "--hpc-job-mapping.dir",
    "job_dir",
    default=DEFAULT_JOB_MAPPING,
    show_default=True,
    help="GPU job mapping directory ('' to skip).",
)
@click.option(
    "--slurmrestd", metavar="URL", default="", help="Also check slurmrestd at URL (token from $SLURM_JWT)."
)
@click.option(
    "--inventory", type=click.Path(path_type=Path, dir_okay=False), help="Inventory: check this node's BMC."
)
@click.option(
    "--node", default="", help="This node's inventory name (default: $NODE_NAME, else the short host name)."
)
@click.option(
    "--bmc.ca-file",
    "bmc_ca",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="CA bundle for the BMC's certificate.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(0.1, 120),
    default=10.0,
    show_default=True,
    help="Seconds per network call.",
)
@click.option(
    "--check", "only", multiple=True, type=click.Choice(list(CHECKS)), help="Run only these checks (repeat)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
def command(
    sysfs: Path,
    pod_socket: str,
    job_dir: str,
    slurmrestd: str,
    inventory: Path | None,
    node: str,
    bmc_ca: Path | None,
    timeout: float,
    only: tuple[str, ...],
    as_json: bool,
) -> None:
    """Check what this node offers powerplane (powercap, NVML, Slurm, kubelet, BMC), with fixes."""
    opts = Options(sysfs, pod_socket, job_dir, slurmrestd, inventory, node, bmc_ca, timeout, only)
    findings = diagnose(opts)
    if as_json:
        click.echo(json.dumps([asdict(f) for f in findings], indent=2))
    else:
        click.echo(render(findings), nl=False)
    sys.exit(1 if any(f.status == FAIL for f in findings) else 0)

"""The shipped units started by a real systemd (252, Debian 12, booted with systemd-nspawn),
from a wheel install in /opt/powerplane: each runs under its hardening as on a node.

The RAPL exporter reads a lab powercap tree laid over the container's /sys (tmpfs on /sys/class
and /sys/devices/virtual) through the group grant its unit applies; the GPU exporter loads the
fake libnvidia-ml.so.1 (environment file) through ctypes. The controller and the SNMP exporter
are not started here: from a wheel they cannot run yet (the wheel lacks the CRD and the SNMP
profiles; docs/install.md and the packaging issue).
"""

from __future__ import annotations

import json
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from powerplane.lab import procs
from powerplane.lab.fakenvml import CONFIG_ENV, FakeGpu, FakeNvml
from powerplane.lab.market import write_profile_yaml
from tests.conftest import require_binary

from .boot import BootedNode
from .units import ROOT

pytestmark = [pytest.mark.image, pytest.mark.timeout(1800)]

LAB_SYS = (
    "from pathlib import Path; from powerplane.lab.powercap import PowercapLab, intel_server; "
    "PowercapLab(Path('/sys'), intel_server()).create()"
)


@pytest.fixture(scope="module")
def node(host_wheels: Path) -> Iterator[BootedNode]:
    for binary in ("systemd-nspawn", "mmdebstrap", "nsenter", "chroot"):
        require_binary(binary)
    with tempfile.TemporaryDirectory(prefix="pp-boot-") as tmp:
        work = Path(tmp)
        machine = BootedNode(work / "root", "pp-boot")
        machine.root.mkdir()
        machine.install(host_wheels).boot()
        try:
            yield machine
        finally:
            machine.stop()


def metrics(port: int) -> str:
    status, body = procs.http_get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    return body.decode()


def test_rapl_reads_energy_as_a_transient_user_through_the_group_grant(node: BootedNode) -> None:
    node.run("mount", "-t", "tmpfs", "none", "/sys/class")
    node.run("mount", "-t", "tmpfs", "none", "/sys/devices/virtual")
    node.run("/opt/powerplane/bin/python", "-c", LAB_SYS)
    node.run("sh", "-c", "find /sys/devices/virtual/powercap -name energy_uj -exec chmod 0400 {} +")
    port = node.start("powerplane-rapl.service")
    text = metrics(port)
    assert re.search(r'^powerplane_rapl_energy_joules_total\{zone="package",index="0"\} ', text, re.M), text
    gid = node.run("getent", "group", "powerplane-energy").stdout.split(":")[2]
    energy = node.root / "sys/devices/virtual/powercap/intel-rapl/intel-rapl:0/energy_uj"
    listing = node.run(
        "stat", "-c", "%a %u %g", "/sys/devices/virtual/powercap/intel-rapl/intel-rapl:0/energy_uj"
    )
    assert listing.stdout.split() == ["440", "0", gid], "ExecStartPre=+ applied the tmpfiles grant"
    assert not energy.exists(), "the lab tree lives in the container's mount namespace only"
    status = node.status(
        "powerplane-rapl.service", "Uid", "Groups", "CapEff", "CapBnd", "NoNewPrivs", "Seccomp"
    )
    assert status["Uid"].split()[0] != "0" and gid in status["Groups"].split()
    assert status["CapEff"] == status["CapBnd"] == "0000000000000000"
    assert status["NoNewPrivs"] == "1" and status["Seccomp"] == "2"


def test_gpu_exporter_loads_nvml_under_its_hardening(node: BootedNode, tmp_path: Path) -> None:
    require_binary("gcc")
    machine = FakeNvml(tmp_path, [FakeGpu("h100-sxm"), FakeGpu("l40s")])
    library = Path(machine.env()["LD_LIBRARY_PATH"].split(":")[0]) / "libnvidia-ml.so.1"
    target = node.root / "srv/fakenvml"
    target.mkdir(parents=True)
    shutil.copy(library, target)
    shutil.copy(machine.config_path, target / "fakenvml.conf")
    for path in (target, *target.iterdir()):
        path.chmod(path.stat().st_mode | stat.S_IROTH | stat.S_IXOTH)
    node.write("/var/lib/dcgm-exporter/job-mapping/0", "4242\n")
    port = node.start(
        "powerplane-gpu.service",
        {"LD_LIBRARY_PATH": "/srv/fakenvml", CONFIG_ENV: "/srv/fakenvml/fakenvml.conf"},
    )
    text = metrics(port)
    assert len(re.findall(r"^powerplane_gpu_power_watts\{", text, re.M)) == 2, text[-1500:]
    assert re.search(
        r'^powerplane_gpu_job_info\{gpu="0",uuid="[^"]+",gpu_instance="",hpc_job="4242"\} 1', text, re.M
    )
    assert node.status("powerplane-gpu.service", "CapEff")["CapEff"] == "0000000000000000"


def test_central_exporters_run_as_transient_users(node: BootedNode) -> None:
    write_profile_yaml(node.root / "etc/powerplane/curve.yaml")
    (node.root / "etc/powerplane/curve.yaml").chmod(0o644)
    node.write(
        "/etc/powerplane/market.yaml",
        "areas: [DE-LU]\nproviders:\n  - {type: static, path: /etc/powerplane/curve.yaml}\n"
        "store: {path: /var/lib/powerplane-market}\n",
    )
    node.write(
        "/etc/powerplane/redfish-default.yaml",
        "auths:\n  idrac: {username: {env: REDFISH_USERNAME}, password: {env: REDFISH_PASSWORD}}\n"
        "defaults: {auth: idrac}\nallow: [127.0.0.0/8]\n",
    )
    node.write("/etc/powerplane/inventory.yaml", (ROOT / "docs/examples/inventory.yaml").read_text())
    redfish = node.start(
        "powerplane-redfish@default.service", {"REDFISH_USERNAME": "monitor", "REDFISH_PASSWORD": "s3cret-rf"}
    )
    market = node.start("powerplane-market.service")
    inventory = node.start("powerplane-inventory.service")
    assert re.search(r'^powerplane_market_price_eur_per_mwh\{area="DE-LU"\} ', metrics(market), re.M)
    assert 'powerplane_node_info{node="gpu-a01-01"' in metrics(inventory)
    status, body = procs.http_get(f"http://127.0.0.1:{redfish}/probe?target=10.9.9.9")
    assert status == 400 and b"neither configured nor allowed" in body
    for unit in (
        "powerplane-redfish@default.service",
        "powerplane-market.service",
        "powerplane-inventory.service",
    ):
        shown = node.run("systemctl", "show", "-p", "DynamicUser,User", unit).stdout
        assert "DynamicUser=yes" in shown and "User=powerplane-" in shown, shown
        assert node.status(unit, "CapEff")["CapEff"] == "0000000000000000"
        command = node.run("systemctl", "show", "-p", "ExecStart", "--value", unit).stdout
        assert "s3cret" not in command
    assert "s3cret-rf" not in node.journal("powerplane-redfish@default.service")


def test_the_path_unit_keeps_the_probe_targets_current(node: BootedNode) -> None:
    if not (node.root / "etc/powerplane/inventory.yaml").exists():
        node.write("/etc/powerplane/inventory.yaml", (ROOT / "docs/examples/inventory.yaml").read_text())
    node.run("systemctl", "start", "powerplane-inventory-sd.path", "powerplane-inventory-sd.service")
    sd = node.root / "var/lib/powerplane-sd"
    assert stat.S_IMODE(sd.stat().st_mode) == 0o755
    pdus = json.loads((sd / "snmp-pdu.json").read_text())
    assert {g["labels"]["pdu"] for g in pdus} == {"pdu-a01-l", "pdu-a02-l"}
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o644 for p in sd.iterdir()), "Prometheus can read them"
    inventory = node.root / "etc/powerplane/inventory.yaml"
    inventory.write_text(inventory.read_text().replace("pdu-a02-l", "pdu-a02-r"))
    procs.wait_until(
        lambda: "pdu-a02-r" in (sd / "snmp-pdu.json").read_text(), 60, what="the path unit to regenerate"
    )

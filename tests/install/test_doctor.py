"""`powerplane doctor` on lab nodes: a powercap tree, the fake NVML, the fake kubelet, a simulated
BMC over verified TLS, and the real `scontrol`; run as the command a user types (a subprocess)."""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiohttp import web

from powerplane.exporters.gpu.podresources import DeviceAssignment
from powerplane.lab import procs
from powerplane.lab.fakenvml import FakeGpu, FakeNvml
from powerplane.lab.kubelet import FakePodResources
from powerplane.lab.powercap import PowercapLab, amd_zen, intel_server
from powerplane.lab.redfish import IDRAC9_R760, RedfishLab, SimulatedBMC
from tests.conftest import require_binary

from .units import ROOT

POWERPLANE = str(ROOT / ".venv/bin/powerplane")
#: A PATH without Slurm's client, for the checks that must not find it.
NO_SLURM_PATH = str(Path(POWERPLANE).parent) + ":/nonexistent"


def doctor(
    *args: str, env: Mapping[str, str] | None = None, user: int | None = None
) -> tuple[int, list[Any]]:
    base = {k: v for k, v in os.environ.items() if k not in ("NODE_NAME", "SLURM_JWT", "LD_LIBRARY_PATH")}
    argv = [POWERPLANE, "doctor", "--json", *args]
    if user is not None:
        argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *argv]
    done = subprocess.run(argv, env={**base, **(env or {})}, capture_output=True, text=True, timeout=120)
    assert done.returncode in (0, 1), done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, json.loads(done.stdout)


def finding(findings: list[Any], check: str) -> dict[str, Any]:
    (found,) = (f for f in findings if f["check"] == check)
    assert found["status"] in ("ok", "skip") or found["fix"], f"{check}: every problem carries its fix"
    return dict(found)


def no_nvml(tmp_path: Path) -> dict[str, str]:
    """A dynamic loader path with no libnvidia-ml.so.1 (none is installed on these machines)."""
    return {"LD_LIBRARY_PATH": str(tmp_path / "no-nvml"), "PATH": NO_SLURM_PATH}


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_bmc(background_loop: procs.BackgroundLoop, ca: trustme.CA) -> Iterator[SimulatedBMC]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    lab = RedfishLab(ssl_context=context)
    background_loop.run(lab.start())
    bmc = background_loop.run(lab.start_bmc(SimulatedBMC("gpu-1", IDRAC9_R760)))
    yield bmc
    background_loop.run(lab.stop())


def inventory(tmp_path: Path, bmc_address: str) -> Path:
    path = tmp_path / "inventory.yaml"
    path.write_text(
        "clusters: [{name: c1}]\nrows: [{name: r1, cluster: c1}]\nracks: [{name: a01, row: r1}]\n"
        "nodes:\n"
        f'  - {{name: gpu-1, rack: a01, bmc: {{address: "{bmc_address}", module: idrac, auth: idrac}}}}\n'
        "  - {name: cpu-1, rack: a01}\n"
    )
    return path


def test_a_gpu_node_with_everything(
    tmp_path: Path, background_loop: procs.BackgroundLoop, tls_bmc: SimulatedBMC, ca: trustme.CA
) -> None:
    require_binary("gcc")
    PowercapLab(tmp_path / "sys", intel_server()).create()
    machine = FakeNvml(tmp_path, [FakeGpu("h100-sxm"), FakeGpu("l40s")], driver_version="550.90.07")
    socket_path = tmp_path / "kubelet" / "kubelet.sock"
    kubelet = FakePodResources(socket_path)
    kubelet.assignments = [DeviceAssignment("ml", "llm-0", "train", "nvidia.com/gpu", "GPU-x")]
    background_loop.run(kubelet.start())
    jobs = tmp_path / "job-mapping"
    jobs.mkdir()
    (jobs / "0").write_text("4242\n")
    ca_file = tmp_path / "bmc-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    try:
        code, findings = doctor(
            f"--sysfs={tmp_path / 'sys'}",
            f"--pod-resources.socket={socket_path}",
            f"--hpc-job-mapping.dir={jobs}",
            f"--inventory={inventory(tmp_path, f'https://127.0.0.1:{tls_bmc.port}')}",
            "--node=gpu-1",
            f"--bmc.ca-file={ca_file}",
            *(f"--check={c}" for c in ("powercap", "nvml", "jobmap", "kubelet", "bmc")),
            env=machine.env(),
        )
    finally:
        background_loop.run(kubelet.stop())
    assert code == 0, findings
    powercap = finding(findings, "powercap")
    assert powercap["status"] == "ok" and powercap["summary"].startswith("2 packages, 6 zones")
    assert any("package/0 (constraints long_term, short_term, peak_power)" in d for d in powercap["details"])
    nvml = finding(findings, "nvml")
    assert (nvml["status"], nvml["summary"]) == ("ok", "driver 550.90.07, 2 GPUs")
    assert (
        nvml["details"][0].startswith("0 NVIDIA H100 80GB HBM3 GPU-")
        and "1 NVIDIA L40S" in nvml["details"][1]
    )
    assert finding(findings, "jobmap")["summary"] == f"{jobs}: 1 GPU files"
    assert finding(findings, "kubelet")["summary"] == f"{socket_path}: 1 device assignments in 1 pods"
    bmc = finding(findings, "bmc")
    assert bmc["status"] == "ok" and "Redfish 1." in bmc["summary"], bmc
    assert tls_bmc.requests["/redfish/v1"] == 1 and not tls_bmc.sessions, "the service root, no login"


def test_a_bare_node_gets_a_fix_for_each_missing_piece(tmp_path: Path) -> None:
    (tmp_path / "sys").mkdir()
    code, findings = doctor(
        f"--sysfs={tmp_path / 'sys'}",
        f"--pod-resources.socket={tmp_path / 'none.sock'}",
        f"--hpc-job-mapping.dir={tmp_path / 'none'}",
        env=no_nvml(tmp_path),
    )
    assert code == 0, "absent pieces are not failures"
    assert {f["check"]: f["status"] for f in findings} == {
        "powercap": "absent",
        "nvml": "absent",
        "slurm": "absent",
        "jobmap": "skip",
        "kubelet": "absent",
        "bmc": "skip",
    }
    assert "modprobe intel_rapl_msr" in finding(findings, "powercap")["fix"]
    assert "libnvidia-ml.so.1" in finding(findings, "nvml")["fix"]
    assert "slurm-client" in finding(findings, "slurm")["fix"]


def test_the_text_report_shows_each_fix(tmp_path: Path) -> None:
    (tmp_path / "sys").mkdir()
    done = subprocess.run(
        [POWERPLANE, "doctor", f"--sysfs={tmp_path / 'sys'}", "--check=powercap", "--check=nvml"],
        env={**os.environ, **no_nvml(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = done.stdout.splitlines()
    assert lines[0].split()[:2] == ["powercap", "absent"]
    assert sum(line.split()[0] == "fix:" for line in lines) == 2
    assert any(line.split()[:2] == ["nvml", "absent"] for line in lines)
    assert max(len(line) for line in lines) <= 110, "wrapped for a terminal"


def test_amd_zones_without_constraints(tmp_path: Path) -> None:
    PowercapLab(tmp_path / "sys", amd_zen()).create()
    _, findings = doctor(f"--sysfs={tmp_path / 'sys'}", "--check=powercap")
    powercap = finding(findings, "powercap")
    assert powercap["status"] == "ok" and "(constraints none)" in powercap["details"][0]


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A directory 'nobody' can traverse (pytest's tmp_path is private to root)."""
    with tempfile.TemporaryDirectory(prefix="powerplane-doctor-") as tmp:
        Path(tmp).chmod(0o755)
        yield Path(tmp)


def _nobody_can_run_powerplane() -> None:
    require_binary("setpriv")
    probe = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", POWERPLANE, "--version"],
        capture_output=True,
        timeout=60,
    )
    if probe.returncode != 0:
        pytest.skip(f"the virtual environment at {ROOT} is not readable by nobody")


def test_energy_readable_by_root_only_fails_for_a_user_with_the_fix(shared_tmp: Path) -> None:
    _nobody_can_run_powerplane()
    PowercapLab(shared_tmp / "sys", intel_server()).create()
    for energy in (shared_tmp / "sys").rglob("energy_uj"):
        energy.chmod(0o400)
    code, findings = doctor(f"--sysfs={shared_tmp / 'sys'}", "--check=powercap", user=65534)
    powercap = finding(findings, "powercap")
    assert code == 1 and powercap["status"] == "fail"
    assert "systemd-tmpfiles --create powerplane-rapl.conf" in powercap["fix"]
    assert any("Permission denied" in d for d in powercap["details"])
    # As root it reads them, and says that a non-root exporter could not.
    code, findings = doctor(f"--sysfs={shared_tmp / 'sys'}", "--check=powercap")
    powercap = finding(findings, "powercap")
    assert (code, powercap["status"]) == (0, "ok") and "root only" in powercap["summary"]


def test_energy_granted_to_a_group_is_ok_even_for_an_outsider(shared_tmp: Path) -> None:
    _nobody_can_run_powerplane()
    PowercapLab(shared_tmp / "sys", intel_server()).create()
    for energy in (shared_tmp / "sys").rglob("energy_uj"):
        energy.chmod(0o440)
        os.chown(energy, 0, 4242)
    code, findings = doctor(f"--sysfs={shared_tmp / 'sys'}", "--check=powercap", user=65534)
    powercap = finding(findings, "powercap")
    assert (code, powercap["status"]) == (0, "ok"), powercap
    assert any("energy_uj mode 0440 root:4242" in d for d in powercap["details"])


def test_a_gpu_off_the_bus_fails_with_the_fix(tmp_path: Path) -> None:
    require_binary("gcc")
    machine = FakeNvml(tmp_path, [FakeGpu("h100-sxm"), FakeGpu("h100-sxm", lost=True)])
    code, findings = doctor("--check=nvml", env=machine.env())
    nvml = finding(findings, "nvml")
    assert code == 1 and nvml["status"] == "fail" and "1 not answering" in nvml["summary"]
    assert "dmesg" in nvml["fix"]


def test_slurm_unreachable_with_the_real_scontrol(tmp_path: Path) -> None:
    require_binary("scontrol")
    (tmp_path / "slurm.conf").write_text("ClusterName=test\nSlurmctldHost=127.0.0.1\nSlurmctldPort=1\n")
    code, findings = doctor("--check=slurm", env={"SLURM_CONF": str(tmp_path / "slurm.conf")})
    slurm = finding(findings, "slurm")
    assert code == 1 and slurm["status"] == "fail" and "munge" in slurm["fix"]
    assert slurm["details"], "scontrol's own words are shown"


class _Server:
    """A small aiohttp server for answers no real component gives (hostile ones)."""

    def __init__(self, loop: procs.BackgroundLoop, handler: Any) -> None:
        self.loop = loop
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        self.runner = web.AppRunner(app)
        self.port = procs.free_port()
        loop.run(self.runner.setup())
        loop.run(web.TCPSite(self.runner, "127.0.0.1", self.port).start())

    def close(self) -> None:
        self.loop.run(self.runner.cleanup())


def test_slurmrestd_token_refused_and_never_printed(
    tmp_path: Path, background_loop: procs.BackgroundLoop
) -> None:
    seen: list[str] = []

    async def refuse(request: web.Request) -> web.Response:
        seen.append(request.headers.get("X-SLURM-USER-TOKEN", ""))
        return web.Response(status=401)

    server = _Server(background_loop, refuse)
    try:
        argv = [POWERPLANE, "doctor", "--check=slurm", f"--slurmrestd=http://127.0.0.1:{server.port}"]
        env = {**os.environ, "SLURM_JWT": "s3cr3t-jwt-value", "PATH": NO_SLURM_PATH}
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    finally:
        server.close()
    assert seen == ["s3cr3t-jwt-value"]
    assert "HTTP 401" in done.stdout and "scontrol token" in done.stdout
    assert "s3cr3t" not in done.stdout + done.stderr


@pytest.mark.parametrize(
    "answer, expected",
    [
        (web.Response(text="<html>login</html>"), "not JSON"),
        (web.Response(body=b"[" * (3 << 20)), "not JSON"),
        (web.Response(status=404), "HTTP 404"),
        (web.Response(status=401), "HTTP 401"),
        (
            web.json_response({"RedfishVersion": "\x1b[31m1.0\n", "Vendor": "x" * 500}),
            "Redfish  [31m1.0 , xxx",
        ),
    ],
    ids=["html", "huge", "404", "401", "escapes"],
)
def test_hostile_bmc_answers(
    tmp_path: Path, background_loop: procs.BackgroundLoop, answer: web.Response, expected: str
) -> None:
    async def handler(_request: web.Request) -> web.Response:
        return answer

    server = _Server(background_loop, handler)
    try:
        inv = inventory(tmp_path, f"http://127.0.0.1:{server.port}")
        _, findings = doctor(f"--inventory={inv}", "--node=gpu-1", "--check=bmc")
    finally:
        server.close()
    bmc = finding(findings, "bmc")
    assert expected in bmc["summary"], bmc
    assert "\x1b" not in json.dumps(findings) and len(bmc["summary"]) < 400


def test_bmc_tls_is_verified_by_default(tmp_path: Path, tls_bmc: SimulatedBMC) -> None:
    inv = inventory(tmp_path, f"https://127.0.0.1:{tls_bmc.port}")
    code, findings = doctor(f"--inventory={inv}", "--node=gpu-1", "--check=bmc")
    bmc = finding(findings, "bmc")
    assert code == 1 and "certificate verify failed" in bmc["summary"] and "--bmc.ca-file" in bmc["fix"]


def test_bmc_inventory_problems(tmp_path: Path) -> None:
    inv = inventory(tmp_path, "https://127.0.0.1:1")
    _, findings = doctor(f"--inventory={inv}", "--node=cpu-1", "--check=bmc")
    assert finding(findings, "bmc")["status"] == "absent"
    _, findings = doctor(f"--inventory={inv}", "--check=bmc", env={"NODE_NAME": "elsewhere"})
    assert "node 'elsewhere' is not in" in finding(findings, "bmc")["summary"]
    refused_port = procs.free_port()
    inv = inventory(tmp_path, f"https://127.0.0.1:{refused_port}")
    code, findings = doctor(f"--inventory={inv}", "--node=gpu-1", "--check=bmc")
    assert code == 1 and "management host" in finding(findings, "bmc")["fix"]
    broken = tmp_path / "broken.yaml"
    broken.write_text("clusters: 3\nnodes: [{name: x}]\n")
    _, findings = doctor(f"--inventory={broken}", "--check=bmc")
    bmc = finding(findings, "bmc")
    assert bmc["status"] == "fail" and "check-config --kind inventory" in bmc["fix"] and bmc["details"]


def test_a_hung_bmc_is_bounded(tmp_path: Path, background_loop: procs.BackgroundLoop) -> None:
    release = __import__("asyncio").Event()

    async def hang(_request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(status=200)

    server = _Server(background_loop, hang)
    try:
        inv = inventory(tmp_path, f"http://127.0.0.1:{server.port}")
        code, findings = doctor(f"--inventory={inv}", "--node=gpu-1", "--check=bmc", "--timeout=0.5")
    finally:
        background_loop.run(_set(release))
        server.close()
    assert code == 1 and "timed out" in finding(findings, "bmc")["summary"]


async def _set(event: Any) -> None:
    event.set()


def test_the_kubelet_socket_that_answers_garbage(
    tmp_path: Path, background_loop: procs.BackgroundLoop
) -> None:
    socket_path = tmp_path / "kubelet.sock"
    kubelet = FakePodResources(socket_path)
    kubelet.raw = b"\xff\xff\xff\xff"
    background_loop.run(kubelet.start())
    try:
        code, findings = doctor(f"--pod-resources.socket={socket_path}", "--check=kubelet")
    finally:
        background_loop.run(kubelet.stop())
    assert code == 1 and finding(findings, "kubelet")["status"] == "fail"
    not_a_socket = tmp_path / "file.sock"
    not_a_socket.write_text("")
    _, findings = doctor(f"--pod-resources.socket={not_a_socket}", "--check=kubelet")
    assert "is not a socket" in finding(findings, "kubelet")["summary"]


def test_doctor_is_registered_and_imports_nothing_heavy() -> None:
    code = (
        "import sys; import powerplane.doctor; "
        "heavy = [m for m in ('pynvml', 'grpc', 'aiohttp') if m in sys.modules]; print(heavy)"
    )
    done = subprocess.run(
        [str(ROOT / ".venv/bin/python"), "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"
    assert (
        "doctor" in subprocess.run([POWERPLANE, "--help"], capture_output=True, text=True, timeout=60).stdout
    )
    assert shutil.which("powerplane", path=str(Path(POWERPLANE).parent))

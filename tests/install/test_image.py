"""The container image, built here with buildah from deploy/Containerfile and run with
`buildah run --isolation=chroot` (no container engine: `podman run` cannot set rlimits here).

No registry is reachable from these machines, so the Debian base is made with mmdebstrap and the
Python packages come from this host's pip (`deploy/build-image --local-base --host-wheels`); the
base tarball is cached per machine, and buildah reuses unchanged layers, so a second run costs
little more than the wheel install.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from powerplane import __version__
from tests.conftest import require_binary

from .units import ROOT

pytestmark = [pytest.mark.image, pytest.mark.timeout(1800)]

#: Runs inside the image: a lab powercap tree, the RAPL and GPU exporters on free ports, one
#: scrape each (readiness polled, bounded); prints the two expositions as JSON.
SMOKE = r"""
import json, socket, subprocess, sys, time, urllib.request
from pathlib import Path
from powerplane.lab.powercap import PowercapLab, intel_server

root = Path("/tmp/smoke-sys")
PowercapLab(root, intel_server()).create()

def scrape(*args):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
    p = subprocess.Popen(["powerplane", "exporter", *args, f"--web.listen-address=127.0.0.1:{port}"])
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
            except OSError:
                if p.poll() is not None or time.monotonic() > deadline:
                    sys.exit(f"exporter {args[0]} did not come up")
                time.sleep(0.2)
    finally:
        p.terminate(); p.wait(10)

print(json.dumps({"rapl": scrape("rapl", f"--path.sysfs={root}"), "gpu": scrape("gpu", "--no-xid-events")}))
"""


@pytest.fixture(scope="module")
def container(host_wheels: Path) -> Iterator[str]:
    require_binary("buildah")
    require_binary("mmdebstrap")
    built = subprocess.run(
        [str(ROOT / "deploy/build-image"), "--local-base", "--host-wheels"],
        cwd=ROOT,
        env={**os.environ, "WHEELS": str(host_wheels)},
        capture_output=True,
        text=True,
        timeout=1700,
    )
    assert built.returncode == 0, built.stderr[-4000:]
    image = built.stdout.strip().splitlines()[-1]
    assert image == f"ghcr.io/powerplane/powerplane:{__version__}"
    ctr = subprocess.run(
        ["buildah", "from", image], capture_output=True, text=True, check=True
    ).stdout.strip()
    yield ctr
    subprocess.run(["buildah", "rm", ctr], capture_output=True, check=False)


def run(ctr: str, *argv: str) -> str:
    done = subprocess.run(
        ["buildah", "run", "--isolation=chroot", ctr, "--", *argv],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout


def test_the_image_runs_as_nobody_with_powerplane_as_entrypoint(container: str) -> None:
    config = json.loads(
        subprocess.run(["buildah", "inspect", container], capture_output=True, text=True, check=True).stdout
    )["OCIv1"]["config"]
    assert config["User"] == "65534:65534"
    assert config["Entrypoint"] == ["/opt/powerplane/bin/powerplane"]
    assert config["Labels"]["org.opencontainers.image.version"] == __version__
    assert run(container, "id", "-u").strip() == "65534"
    assert run(container, "powerplane", "--version").strip() == f"powerplane, version {__version__}"
    help_text = run(container, "powerplane", "--help")
    for command in ("exporter", "controller", "doctor", "check-config"):
        assert f"  {command}" in help_text


def test_exporters_serve_inside_the_image(container: str) -> None:
    out = json.loads(run(container, "/opt/powerplane/bin/python", "-c", SMOKE).strip().splitlines()[-1])
    assert 'powerplane_rapl_energy_joules_total{zone="package",index="0"}' in out["rapl"]
    assert 'powerplane_scrape_collector_success{exporter="rapl",collector="energy"} 1' in out["rapl"]
    # No NVIDIA runtime here: no GPUs, and that is not a failure.
    assert "powerplane_gpu_power_watts{" not in out["gpu"]
    assert 'powerplane_scrape_collector_success{exporter="gpu",collector="nvml"} 1' in out["gpu"]


def test_the_image_carries_no_build_tools(container: str) -> None:
    listing = run(container, "sh", "-c", "ls /opt/powerplane/bin; command -v gcc apt-get pip || true")
    assert "pip" not in listing.split() and "/usr/bin/gcc" not in listing

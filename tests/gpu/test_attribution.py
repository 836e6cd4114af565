"""Attribution: pods from the kubelet's pod-resources socket, HPC jobs from the mapping directory."""

from __future__ import annotations

import os
from pathlib import Path

import pynvml

from powerplane.exporters.gpu.podresources import DeviceAssignment
from powerplane.lab.fakenvml import FakeGpu, FakeNvml, MigDevice
from powerplane.lab.kubelet import FakePodResources
from tests.helpers import undocumented

from .conftest import exporter, short_socket, success


async def test_pod_info_from_the_kubelet(tmp_path: Path) -> None:
    FakeNvml(
        tmp_path,
        [FakeGpu("h100-sxm"), FakeGpu("h100-sxm"), FakeGpu("a100-sxm", mig=[MigDevice(3, 0, 10 << 30)])],
    ).activate()
    pynvml.nvmlInit()
    uuids = [pynvml.nvmlDeviceGetUUID(pynvml.nvmlDeviceGetHandleByIndex(i)) for i in range(3)]
    mig_uuid = pynvml.nvmlDeviceGetUUID(
        pynvml.nvmlDeviceGetMigDeviceHandleByIndex(pynvml.nvmlDeviceGetHandleByIndex(2), 0)
    )
    pynvml.nvmlShutdown()
    kubelet = FakePodResources(
        short_socket(),
        [
            DeviceAssignment("ml", "llm-0", "train", "nvidia.com/gpu", uuids[0]),
            DeviceAssignment("ml", "llm-1", "train", "nvidia.com/gpu", f"{uuids[1]}::0"),  # time-sliced
            DeviceAssignment("ml", "llm-2", "eval", "nvidia.com/gpu", f"{uuids[1]}::1"),
            DeviceAssignment("batch", "mig-job", "main", "nvidia.com/mig-3g.40gb", mig_uuid),
            DeviceAssignment("ml", "elsewhere", "x", "nvidia.com/gpu", "GPU-not-on-this-node"),
            DeviceAssignment("net", "sriov", "x", "intel.com/sriov", uuids[0]),
        ],
    )
    await kubelet.start()
    try:
        async with exporter(
            pod_resources_socket=str(kubelet.socket_path), namings=("powerplane", "dcgm")
        ) as server:
            await server.scrape()
            # MIG devices are known after the first GPU scrape; the pods collector runs beside it
            text, s = await server.scrape()
            rows = {tuple(sorted(dict(k).items())) for k in s["powerplane_gpu_pod_info"]}
            expected = {
                ("0", uuids[0], "", "ml", "llm-0", "train"),
                ("1", uuids[1], "", "ml", "llm-1", "train"),
                ("1", uuids[1], "", "ml", "llm-2", "eval"),
                ("2", uuids[2], "3", "batch", "mig-job", "main"),
            }
            names = ("gpu", "uuid", "gpu_instance", "namespace", "pod", "container")
            assert rows == {tuple(sorted(zip(names, e, strict=True))) for e in expected}
            assert success(s, "pods") == 1
            assert undocumented(text) == set()
            # dcgm naming: pod labels on a GPU held by one container, none on a shared one
            (gpu0,) = [dict(k) for k in s["DCGM_FI_DEV_POWER_USAGE"] if ("gpu", "0") in k]
            assert (gpu0["namespace"], gpu0["pod"], gpu0["container"]) == ("ml", "llm-0", "train")
            (gpu1,) = [dict(k) for k in s["DCGM_FI_DEV_POWER_USAGE"] if ("gpu", "1") in k]
            assert "pod" not in gpu1
            # a kubelet answering garbage fails the pods collector only
            kubelet.raw = b"\x0a\x05\x12\xff\xff"
            _, s = await server.scrape()
            assert success(s, "pods") == 0 and success(s, "gpu0") == 1
            await kubelet.stop()
            _, s = await server.scrape()  # the kubelet restarting: pods fail, GPUs report
            assert success(s, "pods") in (0.0, 1.0) and success(s, "gpu1") == 1
    finally:
        await kubelet.stop()


async def test_no_kubelet_socket_is_not_a_failure(tmp_path: Path) -> None:
    FakeNvml(tmp_path, [FakeGpu()]).activate()
    async with exporter(pod_resources_socket=str(tmp_path / "absent.sock")) as server:
        _, s = await server.scrape()
    assert success(s, "pods") == 1 and "powerplane_gpu_pod_info" not in s


async def test_job_info_from_the_mapping_directory(tmp_path: Path) -> None:
    FakeNvml(tmp_path / "nvml", [FakeGpu(), FakeGpu()]).activate()
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    (jobs / "0").write_text("4242\n4243\n\n")
    (jobs / "1").write_text("  slurm-77  \n")
    (jobs / ".1.swp").write_text("ignored")
    async with exporter(job_mapping_dir=str(jobs), namings=("powerplane", "dcgm")) as server:
        text, s = await server.scrape()
        assert success(s, "jobs") == 1
        rows = {(dict(k)["gpu"], dict(k)["hpc_job"]) for k in s["powerplane_gpu_job_info"]}
        assert rows == {("0", "4242"), ("0", "4243"), ("1", "slurm-77")}
        assert undocumented(text) == set()
        (gpu1,) = [dict(k) for k in s["DCGM_FI_DEV_GPU_UTIL"] if ("gpu", "1") in k]
        assert gpu1["hpc_job"] == "slurm-77"
        # hostile and malformed entries: reported, the good ones still exported
        (jobs / "7").write_text("1\n")  # no such GPU
        (jobs / "notes.txt").write_text("x")
        (jobs / "0").write_bytes(b"4242\n\x1b[31mred\n" + b"9" * 200 + b"\n")
        (jobs / "1").write_bytes(b"1\n" * 40000)
        _, s = await server.scrape()
        assert success(s, "jobs") == 0
        assert {(dict(k)["gpu"], dict(k)["hpc_job"]) for k in s["powerplane_gpu_job_info"]} == {("0", "4242")}
        # MIG instances: files named <gpu>.<gpu instance>, as dcgm-exporter reads them
        (jobs / "0").write_text("4242\n")
        (jobs / "1").unlink()
        (jobs / "1.3").write_text("5001\n")
        (jobs / "1.5").write_text("5002\n5003\n")
        (jobs / "1.x").write_text("5004\n")
        (jobs / "9.1").write_text("5005\n")
        _, s = await server.scrape()
        rows = {(k["gpu"], k["gpu_instance"], k["hpc_job"]) for k in map(dict, s["powerplane_gpu_job_info"])}
        assert rows == {("0", "", "4242"), ("1", "3", "5001"), ("1", "5", "5002"), ("1", "5", "5003")}
        assert success(s, "jobs") == 0  # 1.x and 9.1 are reported, the others exported
        (gpu1,) = [dict(k) for k in s["DCGM_FI_DEV_GPU_UTIL"] if ("gpu", "1") in k]
        assert "hpc_job" not in gpu1  # a MIG instance's job is not the whole GPU's
        for name in os.listdir(jobs):
            (jobs / name).unlink()
        jobs.rmdir()
        _, s = await server.scrape()
        assert success(s, "jobs") == 1 and "powerplane_gpu_job_info" not in s

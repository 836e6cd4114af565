"""The exporter against the real cluster (slurmrestd and the commands), and against hostile servers."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

from powerplane.exporters.runtime import CollectorError
from powerplane.exporters.slurm.config import KIND, Limits, RestConfig, SlurmConfig
from powerplane.exporters.slurm.exporter import make_server
from powerplane.exporters.slurm.sources import JOBS, NODES, CliSource, SlurmrestdSource
from tests.helpers import parse, undocumented, value

from .conftest import Cluster, Recorded

Samples = dict[str, dict[tuple[tuple[str, str], ...], float]]


def load(doc: dict[str, Any], tmp_path: Path) -> SlurmConfig:
    path = tmp_path / "slurm.yml"
    path.write_text(yaml.safe_dump(doc))
    return KIND.load(path)


async def scrape(config: SlurmConfig, count: int = 1, announced: str | None = None) -> list[str]:
    server = make_server(config)
    host, port = await server.start()
    headers = {"X-Prometheus-Scrape-Timeout-Seconds": announced} if announced else {}
    try:
        async with aiohttp.ClientSession() as session:

            async def one() -> str:
                async with session.get(f"http://{host}:{port}/metrics", headers=headers) as r:
                    assert r.status == 200
                    return await r.text()

            return list(await asyncio.gather(*(one() for _ in range(count))))
    finally:
        await server.stop()


def success(samples: Samples) -> dict[str, float]:
    return {dict(k)["collector"]: v for k, v in samples["powerplane_scrape_collector_success"].items()}


def series(samples: Samples, name: str) -> set[tuple[tuple[str, str], ...]]:
    return set(samples.get(name, {}))


@pytest.mark.parametrize("source", ["slurmrestd", "cli"])
def test_the_real_cluster_as_the_exporter_shows_it(slurm: Cluster, tmp_path: Path, source: str) -> None:
    lab = slurm.lab
    if source == "slurmrestd" and not lab.rest_binary:
        pytest.skip("slurmrestd is not installed")
    (text,) = asyncio.run(scrape(load(lab.exporter_config(source), tmp_path)))
    assert undocumented(text) == set()
    s = parse(text)
    assert set(success(s).values()) == {1.0}, success(s)
    assert value(s, "powerplane_slurm_up") == 1.0
    info = {dict(k)["job_id"]: dict(k) for k in s["powerplane_slurm_job_info"]}
    assert info[slurm.gpu_job] == {
        "job_id": slurm.gpu_job, "user": "nobody", "account": "physics", "partition": "gpu", "qos": "",
    }  # fmt: skip
    assert slurm.pending_job not in info and slurm.wide_job in info
    gpus = {dict(k)["gpu"] for k in s["powerplane_slurm_job_gpu_info"] if dict(k)["job_id"] == slurm.gpu_job}
    assert gpus == {"0", "1"}
    assert value(s, "powerplane_slurm_job_allocation", job_id=slurm.gpu_job, resource="gpus") == 2
    assert (
        value(s, "powerplane_slurm_job_allocation", job_id=slurm.gpu_job, resource="memory_bytes")
        == 2000 * 2**20
    )
    assert (
        value(s, "powerplane_slurm_job_allocation", job_id=slurm.wide_job, node="node-02", resource="cpus")
        == 1
    )
    assert value(s, "powerplane_slurm_node_state", node="node-01") == 1
    assert ("state", "mixed") in next(k for k in s["powerplane_slurm_node_state"] if ("node", "node-01") in k)
    assert value(s, "powerplane_slurm_partition_gpus", partition="gpu", type="h100", state="allocated") == 2
    assert value(s, "powerplane_slurm_partition_gpus", partition="gpu", type="h100", state="idle") == 2
    assert value(s, "powerplane_slurm_partition_cpus", partition="cpu", state="total") == 16
    assert value(s, "powerplane_slurm_jobs", partition="cpu", state="pending") == 1
    assert value(s, "powerplane_slurm_jobs", partition="gpu", state="running") == 1
    assert value(s, "powerplane_slurm_partition_users", partition="gpu", state="running") == 1
    assert value(s, "powerplane_slurm_nodes", state="mixed") == 2
    assert value(s, "powerplane_slurm_partition_state", partition="cpu", state="up") == 1
    assert "powerplane_slurm_job_name_info" not in s  # names are off unless enabled
    assert value(s, "powerplane_slurm_scheduler_jobs_total", event="submitted") >= 3


def test_privacy_hashes_or_drops_owners_and_names_need_enabling(slurm: Cluster, tmp_path: Path) -> None:
    doc = slurm.lab.exporter_config(
        "cli",
        privacy={"users": "hash", "accounts": "drop"},
        jobs={"names": True, "by_user": 5, "by_account": 5},
    )
    (text,) = asyncio.run(scrape(load(doc, tmp_path)))
    s = parse(text)
    gpu = next(dict(k) for k in s["powerplane_slurm_job_info"] if dict(k)["job_id"] == slurm.gpu_job)
    assert gpu["account"] == "" and len(gpu["user"]) == 12 and gpu["user"] != "nobody"
    assert "nobody" not in text and "physics" not in text
    assert {dict(k)["user"] for k in s["powerplane_slurm_user_jobs"]} >= {gpu["user"]}
    assert "powerplane_slurm_account_jobs" not in s or not s["powerplane_slurm_account_jobs"]
    assert value(s, "powerplane_slurm_job_name_info", job_id=slurm.gpu_job) == 1
    assert ("name", "train") in next(
        k for k in s["powerplane_slurm_job_name_info"] if ("job_id", slurm.gpu_job) in k
    )


def test_caps_count_what_they_drop(slurm: Cluster, tmp_path: Path) -> None:
    doc = slurm.lab.exporter_config(
        "cli", jobs={"max_mapped": 1, "by_account": 1}, limits={"max_rpc_types": 2}
    )
    (text,) = asyncio.run(scrape(load(doc, tmp_path)))
    s = parse(text)
    assert len(s["powerplane_slurm_job_info"]) == 1
    assert value(s, "powerplane_slurm_dropped_series", family="powerplane_slurm_job_info") == 1
    assert len({dict(k)["account"] for k in s["powerplane_slurm_account_jobs"]}) == 1
    assert len(s["powerplane_slurm_rpcs_total"]) == 3  # two types and "other"
    assert value(s, "powerplane_slurm_dropped_series", family="powerplane_slurm_rpcs_total") > 0


def _job_info_rpcs(lab: Any) -> int:
    for line in lab.run("sdiag").splitlines():
        if line.strip().startswith("REQUEST_JOB_INFO "):
            return int(line.split("count:")[1].split()[0])
    return 0


def test_concurrent_scrapes_ask_slurmctld_once(slurm: Cluster, tmp_path: Path) -> None:
    lab = slurm.lab
    if not lab.rest_binary:
        pytest.skip("slurmrestd is not installed")
    config = load(lab.exporter_config("slurmrestd", min_interval=60), tmp_path)
    before = _job_info_rpcs(lab)
    texts = asyncio.run(scrape(config, count=6))
    after = _job_info_rpcs(lab)
    assert after - before == 1
    assert all(set(success(parse(t)).values()) == {1.0} for t in texts)


# --- hostile servers ------------------------------------------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def fake_rest(routes: dict[str, Handler]) -> AsyncIterator[str]:
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_get(path, handler)
    runner = web.AppRunner(app, shutdown_timeout=0.2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def openapi(*versions: str) -> Handler:
    async def handler(_request: web.Request) -> web.Response:
        paths = {f"/slurm/{v}/{e}": {} for v in versions for e in ("jobs", "nodes", "ping")}
        return web.json_response({"openapi": "3.0.2", "paths": paths})

    return handler


def rest_config(url: str, tmp_path: Path, **extra: Any) -> SlurmConfig:
    token = tmp_path / "jwt"
    token.write_text("SLURM_JWT=header.payload.signature\n")
    rest = {"url": url, "user": "nobody", "token": {"file": str(token)}}
    return load({"source": "slurmrestd", "slurmrestd": rest, "min_interval": 0, **extra}, tmp_path)


async def _with_fake(routes: dict[str, Handler], body: Callable[[str], Awaitable[Any]]) -> Any:
    gen = fake_rest(routes)
    url = await anext(gen)
    try:
        return await body(url)
    finally:
        await gen.aclose()


def test_a_hanging_slurmctld_fails_its_collector_within_the_deadline(
    recorded: Recorded, tmp_path: Path
) -> None:
    if not recorded.rest:
        pytest.skip("slurmrestd is not installed")

    async def hang(_request: web.Request) -> web.Response:
        await asyncio.sleep(3600)
        raise AssertionError

    async def nodes(_request: web.Request) -> web.Response:
        return web.Response(body=recorded.rest["nodes"], content_type="application/json")

    async def run(url: str) -> tuple[list[str], float]:
        config = rest_config(url, tmp_path, timeout=30)
        start = time.monotonic()
        texts = await scrape(config, count=2, announced="2")
        return texts, time.monotonic() - start

    routes = {"/openapi/v3": openapi("v0.0.38"), "/slurm/v0.0.38/nodes": nodes}
    for name in ("jobs", "ping", "diag", "partitions", "reservations"):
        routes[f"/slurm/v0.0.38/{name}"] = hang
    texts, took = asyncio.run(_with_fake(routes, run))
    assert took < 6, took
    for text in texts:
        s = parse(text)
        assert success(s) == {"scheduler": 0, "partitions": 0, "nodes": 1, "jobs": 0, "reservations": 0}
        assert value(s, "powerplane_slurm_up") == 0
        assert value(s, "powerplane_slurm_node_state", node="node-01") == 1


def test_a_refused_connection_and_errors_name_the_cause(tmp_path: Path) -> None:
    from powerplane.lab.procs import free_port

    config = rest_config(f"http://127.0.0.1:{free_port()}", tmp_path)
    (text,) = asyncio.run(scrape(config))
    s = parse(text)
    assert set(success(s).values()) == {0.0} and value(s, "powerplane_slurm_up") == 0

    async def unauthorized(_request: web.Request) -> web.Response:
        return web.Response(status=401, text="Authentication failure")

    async def run(url: str) -> str:
        assert config.slurmrestd is not None
        source = SlurmrestdSource(RestConfig(url, "nobody", config.slurmrestd.token), Limits(), 5.0)
        try:
            await source.fetch(JOBS)
        except CollectorError as exc:
            return str(exc)
        raise AssertionError("no error")

    message = asyncio.run(_with_fake({"/openapi/v3": unauthorized}, run))
    assert message == "slurmrestd /openapi/v3: HTTP 401: Authentication failure"


@pytest.mark.parametrize(
    ("offered", "chosen"),
    [(("v0.0.38", "v0.0.41", "v0.0.99"), "v0.0.41"), (("v0.0.36", "v0.0.37", "v0.0.38"), "v0.0.38")],
)
def test_the_newest_api_version_both_know_is_used(
    offered: tuple[str, ...], chosen: str, tmp_path: Path
) -> None:
    async def nodes(_request: web.Request) -> web.Response:
        return web.json_response({"nodes": [], "errors": []})

    async def run(url: str) -> str | None:
        config = rest_config(url, tmp_path)
        assert config.slurmrestd is not None
        source = SlurmrestdSource(config.slurmrestd, Limits(), 5.0)
        await source.fetch(NODES)
        return source.version

    routes = {"/openapi/v3": openapi(*offered), f"/slurm/{chosen}/nodes": nodes}
    assert asyncio.run(_with_fake(routes, run)) == chosen


def test_no_common_version_is_a_clear_error(tmp_path: Path) -> None:
    async def run(url: str) -> str:
        config = rest_config(url, tmp_path)
        assert config.slurmrestd is not None
        with pytest.raises(CollectorError) as err:
            await SlurmrestdSource(config.slurmrestd, Limits(), 5.0).fetch(NODES)
        return str(err.value)

    message = asyncio.run(_with_fake({"/openapi/v3": openapi("v0.0.35")}, run))
    assert "offers no API version this exporter reads (offered: v0.0.35;" in message


def test_a_stray_line_after_the_body_is_not_read(recorded: Recorded, tmp_path: Path) -> None:
    if not recorded.rest:
        pytest.skip("slurmrestd is not installed")
    spec = json.dumps({"paths": {"/slurm/v0.0.38/nodes": {}}}).encode()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        body = spec if b"/openapi/v3" in request else recorded.rest["nodes"]
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nContent-Type: application/json\r\n\r\n" % len(body)
        )
        writer.write(body + b"Connection: Close\r\n")  # what slurmrestd 22.05 sends
        await writer.drain()
        writer.close()

    async def run() -> list[str]:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            config = rest_config(f"http://127.0.0.1:{port}", tmp_path)
            assert config.slurmrestd is not None
            listing = await SlurmrestdSource(config.slurmrestd, Limits(), 5.0).fetch(NODES)
            return [n.name for n in listing.records]
        finally:
            server.close()

    assert asyncio.run(run()) == ["node-01", "node-02"]


def test_a_huge_job_list_is_bounded(tmp_path: Path) -> None:
    job = {
        "job_id": 1,
        "job_state": "PENDING",
        "partition": "cpu",
        "user_name": "u",
        "state_reason": "Priority",
    }
    body = json.dumps({"jobs": [dict(job, job_id=i) for i in range(60_000)]}).encode()

    async def jobs(_request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    async def run(url: str) -> str:
        (text,) = await scrape(rest_config(url, tmp_path, collectors=["jobs"], limits={"max_records": 1000}))
        return text

    routes = {"/openapi/v3": openapi("v0.0.38"), "/slurm/v0.0.38/jobs": jobs}
    s = parse(asyncio.run(_with_fake(routes, run)))
    assert value(s, "powerplane_slurm_jobs", partition="cpu", state="pending") == 1000
    assert value(s, "powerplane_slurm_dropped_records", endpoint="jobs") == 59_000


# --- the commands -----------------------------------------------------------------------------------


def fake_bin(tmp_path: Path, scripts: dict[str, str]) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in scripts.items():
        path = bin_dir / name
        path.write_text("#!/bin/sh\n" + body + "\n")
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return bin_dir


def cli_config(tmp_path: Path, bin_dir: Path, **extra: Any) -> SlurmConfig:
    return load(
        {"source": "cli", "cli": {"bin_dir": str(bin_dir), **extra}, "timeout": 1, "min_interval": 0},
        tmp_path,
    )


def test_a_command_that_hangs_or_talks_nonsense_fails_alone(tmp_path: Path) -> None:
    bin_dir = fake_bin(
        tmp_path,
        {
            "squeue": "exec sleep 30",
            # 22.05's scontrol: no --json, partitions as text.
            "scontrol": '[ "$1" = --json ] && { echo "scontrol: unrecognized option --json" >&2; exit 1; }\n'
            "echo PartitionName=p State=UP MaxTime=UNLIMITED TotalCPUs=4 TotalNodes=1",
            "sinfo": 'echo \'{"nodes": [{"name": "n1", "state": "idle", "cpus": 4}\'',
            "sdiag": "echo 'sdiag: error: Unable to contact slurm controller (connect failure)' >&2; exit 1",
        },
    )
    start = time.monotonic()
    (text,) = asyncio.run(scrape(cli_config(tmp_path, bin_dir)))
    assert time.monotonic() - start < 5
    s = parse(text)
    assert success(s) == {"scheduler": 0, "partitions": 1, "nodes": 0, "jobs": 0, "reservations": 1}

    async def causes() -> list[str]:
        source = CliSource(cli_config(tmp_path, bin_dir).cli, Limits(), 1.0)
        out = []
        for endpoint in (JOBS, NODES):
            with pytest.raises(CollectorError) as err:
                await source.fetch(endpoint)
            out.append(str(err.value))
        return out

    assert asyncio.run(causes()) == ["squeue --all --json: no answer within 1s", "nodes: document ends early"]


def test_slurm_jwt_reaches_the_commands_only_when_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = tmp_path / "seen"
    bin_dir = fake_bin(
        tmp_path, {"squeue": f'echo "${{SLURM_JWT:-none}}" >> {seen}; echo \'{{"jobs": []}}\''}
    )
    monkeypatch.setenv("SLURM_JWT", "inherited-token-value")

    async def run(config: SlurmConfig) -> None:
        await CliSource(config.cli, Limits(), 5.0).fetch(JOBS)

    asyncio.run(run(cli_config(tmp_path, bin_dir)))
    token = tmp_path / "token"
    token.write_text("configured-token-value\n")
    asyncio.run(run(cli_config(tmp_path, bin_dir, token={"file": str(token)})))
    assert seen.read_text().split() == ["none", "configured-token-value"]
    assert os.environ["SLURM_JWT"] == "inherited-token-value"


def test_config_errors_are_all_reported(tmp_path: Path) -> None:
    from powerplane.exporters.runtime import ConfigError

    path = tmp_path / "bad.yml"
    path.write_text(
        yaml.safe_dump(
            {
                "source": "slurmrestd",
                "slurmrestd": {"url": "http://h:6820", "token": "inline-secret"},
                "privacy": {"users": "maybe"},
                "unknown": 1,
            }
        )
    )
    with pytest.raises(ConfigError) as err:
        KIND.load(path)
    text = str(err.value)
    assert "slurmrestd.token: secrets cannot be written inline" in text
    assert "privacy.users" in text and "unknown key(s) 'unknown'" in text
    assert "inline-secret" not in text
    path.write_text(yaml.safe_dump({"source": "slurmrestd", "slurmrestd": {"url": "http://h:6820"}}))
    with pytest.raises(ConfigError, match=r"slurmrestd\.token: required for an http"):
        KIND.load(path)

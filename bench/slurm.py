"""Slurm exporter at scale: a large cluster's JSON from a fake slurmrestd, against the floor.

The payloads are shaped like the real output of the installed Slurm: one node, one running GPU
job and one pending job are recorded from the lab's real cluster (lab/slurm.py) and replicated to
``--nodes`` nodes and ``--jobs`` jobs (a third running), indented as slurmrestd 22.05 writes them.
A fake slurmrestd on 127.0.0.1 serves them; ``powerplane exporter slurm`` runs in its own process
(min_interval 0: every scrape reads everything) and is scraped ``--runs`` times.

The floor is what no exporter can avoid: fetching the same payloads and JSON-decoding them
(``json.loads``), and nothing else.  Printed: scrape p50/p99, the floor, their ratio, the
exporter's peak RSS, and a RESULT line.  Not a test: run it on a quiet machine and label figures
taken under load as such.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web

from powerplane.lab import procs
from powerplane.lab.slurm import REST_USER, NodeSpec, SlurmCluster

ENDPOINTS = ("ping", "diag", "nodes", "partitions", "jobs", "reservations")


def record_templates(workdir: Path) -> dict[str, Any]:
    """One answer per endpoint from the real cluster (v0.0.38), with a running and a pending job."""
    lab = SlurmCluster(workdir, [NodeSpec("node-01", gpu_type="h100", gpus=4)], {"gpu": ["node-01"]})
    with lab:
        running = lab.sbatch(
            "--gres=gpu:h100:2", "-n", "2", "--mem=2000", "--account=physics", user=REST_USER
        )
        lab.sbatch("-n", "64", "-J", "pending")
        lab.wait_job(running)
        headers = lab.rest_headers()
        docs = {}
        for name in ENDPOINTS:
            status, body = procs.http_get(f"{lab.rest_url}/slurm/v0.0.38/{name}", headers=headers)
            assert status == 200, (name, body[:200])
            docs[name] = json.loads(body)
    return docs


def scale(docs: dict[str, Any], nodes: int, jobs: int) -> dict[str, bytes]:
    node = docs["nodes"]["nodes"][0]
    run = next(j for j in docs["jobs"]["jobs"] if j["job_state"] == "RUNNING")
    pend = next(j for j in docs["jobs"]["jobs"] if j["job_state"] == "PENDING")
    partitions = ["cpu", "gpu", "bigmem", "debug"]
    node_list = []
    for i in range(nodes):
        n = copy.deepcopy(node)
        n["name"] = f"n{i:05d}"
        n["partitions"] = [partitions[i % 4], "gpu"] if i % 4 else ["cpu"]
        node_list.append(n)
    job_list = []
    for i in range(jobs):
        j = copy.deepcopy(run if i % 3 == 0 else pend)
        j["job_id"] = 100000 + i
        j["user_name"] = f"user{i % 900:03d}"
        j["account"] = f"acct{i % 60:02d}"
        j["partition"] = partitions[i % 4]
        if i % 3 == 0:
            host = f"n{i % nodes:05d}"
            j["nodes"] = host
            j["job_resources"]["nodes"] = host
            j["job_resources"]["allocated_nodes"][0]["nodename"] = host
        job_list.append(j)
    out = {name: doc for name, doc in docs.items()}
    out["nodes"] = {**docs["nodes"], "nodes": node_list}
    out["jobs"] = {**docs["jobs"], "jobs": job_list}
    # slurmrestd 22.05 indents by two spaces and escapes '/'.
    return {k: json.dumps(v, indent=2).replace("/", "\\/").encode() for k, v in out.items()}


async def serve(payloads: dict[str, bytes]) -> tuple[web.AppRunner, str]:
    app = web.Application()
    spec = json.dumps({"paths": {f"/slurm/v0.0.38/{e}": {} for e in ENDPOINTS}}).encode()
    app.router.add_get("/openapi/v3", lambda _r: _body(spec))
    for name, body in payloads.items():
        app.router.add_get(f"/slurm/v0.0.38/{name}", lambda _r, b=body: _body(b))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


async def _body(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="application/json")


async def floor(url: str) -> float:
    """Fetch every endpoint's payload and json.loads it: nothing else."""
    start = time.perf_counter()
    async with aiohttp.ClientSession() as session:
        for name in ENDPOINTS:
            async with session.get(f"{url}/slurm/v0.0.38/{name}") as r:
                json.loads(await r.read())
    return time.perf_counter() - start


async def scrape(address: str) -> tuple[float, int]:
    start = time.perf_counter()
    timeout = aiohttp.ClientTimeout(total=600)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(f"http://{address}/metrics") as r,
    ):
        text = await r.text()
    elapsed = time.perf_counter() - start
    if 'collector="jobs"} 1.0' not in text:
        raise RuntimeError("the jobs collector failed: " + text[-2000:])
    return elapsed, text.count("\n")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def bench(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="pp-bench-slurm-") as tmp:
        work = Path(tmp)
        docs = await asyncio.to_thread(record_templates, work / "lab")
        payloads = scale(docs, args.nodes, args.jobs)
        size = sum(len(b) for b in payloads.values())
        runner, url = await serve(payloads)
        token = work / "jwt"
        token.write_text("header.payload.signature\n")
        config = {
            "source": "slurmrestd",
            "slurmrestd": {"url": url, "user": "bench", "token": {"file": str(token)}},
            "timeout": 600,
            "min_interval": 0,
            "jobs": {"max_mapped": args.jobs},
            "limits": {"max_records": max(args.jobs, args.nodes) + 1},
        }
        (work / "slurm.yml").write_text(yaml.safe_dump(config))
        port = procs.free_port()
        exporter = procs.Process(
            [sys.executable, "-c", "from powerplane.cli import main; main()", "exporter", "slurm",
             f"--config={work / 'slurm.yml'}", f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
            work / "exporter.log",
        )  # fmt: skip
        try:
            await asyncio.to_thread(exporter.wait_ready, f"http://127.0.0.1:{port}/-/ready", 60)
            floors, scrapes, lines = [], [], 0
            for _ in range(args.runs):
                floors.append(await floor(url))
                elapsed, lines = await scrape(f"127.0.0.1:{port}")
                scrapes.append(elapsed)
            rss = proc_peak_rss_mb(exporter.pid)
        finally:
            exporter.stop()
            await runner.cleanup()
    p50, p99, f50 = statistics.median(scrapes), pct(scrapes, 0.99), statistics.median(floors)
    print(f"{'nodes / jobs':34}{args.nodes:>10} / {args.jobs}")
    print(f"{'payload (MB)':34}{size / 1e6:>16.1f}")
    print(f"{'series per scrape':34}{lines:>16}")
    print(f"{'scrape p50 / p99 (s)':34}{p50:>10.2f} / {p99:.2f}")
    print(f"{'floor p50 (fetch + json.loads, s)':34}{f50:>16.2f}")
    print(f"{'ratio scrape / floor':34}{p50 / f50:>16.2f}")
    print(f"{'exporter peak RSS (MB)':34}{rss:>16.1f}")
    print(
        f"RESULT slurm_nodes={args.nodes} slurm_jobs={args.jobs} slurm_scrape_p50_s={p50:.2f} "
        f"slurm_scrape_p99_s={p99:.2f} slurm_floor_s={f50:.2f} slurm_ratio_to_floor={p50 / f50:.2f} "
        f"slurm_peak_rss_mb={rss:.0f}"
    )


def proc_peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description="Slurm exporter at scale against the floor")
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    asyncio.run(bench(parser.parse_args()))


if __name__ == "__main__":
    main()

"""Slurm exporter at scale: a large cluster's JSON from a fake slurmrestd, against the floor.

The payloads are shaped like the real output of the installed Slurm: one node, one running GPU
job and one pending job are recorded from the lab's real cluster (lab/slurm.py) and replicated to
``--nodes`` nodes and ``--jobs`` jobs (a third running), indented as slurmrestd 22.05 writes them.
A fake slurmrestd on 127.0.0.1 serves them and, as slurmrestd 22.05 does, answers a request with
``update_time`` by HTTP 304 when the listing has not changed since.  ``powerplane exporter
slurm`` runs in its own process (min_interval 0: every scrape asks slurmrestd) and is scraped
``--runs`` times in each of two states:

- changed: every listing changed before each scrape (a busy cluster: slurmctld's
  ``update_time`` is all or nothing, so every answer is the whole listing);
- steady: nothing changed (the answers are 304; the exporter serves what it holds).

The floor is what no exporter can avoid: fetching the same payloads and JSON-decoding them
(``json.loads``), and nothing else; the typed floor decodes them into the exporter's own record
structs instead (msgspec), without parsing or rendering.  Printed: scrape p50/p99 in both
states, the floors, the ratio of a changed scrape to the floor, the exporter's peak RSS, and a
RESULT line.  Not a test: run it on a quiet machine and label figures taken under load as such.
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
import msgspec
import yaml
from aiohttp import web

from powerplane.exporters.slurm import model
from powerplane.exporters.slurm.sources import CLOCK_MARGIN
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


class Changes:
    """When the fake slurmctld's listings last changed (one time for all of them)."""

    def __init__(self) -> None:
        self.at = time.time()

    def now(self) -> None:
        self.at = time.time()


async def serve(payloads: dict[str, bytes], changes: Changes) -> tuple[web.AppRunner, str]:
    app = web.Application()
    spec = json.dumps({"paths": {f"/slurm/v0.0.38/{e}": {} for e in ENDPOINTS}}).encode()
    app.router.add_get("/openapi/v3", lambda _r: _body(spec))

    async def answer(request: web.Request, body: bytes) -> web.Response:
        since = request.query.get("update_time")
        # slurmctld: no change when (update_time - 1) >= the listing's last change.
        if since is not None and int(since) - 1 >= int(changes.at):
            return web.Response(status=304)
        return await _body(body)

    for name, body in payloads.items():
        app.router.add_get(f"/slurm/v0.0.38/{name}", lambda r, b=body: answer(r, b))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


async def _body(body: bytes) -> web.Response:
    return web.Response(body=body, content_type="application/json")


class _Jobs(msgspec.Struct):
    jobs: list[model.JobRecord]


class _Nodes(msgspec.Struct):
    nodes: list[model.NodeRecord]


_TYPED = {"jobs": _Jobs, "nodes": _Nodes}


async def floor(url: str, typed: bool = False) -> float:
    """Fetch every endpoint's payload and json.loads it (``typed``: decode the jobs and nodes into
    the exporter's record structs with msgspec): nothing else."""
    start = time.perf_counter()
    async with aiohttp.ClientSession() as session:
        for name in ENDPOINTS:
            async with session.get(f"{url}/slurm/v0.0.38/{name}") as r:
                body = await r.read()
                if typed:
                    msgspec.json.decode(body, type=_TYPED.get(name, Any))
                else:
                    json.loads(body)
                del body
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
        if args.stages:
            await stages(payloads)
            return
        changes = Changes()
        runner, url = await serve(payloads, changes)
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
            floors, typed, scrapes, steady, lines = [], [], [], [], 0
            for _ in range(args.runs):
                floors.append(await floor(url))
                typed.append(await floor(url, typed=True))
                changes.now()
                await asyncio.sleep(1.05)  # the change lies in a past second, as slurmctld counts
                elapsed, lines = await scrape(f"127.0.0.1:{port}")
                scrapes.append(elapsed)
            # The exporter's update_time lies CLOCK_MARGIN before its previous request (v0.0.38
            # says no time of its own): one more full read, then answers are 304.
            await asyncio.sleep(CLOCK_MARGIN + 1.1)
            await scrape(f"127.0.0.1:{port}")
            for _ in range(args.runs):
                elapsed, same = await scrape(f"127.0.0.1:{port}")
                if same != lines:
                    raise RuntimeError(f"a steady scrape had {same} lines, a changed one {lines}")
                steady.append(elapsed)
            rss = procs.rss_mb(exporter.pid, "VmHWM")
        finally:
            exporter.stop()
            await runner.cleanup()
    p50, p99, f50 = statistics.median(scrapes), pct(scrapes, 0.99), statistics.median(floors)
    s50, s99, t50 = statistics.median(steady), pct(steady, 0.99), statistics.median(typed)
    print(f"{'nodes / jobs':38}{args.nodes:>10} / {args.jobs}")
    print(f"{'payload (MB)':38}{size / 1e6:>16.1f}")
    print(f"{'series per scrape':38}{lines:>16}")
    print(f"{'scrape, all changed, p50 / p99 (s)':38}{p50:>10.2f} / {p99:.2f}")
    print(f"{'scrape, steady, p50 / p99 (s)':38}{s50:>10.2f} / {s99:.2f}")
    print(f"{'floor p50 (fetch + json.loads, s)':38}{f50:>16.2f}")
    print(f"{'typed floor p50 (fetch + msgspec, s)':38}{t50:>16.2f}")
    print(f"{'ratio changed scrape / floor':38}{p50 / f50:>16.2f}")
    print(f"{'exporter peak RSS (MB)':38}{rss:>16.1f}")
    print(
        f"RESULT slurm_nodes={args.nodes} slurm_jobs={args.jobs} slurm_scrape_p50_s={p50:.2f} "
        f"slurm_scrape_p99_s={p99:.2f} slurm_floor_s={f50:.2f} slurm_ratio_to_floor={p50 / f50:.2f} "
        f"slurm_peak_rss_mb={rss:.0f} slurm_typed_floor_s={t50:.2f} slurm_steady_p50_s={s50:.2f} "
        f"slurm_steady_p99_s={s99:.2f}"
    )


async def stages(payloads: dict[str, bytes]) -> None:
    """Where the time goes, stage by stage, in CPU seconds of this process (``--stages``)."""
    from powerplane.exporters.runtime import exposition
    from powerplane.exporters.slurm import collectors, config, sources, stream

    cpu = time.process_time
    listings = {}
    for endpoint in (sources.NODES, sources.JOBS):
        data = payloads[endpoint.name]
        start = cpu()
        sink = stream.Stream(lambda _batch, _first: None, type=endpoint.type)
        await stream.read_document(stream.chunks_of(data), {endpoint.key: sink})
        decoded = cpu()
        limits = config.Limits(max_records=10**7)
        listings[endpoint.name] = await sources.parse_stream(stream.chunks_of(data), endpoint, limits)
        parsed = cpu()
        json.loads(data)
        loads = cpu() - parsed
        print(f"{endpoint.name + ': decode (msgspec) / parse / json.loads':44}"
              f"{decoded - start:8.2f} {parsed - decoded - (decoded - start):8.2f} {loads:8.2f}")  # fmt: skip
    jobs = collectors.JobCollector(None, config.JobsConfig(max_mapped=10**7), config.Privacy())  # type: ignore[arg-type]
    nodes = collectors.NodeCollector(None, config.Limits())  # type: ignore[arg-type]
    fetched = collectors.Fetched(listings)
    for state in ("first render", "records' lines kept", "listing unchanged"):
        if state != "listing unchanged":
            jobs._rendered = nodes._rendered = ((), [])
        start = cpu()
        families = [*jobs.render(fetched), *nodes.render(fetched)]
        rendered = cpu()
        body = exposition.render(families)
        print(f"{'families / exposition, ' + state:44}{rendered - start:8.2f} {cpu() - rendered:8.2f}")
    print(f"{'exposition (MB)':44}{len(body) / 1e6:8.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description="Slurm exporter at scale against the floor")
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--stages", action="store_true", help="only the CPU time of each stage, in process")
    asyncio.run(bench(parser.parse_args()))


if __name__ == "__main__":
    main()

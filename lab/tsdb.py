"""A Prometheus TSDB filled with exactly known data: OpenMetrics text → promtool → a real Prometheus.

``promtool tsdb create-blocks-from openmetrics`` reads the input file once per block, so the text
is written to a file (streamed from an iterator of lines, never held whole) and removed after
use; a month of data is backfilled a day at a time so that no more than a day's text is on disk.
Samples may come time-major (every series at one time, then the next time): promtool does not
need a family's samples to be contiguous.

    tsdb = Path("data")
    backfill(tsdb, lines)                        # lines: "name{labels} value timestamp_s\\n"
    with BackfilledPrometheus(workdir, tsdb) as prom:
        prom.query("sum(x)")
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable
from pathlib import Path

from .procs import Prometheus, find_binary


def backfill(
    tsdb: Path, lines: Iterable[str], workdir: Path | None = None, promtool: str | None = None
) -> int:
    """Write ``lines`` (OpenMetrics samples, each ending in a newline) as blocks into ``tsdb``.

    Returns the bytes of text written.
    """
    binary = promtool or find_binary("promtool")
    if binary is None:
        raise FileNotFoundError("promtool is not installed (Debian package 'prometheus')")
    tsdb.mkdir(parents=True, exist_ok=True)
    text = (workdir or tsdb.parent) / f".backfill-{tsdb.name}.om"
    written = 0
    with open(text, "w", encoding="utf-8") as out:
        for line in lines:
            written += out.write(line)
        out.write("# EOF\n")
    try:
        result = subprocess.run(
            [
                binary,
                "tsdb",
                "create-blocks-from",
                "openmetrics",
                "--max-block-duration=24h",
                str(text),
                str(tsdb),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"promtool backfill failed ({result.returncode}): {result.stderr[-2000:]}")
    finally:
        text.unlink(missing_ok=True)
    return written


class BackfilledPrometheus(Prometheus):
    """A real Prometheus serving a backfilled TSDB (no scrapes; retention long enough for old data)."""

    def __init__(self, workdir: Path, tsdb: Path, binary: str | None = None) -> None:
        super().__init__(workdir, scrape_configs=[], binary=binary)
        self.tsdb = tsdb

    def argv(self) -> list[str]:
        assert self.binary is not None
        return [
            self.binary,
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.tsdb}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            # Retention counts back from the newest block: backfilled months must not be deleted.
            "--storage.tsdb.retention.time=100y",
            "--query.max-samples=200000000",
        ]

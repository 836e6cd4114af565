"""powerplane report against a real Prometheus backfilled with exactly known data (test_report_data.py).

Every expected figure below is worked out by hand from the data's description; each format is
read back (JSON parsed, CSV parsed, XLSX re-read with openpyxl, HTML parsed, Markdown tables split)
and compared with the same figures.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import openpyxl
import pytest

from powerplane.accounting.prometheus import ClientSettings, PrometheusClient, QueryRecord
from powerplane.accounting.report import build as report_build
from powerplane.accounting.report.build import Options, build
from powerplane.accounting.report.fold import Window
from powerplane.accounting.report.text import to_json
from powerplane.lab.tsdb import BackfilledPrometheus, backfill
from tests.accounting.test_report_data import T0, lines
from tests.conftest import require_binary
from tests.helpers import assert_same_document

POWERPLANE = str(Path(sys.executable).with_name("powerplane"))
KWH = 3.6e6

# (grouping, group) → figures.  Energy in kWh, cost in EUR, CO2 in kg, power in W, times as T0 + s.
EXPECTED: dict[tuple[str, str], dict[str, Any]] = {
    # 400 W for 1 h + 500 W for 1 h from the BMC counter; cost 0.4 kWh x 0.1 + 0.5 kWh x 0.2 EUR/kWh.
    ("node", "node-01"): {
        "energy_kwh": 0.9,
        "bmc_kwh": 0.9,
        "rapl_kwh": 0.4,
        "cost_eur": 0.14,
        "co2_kg": 0.27,
        "method": "counter",
        "best_sources": "bmc 100%",
        "avg_power_w": 450,
        "peak_power_w": 500,
        "peak_at": T0 + 3660,
        "coverage": 1.0,
        "gaps": 0,
        "alerts": 0,
    },
    # 250 W for 100 of 120 minutes (the gap 00:50-01:10 is not filled; the reset loses nothing);
    # 50 min in each price hour: 0.2083 kWh x 0.1 + 0.2083 kWh x 0.2.
    ("node", "node-02"): {
        "energy_kwh": 0.25 * 100 / 60,
        "rapl_kwh": 0.25 * 100 / 60,
        "cost_eur": 0.0625,
        "co2_kg": 0.125,
        "method": "counter",
        "best_sources": "rapl+gpu 100%",
        "avg_power_w": 250,
        "peak_power_w": 250,
        "coverage": 100 / 120,
        "gaps": 1,
        "alerts": 0,
    },
    # The PDU outlet (600 W) is the best source; the GPU counter (300 W) is shown beside it.
    ("node", "node-03"): {
        "energy_kwh": 1.2,
        "pdu_kwh": 1.2,
        "gpu_kwh": 0.6,
        "cost_eur": 0.18,
        "co2_kg": 0.36,
        "method": "counter",
        "best_sources": "pdu 100%",
        "peak_power_w": 600,
        "peak_at": T0 + 60,
        "gpu_utilisation": 0.5,
        "max_gpu_temperature_c": 92.0,
        "gpu_temperature_above_s": 1200,
        "alerts": 1,
        "coverage": 1.0,
        "facility_kwh": 0.12,  # 60 W of recorded overhead, not in the IT energy
    },
    # No BMC meter: its 350 W gauge is integrated; the GPU counter (200 W) is not the best source.
    ("node", "node-04"): {
        "energy_kwh": 0.7,
        "bmc_kwh": 0.7,
        "gpu_kwh": 0.4,
        "cost_eur": 0.105,
        "co2_kg": 0.21,
        "method": "integrated",
        "best_sources": "bmc 100%",
        "max_inlet_temperature_c": 24.0,
        "inlet_temperature_above_s": 0,
        "gpu_utilisation": 0.25,
        "coverage": 1.0,
    },
    # In the inventory, never measured: kept, with no energy and a gap over the whole range.
    ("node", "node-05"): {
        "energy_kwh": 0.0,
        "cost_eur": None,
        "method": "no data",
        "coverage": 0.0,
        "gaps": 1,
        "facility_kwh": None,
    },
    # node-01 + node-02: the peak 500 + 250 W first occurs once node-02 is back at 01:10.
    ("rack", "rack-a"): {
        "members": 2,
        "energy_kwh": 0.9 + 0.25 * 100 / 60,
        "cost_eur": 0.2025,
        "peak_power_w": 750,
        "peak_at": T0 + 4260,
        "coverage": 220 / 240,
        "best_sources": "bmc 55%, rapl+gpu 45%",
        "avg_power_w": (0.9 + 0.25 * 100 / 60) * KWH / 7200,
    },
    ("rack", "rack-b"): {
        "members": 3,
        "energy_kwh": 1.9,
        "cost_eur": 0.285,
        "peak_power_w": 950,
        "peak_at": T0 + 60,
        "coverage": 240 / 360,
        "method": "counter 50% / integrated 50%",
        "alerts": 1,
        "gpu_utilisation": 0.375,
        "facility_kwh": 0.12,
    },
    ("cluster", "c1"): {
        "members": 5,
        "energy_kwh": 0.9 + 0.25 * 100 / 60 + 1.2 + 0.7,
        "cost_eur": 0.4875,
        "co2_kg": 0.965,
        "peak_power_w": 1700,
        "peak_at": T0 + 4260,
        "alerts": 1,
    },
    ("partition", "cpu"): {"members": 2, "energy_kwh": 0.9 + 0.25 * 100 / 60, "cost_eur": 0.2025},
    ("partition", "gpu"): {"members": 3, "energy_kwh": 1.9, "cost_eur": 0.285},
    # Attributed power, integrated: 500 W in the cheap hour, 400 W in the dear one, 200 W across both.
    ("job", "101"): {"energy_kwh": 0.5, "cost_eur": 0.05, "method": "integrated", "peak_power_w": 500},
    ("job", "102"): {"energy_kwh": 0.4, "cost_eur": 0.08},
    ("job", "103"): {"energy_kwh": 0.2, "cost_eur": 0.03, "avg_power_w": 200},
    # node-01 1400 W x 30 min, node-02 250 W x 100 min, node-03 100 + 200 W, node-04 200 W.
    ("job", "(unattributed)"): {"energy_kwh": 0.7 + 0.25 * 100 / 60 + 0.3 + 0.4},
    ("user", "alice"): {"energy_kwh": 0.7, "cost_eur": 0.08, "avg_power_w": 0.7 * KWH / 5400},
    ("user", "bob"): {"energy_kwh": 0.4},
    ("account", "physics"): {"energy_kwh": 0.7},
    ("account", "chem"): {"energy_kwh": 0.4},
    ("pod", "train-0"): {"energy_kwh": 0.3, "cost_eur": 0.045},
    ("namespace", "ml"): {"energy_kwh": 0.3},
}
GROUPINGS = ("cluster", "rack", "node", "partition", "job", "user", "account", "pod", "namespace")


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackfilledPrometheus]:
    binary = require_binary("prometheus")
    require_binary("promtool")
    work = tmp_path_factory.mktemp("report-prom")
    backfill(work / "data", lines())
    with BackfilledPrometheus(work / "prom", work / "data", binary=binary) as started:
        yield started


def run_report(prom: BackfilledPrometheus, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    by = [a for g in GROUPINGS for a in ("--by", g)]
    argv = [POWERPLANE, "report", "--prometheus", prom.url, "--from", "2026-03-02T00:00Z"]
    argv += ["--to", "2026-03-02T02:00Z", "--step", "60s", *by, "--out", str(out), *extra]
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def outputs(prom: BackfilledPrometheus, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("report-out")
    paths = {}
    for fmt in ("json", "csv", "xlsx", "html", "md"):
        path = out / f"report.{fmt}"
        result = run_report(prom, path)
        assert result.returncode == 0, result.stderr
        assert result.stdout == ""  # no progress bar when not on a terminal
        paths[fmt] = path
    return paths


def _close(actual: Any, expected: Any, digits: int | None, what: str) -> None:
    if expected is None:
        assert actual in (None, ""), what
    elif isinstance(expected, str):
        assert actual == expected, what
    else:
        tolerance = 0.5 * 10 ** -(digits if digits is not None else 6)
        assert actual is not None and actual != "", what
        assert abs(float(actual) - float(expected)) <= tolerance + 1e-9, f"{what}: {actual} != {expected}"


# --- JSON: every figure unrounded ---------------------------------------------------------------


def test_json_figures_match_the_hand_computed_values(outputs: dict[str, Path]) -> None:
    doc = json.loads(outputs["json"].read_text())
    rows = {(g, r["group"]): r for g, rs in doc["rows"].items() for r in rs}
    for (grouping, group), figures in EXPECTED.items():
        row = rows[(grouping, group)]
        for key, expected in figures.items():
            if key.endswith("_kwh") and key not in ("energy_kwh", "unpriced_kwh", "facility_kwh"):
                actual = row["source_kwh"].get(key.removesuffix("_kwh"))
            elif key == "best_sources":
                actual = ", ".join(f"{k} {v:.0%}" for k, v in row["best_sources"].items() if v > 0)
            elif key == "gaps":
                actual = len(row["gaps"])
            else:
                actual = row[key]
            _close(actual, expected, None if key != "peak_at" else 0, f"{grouping}/{group} {key}")
    assert doc["total"]["energy_kwh"] == pytest.approx(0.9 + 0.25 * 100 / 60 + 1.2 + 0.7)
    assert doc["total"]["cost_eur"] == pytest.approx(0.4875)


def test_owners_plus_unattributed_equal_the_metered_power(outputs: dict[str, Path]) -> None:
    doc = json.loads(outputs["json"].read_text())
    jobs = sum(r["energy_kwh"] for r in doc["rows"]["job"])
    pods = sum(r["energy_kwh"] for r in doc["rows"]["pod"] if r["group"] != "(unattributed)")
    assert jobs + pods == pytest.approx(doc["total"]["energy_kwh"])


def test_gaps_periods_and_alerts(outputs: dict[str, Path]) -> None:
    doc = json.loads(outputs["json"].read_text())
    node02 = next(r for r in doc["rows"]["node"] if r["group"] == "node-02")
    assert [(g["member"], g["start"] - T0, g["end"] - T0) for g in node02["gaps"]] == [
        ("node-02", 3000, 4200)
    ]
    node05 = next(r for r in doc["rows"]["node"] if r["group"] == "node-05")
    assert [(g["start"] - T0, g["end"] - T0) for g in node05["gaps"]] == [(0, 7200)]
    periods = doc["periods"]
    assert len(periods) == 8
    assert [p["price_eur_per_mwh"]["DE-LU"] for p in periods] == [100] * 4 + [200] * 4
    # Period 0: 400 + 250 + 600 + 350 W for 15 min;
    # period 3 lacks node-02's last 10 min, period 4 its first 10.
    assert periods[0]["energy_kwh"] == pytest.approx(1600 * 900 / KWH)
    assert periods[3]["energy_kwh"] == pytest.approx((1350 * 900 + 250 * 300) / KWH)
    assert periods[4]["energy_kwh"] == pytest.approx((1450 * 900 + 250 * 300) / KWH)
    assert periods[4]["cost_eur"] == pytest.approx((1450 * 900 + 250 * 300) / KWH * 0.2)
    assert sum(p["cost_eur"] for p in periods) == pytest.approx(0.4875)
    [alert] = doc["alerts"]
    assert alert["alertname"] == "PowerplaneGpuTemperatureHigh" and alert["labels"]["node"] == "node-03"
    assert (alert["start"] - T0, alert["end"] - T0) == (1800, 2700)


# --- CSV -----------------------------------------------------------------------------------------


def test_csv_rows(outputs: dict[str, Path]) -> None:
    rows = {(r["grouping"], r["group"]): r for r in csv.DictReader(io.StringIO(outputs["csv"].read_text()))}
    for (grouping, group), figures in EXPECTED.items():
        row = rows[(grouping, group)]
        for key, expected in figures.items():
            if key == "peak_at":
                expected = _utc(expected)
            _close(row[key] or None, expected, None, f"csv {grouping}/{group} {key}")
    assert rows[("total", "(total)")]["cost_eur"].startswith("0.4875")


def _utc(timestamp: float) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


# --- XLSX re-read with openpyxl ------------------------------------------------------------------


def test_xlsx_sheets_and_cells(outputs: dict[str, Path]) -> None:
    import datetime as dt

    book = openpyxl.load_workbook(outputs["xlsx"], read_only=True)
    assert book.sheetnames == [
        "summary",
        *(f"by {g}" for g in GROUPINGS),
        "periods",
        "gaps",
        "alerts",
        "method",
    ]
    summary = {r[0]: r[1] for r in book["summary"].iter_rows(min_row=3, values_only=True) if r[0]}
    assert summary["cost (EUR)"] == pytest.approx(0.4875)
    assert summary["peak power (W)"] == pytest.approx(1700)
    assert summary["peak at"] == dt.datetime(2026, 3, 2, 1, 11)
    headers = {"group": "group", "members": "members", "energy_kwh": "energy (kWh)", "cost_eur": "cost (EUR)"}
    headers |= {
        "co2_kg": "CO2 (kg)",
        "peak_power_w": "peak power (W)",
        "coverage": "coverage",
        "method": "method",
    }
    headers |= {
        "bmc_kwh": "bmc (kWh)",
        "pdu_kwh": "pdu (kWh)",
        "rapl_kwh": "rapl (kWh)",
        "gpu_kwh": "gpu (kWh)",
    }
    headers |= {"avg_power_w": "avg power (W)", "alerts": "alerts", "max_gpu_temperature_c": "max GPU (°C)"}
    headers |= {"facility_kwh": "facility (kWh)"}
    for grouping in GROUPINGS:
        sheet = list(book[f"by {grouping}"].iter_rows(values_only=True))
        index = {h: i for i, h in enumerate(sheet[0])}
        cells = {r[0]: r for r in sheet[1:]}
        for (g, group), figures in EXPECTED.items():
            if g != grouping:
                continue
            for key, expected in figures.items():
                if key in headers and headers[key] in index:
                    value = cells[group][index[headers[key]]]
                    _close(value, expected, None, f"xlsx {grouping}/{group} {key}")
    periods = list(book["periods"].iter_rows(min_row=2, values_only=True))
    assert [p[3] for p in periods] == [100] * 4 + [200] * 4
    assert list(book["gaps"].iter_rows(min_row=2, values_only=True)) == [
        ("node-02", dt.datetime(2026, 3, 2, 0, 50), dt.datetime(2026, 3, 2, 1, 10), "20 min"),
        ("node-05", dt.datetime(2026, 3, 2, 0, 0), dt.datetime(2026, 3, 2, 2, 0), "2h00"),
    ]
    method = [r[0] for r in book["method"].iter_rows(values_only=True) if r[0]]
    assert any("15-minute market period" in line for line in method)


# --- HTML parsed ---------------------------------------------------------------------------------


class _Tables(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.images: list[str] = []
        self.kpis: dict[str, str] = {}
        self._section = ""
        self._cell: list[str] | None = None
        self._row: list[str] = []
        self._kpi = ""
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "h2":
            self._section = (a.get("id") or "").removeprefix("by-")
        if tag == "img":
            self.images.append(a.get("src") or "")
        if tag in ("link", "script") or (tag == "img" and not (a.get("src") or "").startswith("data:")):
            self.external.append(tag)
        if tag == "div" and (a.get("id") or "").startswith("kpi-"):
            self._kpi = (a.get("id") or "")[4:]
        if tag == "tr":
            self._row = []
        if tag in ("td", "th"):
            self._cell = []

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        elif self._kpi:
            self.kpis[self._kpi] = self.kpis.get(self._kpi, "") + data

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self._row.append("".join(self._cell))
            self._cell = None
        if tag == "tr":
            self.tables.setdefault(self._section, []).append(self._row)
        if tag == "div":
            self._kpi = ""


def test_html_is_self_contained_with_charts_and_the_figures(outputs: dict[str, Path]) -> None:
    parser = _Tables()
    parser.feed(outputs["html"].read_text())
    assert parser.external == []
    assert len(parser.images) == 4 and all(i.startswith("data:image/png;base64,") for i in parser.images)
    assert parser.kpis["cost"] == "cost0.49 EUR" and parser.kpis["energy"] == "energy3.217 kWh"
    _check_text_tables(parser.tables, "html")
    assert parser.tables["gaps"][1] == ["node-02", "2026-03-02 00:50 UTC", "2026-03-02 01:10 UTC", "20 min"]


# --- Markdown --------------------------------------------------------------------------------------


def test_markdown_tables(outputs: dict[str, Path]) -> None:
    tables: dict[str, list[list[str]]] = {}
    section = ""
    for line in outputs["md"].read_text().splitlines():
        if line.startswith("## By "):
            section = line.removeprefix("## By ")
        elif line.startswith("## "):
            section = line.removeprefix("## ").lower()
        elif line.startswith("|") and not line.startswith("|---"):
            tables.setdefault(section, []).append([c.strip() for c in line.strip("|").split(" | ")])
    _check_text_tables(tables, "md")
    text = outputs["md"].read_text()
    assert "- Cost: **0.49 EUR**" in text and "- Energy: **3.217 kWh**" in text


def _check_text_tables(tables: dict[str, list[list[str]]], what: str) -> None:
    digits = {"energy (kWh)": 3, "cost (EUR)": 2, "CO2 (kg)": 2, "peak power (W)": 0, "avg power (W)": 0}
    digits |= {"coverage": 4, "pdu (kWh)": 3, "bmc (kWh)": 3, "rapl (kWh)": 3, "gpu (kWh)": 3, "GPU util": 3}
    keys = {
        "energy_kwh": "energy (kWh)",
        "cost_eur": "cost (EUR)",
        "co2_kg": "CO2 (kg)",
        "coverage": "coverage",
    }
    keys |= {"peak_power_w": "peak power (W)", "avg_power_w": "avg power (W)", "method": "method"}
    keys |= {"bmc_kwh": "bmc (kWh)", "pdu_kwh": "pdu (kWh)", "rapl_kwh": "rapl (kWh)", "gpu_kwh": "gpu (kWh)"}
    keys |= {"best_sources": "best source", "gpu_utilisation": "GPU util", "peak_at": "peak at"}
    keys |= {"facility_kwh": "facility (kWh)"}
    digits["facility (kWh)"] = 3
    for grouping in GROUPINGS:
        table = tables[grouping]
        index = {h: i for i, h in enumerate(table[0])}
        cells = {r[0]: r for r in table[1:]}
        for (g, group), figures in EXPECTED.items():
            if g != grouping:
                continue
            for key, expected in figures.items():
                header = keys.get(key)
                if header is None or header not in index:
                    continue
                value = cells[group][index[header]]
                if key == "peak_at":
                    assert value == _utc(expected), f"{what} {g}/{group} peak at"
                else:
                    _close(value or None, expected, digits.get(header), f"{what} {grouping}/{group} {key}")


# --- the command's errors ------------------------------------------------------------------------


def test_a_refused_query_names_it(prom: BackfilledPrometheus, tmp_path: Path) -> None:
    result = run_report(prom, tmp_path / "r.json", "--rules-config", str(_bad_selector(tmp_path)))
    assert result.returncode == 1
    assert "powerplane_gpu_temperature_celsius{sensor=~" in result.stderr and "HTTP 400" in result.stderr
    assert not (tmp_path / "r.json").exists()


def _bad_selector(tmp_path: Path) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text("gpu_temperature_selector: 'sensor=~\"(\"'\n")
    return path


def test_unreachable_prometheus_and_bad_arguments(tmp_path: Path) -> None:
    base = [POWERPLANE, "report", "--from", "2026-03-02", "--to", "2026-03-03"]
    cases = [
        (["--prometheus", "http://127.0.0.1:1", "--out", str(tmp_path / "x.json")], "127.0.0.1:1"),
        (["--prometheus", "http://x", "--out", str(tmp_path / "x.txt")], "cannot tell the format"),
        (["--prometheus", "http://x", "--out", "-", "--format", "xlsx"], "standard output"),
        (["--prometheus", "http://x", "--out", "x.json", "--step", "7s"], "must divide"),
        (["--prometheus", "http://x", "--out", "x.json", "--timezone", "Mars/Olympus"], "unknown time zone"),
        (["--out", "x.json"], "no Prometheus URL"),
    ]
    swapped = [POWERPLANE, "report", "--from", "2026-03-03", "--to", "2026-03-02", "--out", "x.json"]

    def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)

    # Independent commands, side by side: each spends its time starting Python.
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(run, [*([*base, *extra] for extra, _ in cases), swapped]))
    for (extra, message), result in zip(cases, results[:-1], strict=True):
        assert result.returncode != 0 and message in result.stderr, (extra, result.stderr)
    assert results[-1].returncode == 2 and "not after" in results[-1].stderr


def test_a_range_without_data_still_gives_every_format(prom: BackfilledPrometheus, tmp_path: Path) -> None:
    for fmt in ("json", "csv", "xlsx", "html", "md"):
        out = tmp_path / f"empty.{fmt}"
        argv = [
            POWERPLANE,
            "report",
            "--prometheus",
            prom.url,
            "--from",
            "2025-01-01",
            "--to",
            "2025-01-01T06:00Z",
        ]
        result = subprocess.run(
            [*argv, "--by", "rack", "--by", "job", "--out", str(out)], capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr
        assert out.stat().st_size > 0
    doc = json.loads((tmp_path / "empty.json").read_text())
    assert doc["total"]["energy_kwh"] == 0 and doc["total"]["cost_eur"] is None
    assert doc["rows"] == {"rack": [], "job": []} and len(doc["periods"]) == 24
    assert "- Cost: **no price**" in (tmp_path / "empty.md").read_text()


# --- chunks in flight and the query log ----------------------------------------------------------


async def _built(prom: BackfilledPrometheus, log: list[QueryRecord] | None = None) -> dict[str, Any]:
    async with PrometheusClient(ClientSettings(url=prom.url)) as client:
        if log is not None:
            client.query_log = log.append
        window = Window(T0, T0 + 7200, 60.0)
        report = await build(client, Options(window, GROUPINGS))
    doc: dict[str, Any] = json.loads(to_json(report))
    doc.pop("generated_at")
    return doc


async def test_chunks_folded_while_others_run_change_no_figure(
    prom: BackfilledPrometheus, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = await _built(prom)
    # One market period per chunk (8 chunks), three in flight: gaps, peaks and periods cross chunks.
    monkeypatch.setattr(report_build, "POINT_BUDGET", 1)
    monkeypatch.setattr(report_build, "CHUNKS_AHEAD", 3)
    log: list[QueryRecord] = []
    chunked = await _built(prom, log)
    counter = "sum by (node) (increase(powerplane_redfish_energy_joules_total[60s]))"
    energy = [r for r in log if r.path == "query_range" and r.query == counter]
    assert sorted((r.start, r.end) for r in energy) == [
        (T0 + 900 * p + 60, T0 + 900 * (p + 1)) for p in range(8)
    ]
    # Partial sums are added in another order: equal to the last few bits.
    assert_same_document(chunked, whole, 1e-12)
    assert whole["total"]["energy_kwh"] > 0


async def test_the_query_log_names_each_request_with_what_prometheus_read(
    prom: BackfilledPrometheus, tmp_path: Path
) -> None:
    result = run_report(prom, tmp_path / "r.json", "--query-log", str(tmp_path / "q.jsonl"))
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in (tmp_path / "q.jsonl").read_text().splitlines()]
    ranges = [r for r in records if r["path"] == "query_range"]
    assert ranges and all(r["step"] in (60.0, 900.0) and r["start"] < r["end"] for r in ranges)
    assert all(r["seconds"] > 0 and r["bytes"] > 0 and r["server_seconds"] is not None for r in ranges)
    energy = [r for r in ranges if r["query"].startswith("sum by (node) (increase(powerplane_redfish")]
    # node-01's BMC counter over two hours: the server read its samples.
    assert len(energy) == 1 and energy[0]["samples"] > 0
    assert {"series", "label/__name__/values"} <= {r["path"] for r in records}
    assert json.loads((tmp_path / "r.json").read_text())["total"]["energy_kwh"] > 0
    unwritable = run_report(prom, tmp_path / "s.json", "--query-log", str(tmp_path / "no" / "q.jsonl"))
    assert unwritable.returncode != 0 and "q.jsonl" in unwritable.stderr

"""The page against a real Prometheus, Alertmanager and node_exporter with known states (conftest)."""

from __future__ import annotations

import json
import subprocess
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from bs4 import BeautifulSoup, Tag

from powerplane.lab import procs
from powerplane.statuspage.server import CONTENT_SECURITY_POLICY
from tests.conftest import require_binary
from tests.helpers import parse, value

from .conftest import HOSTILE, USERS, Clock, Served, World

pytestmark = pytest.mark.e2e


def fetch(url: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def html(url: str) -> BeautifulSoup:
    status, headers, body = fetch(url)
    assert status == 200, body[:300]
    assert headers["Content-Type"].startswith("text/html")
    return BeautifulSoup(body, "html.parser")


def api(url: str) -> Any:
    status, headers, body = fetch(url)
    assert status == 200, body[:300]
    assert headers["Content-Type"].startswith("application/json")
    return json.loads(body)


def row(soup: BeautifulSoup | Tag, section: str, key: str) -> list[str]:
    """The cells' text of the row whose header is ``key`` in the tables of section ``#section``."""
    found = soup.select_one(f"#{section}")
    assert found is not None, f"no section {section}"
    for tr in found.select("tr"):
        head = tr.find("th")
        if head is not None and head.get_text(strip=True) == key:
            return [td.get_text(" ", strip=True) for td in tr.find_all("td")]
    raise AssertionError(f"no row {key!r} in #{section}")


@pytest.fixture(scope="module")
def served(world: World) -> Served:
    return world.serve()


def test_the_system_tab_shows_the_known_states(served: Served) -> None:
    soup = html(f"{served.url}/system/alpha")
    assert soup.select_one("nav.tabs a[aria-current=page]").get_text(strip=True) == "Alpha (H100)"
    # Availability: a drained GPU node; a down and two reserved CPU nodes; login nodes.
    assert row(soup, "availability", "gpu") == ["5", "4", "0", "1", "0"]
    assert row(soup, "availability", "cpu") == ["9", "6", "1", "0", "2"]
    login1, login2 = row(soup, "availability", "login1.alpha"), row(soup, "availability", "login2.alpha")
    assert login1[:2] == ["up", "1.50 on 4 cores"]
    assert login2[0] == "down"
    assert "1 of 2 up" in soup.select_one("#availability caption").get_text()
    # Utilisation and the pending queue; users are counted, never named.
    gpu = row(soup, "utilisation", "gpu")
    assert gpu[:3] == ["78\u00a0% 78\u00a0%", "70\u00a0% 70\u00a0%", "60\u00a0% 60\u00a0%"]
    assert gpu[3:] == ["6", "37", "3"]
    assert row(soup, "utilisation", "cpu")[3:] == ["10", "0", "1"]
    meter = soup.select_one('#utilisation tr[data-partition="gpu"] meter')
    assert meter["value"] == "0.781" and meter["low"] == "0.75" and meter["high"] == "0.9"
    # Filesystems: /home available, /scratch read-only, the archive's check failing.
    assert row(soup, "filesystems", "home")[0] == "available"
    assert row(soup, "filesystems", "scratch")[0] == "degraded (read-only)"
    assert row(soup, "filesystems", "archive")[0] == "unavailable"
    # Power from the cluster recording rule.
    assert "42.0 kW" in soup.select_one("#power").get_text()
    # Every section was just fetched.
    assert {p["class"][1] for p in soup.select("p.updated")} == {"freshness-fresh"}
    assert soup.select_one(".system-head .badge").get_text(strip=True) == "degraded"


def test_outages_alerts_and_reservations(served: Served) -> None:
    soup = html(f"{served.url}/system/alpha")
    events = soup.select("#outages li.event")
    titles = [e.select_one(".event-title").get_text(strip=True) for e in events]
    # What is on now first (most severe, then longest running), then what is planned, soonest first.
    assert titles == [
        "Network maintenance",
        "Scratch filesystem is slow",
        "Maintenance: partition cpu",
        "GPU firmware update",
    ]
    assert [e.select_one(".phase").get_text() for e in events] == ["now", "now", "planned", "planned"]
    link = events[3].select_one("a")
    assert link["href"] == "https://wiki.example/gpu-firmware" and "noopener" in link["rel"]
    for time_tag in soup.select("#outages time"):
        assert time_tag["datetime"].endswith("Z")
    text = soup.get_text()
    # Not public, ended, not maintenance, or named after a user: none of it shows.
    for hidden in ("Internal: breaker", "InternalOnly", "Old outage", "alice_course", "root_7", *USERS):
        assert hidden not in text, hidden


def test_hostile_text_is_escaped(served: Served) -> None:
    status, _headers, body = fetch(f"{served.url}/system/beta")
    assert status == 200
    assert b"<script>alert" not in body and b"<b>friends</b>" not in body
    soup = BeautifulSoup(body, "html.parser")
    assert HOSTILE in [t.get_text(strip=True) for t in soup.select("#outages .event-title")]
    assert all(s.get("src") for s in soup.find_all("script")), "only the page's own script file"


def test_a_system_without_series_says_no_data(served: Served) -> None:
    soup = html(f"{served.url}/system/beta")
    assert soup.select_one(".system-head .badge").get_text(strip=True) == "no data"
    availability = soup.select_one("#availability p.updated")
    assert "freshness-no_data" in availability["class"]
    assert "No data for this system" in availability.get_text()
    assert row(soup, "availability", "login1.beta")[0] == "no data"
    doc = api(f"{served.url}/api/v1/status/beta")
    assert doc["status"] == "no_data"
    assert doc["partitions"] == []
    assert {doc["sections"][k]["freshness"] for k in ("availability", "utilisation", "power")} == {"no_data"}


def test_the_json_says_what_the_page_says(served: Served) -> None:
    doc = api(f"{served.url}/api/v1/status/alpha")
    gpu, cpu = doc["partitions"]
    assert gpu["name"] == "gpu" and gpu["nodes"] == {
        "total": 5,
        "available": 4,
        "down": 0,
        "drained": 1,
        "reserved": 0,
        "other": 0,
    }
    assert gpu["jobs"] == {"running": 6, "pending": 37} and gpu["users"] == 3
    assert gpu["utilisation"] == {"cpu": 0.78125, "gpu": 0.7, "memory": 0.6}
    assert cpu["nodes"]["down"] == 1 and cpu["nodes"]["reserved"] == 2 and cpu["utilisation"]["gpu"] is None
    assert doc["login_nodes"][0] == {
        "name": "login1.alpha",
        "up": True,
        "load1": 1.5,
        "cpus": 4,
        "users": None,
    }
    assert doc["login_nodes"][1]["up"] is False
    assert [(f["name"], f["status"]) for f in doc["filesystems"]] == [
        ("home", "ok"),
        ("scratch", "degraded"),
        ("archive", "down"),
    ]
    assert doc["power"]["watts"] == 42_000.0 and doc["power"]["currency"] == "EUR"
    assert doc["status"] == "degraded"
    assert {s["freshness"] for s in doc["sections"].values()} == {"fresh"}
    everything = api(f"{served.url}/api/v1/status")
    assert [s["name"] for s in everything["systems"]] == ["alpha", "beta"]
    assert everything["systems"][0] == {
        k: v for k, v in doc.items() if k not in ("generated_at", "data_generation")
    }
    outages = api(f"{served.url}/api/v1/outages")["outages"]
    assert [(o["kind"], o["title"]) for o in outages if "alpha" in o["systems"]] == [
        ("announcement", "Network maintenance"),
        ("alert", "Scratch filesystem is slow"),
        ("reservation", "Maintenance: partition cpu"),
        ("announcement", "GPU firmware update"),
    ]
    reservations = api(f"{served.url}/api/v1/reservations")["reservations"]
    assert [(r["partition"], r["severity"], r["active"]) for r in reservations] == [
        ("cpu", "maintenance", False)
    ]
    raw = json.dumps([doc, outages, reservations])
    for hidden in (*USERS, "InternalOnly", "root_7"):
        assert hidden not in raw


def test_one_set_of_queries_per_interval_however_many_viewers(world: World) -> None:
    clock = Clock()
    served = world.serve(world.config(refresh={"data_seconds": 60, "page_seconds": 300}), clock)
    paths = ["/", "/system/alpha", "/system/beta", "/api/v1/status", "/api/v1/outages"]
    before = world.query_requests()
    with ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(lambda i: fetch(served.url + paths[i % len(paths)])[0], range(200)))
    assert answers == [200] * 200
    # Every query of the refresh went to Prometheus in one batched request.
    assert world.query_requests() - before == 1
    assert served.page.prometheus.requests == 1 and served.page.alertmanager.requests == 1
    # The next interval: one more request, again for all viewers.
    clock.offset += 61
    with ThreadPoolExecutor(32) as pool:
        assert set(pool.map(lambda i: fetch(served.url + paths[i % len(paths)])[0], range(200))) == {200}
    assert world.query_requests() - before == 2
    metrics = parse(fetch(served.url + "/metrics")[2].decode())
    assert value(metrics, "powerplane_statuspage_upstream_requests_total", source="prometheus") == 2
    assert value(metrics, "powerplane_statuspage_source_up", source="alertmanager") == 1
    assert value(metrics, "powerplane_statuspage_refreshes_total", result="success") == 2


def test_stale_data_turns_amber_then_red_and_stays_shown(world: World) -> None:
    clock = Clock()
    served = world.serve(world.config(refresh={"data_seconds": 60, "page_seconds": 300}), clock)
    assert api(f"{served.url}/api/v1/status/alpha")["sections"]["availability"]["freshness"] == "fresh"
    # Prometheus becomes unreachable: the last data stays, growing older.
    served.page.prometheus.url = f"http://127.0.0.1:{procs.free_port()}"
    clock.offset += 11 * 60
    doc = api(f"{served.url}/api/v1/status/alpha")
    section = doc["sections"]["availability"]
    assert section["freshness"] == "warning" and section["error"] is True
    assert 659 <= section["age_seconds"] <= 700
    assert doc["partitions"][0]["nodes"]["drained"] == 1
    soup = html(f"{served.url}/system/alpha")
    updated = soup.select_one("#availability p.updated")
    assert "freshness-warning" in updated["class"]
    assert "11 min ago" in updated.get_text() and "source unavailable" in updated.get_text()
    assert row(soup, "availability", "gpu")[3] == "1"
    clock.offset += 20 * 60
    soup = html(f"{served.url}/system/alpha")
    assert "freshness-critical" in soup.select_one("#availability p.updated")["class"]
    assert "31 min ago" in soup.select_one("#availability p.updated").get_text()
    metrics = parse(fetch(served.url + "/metrics")[2].decode())
    assert value(metrics, "powerplane_statuspage_source_up", source="prometheus") == 0
    assert value(metrics, "powerplane_statuspage_source_age_seconds", source="prometheus") >= 31 * 60


def test_a_broken_query_costs_only_its_own_section(world: World) -> None:
    config = world.config(queries={"login_load": "max by (instance) (node_load1"})
    served = world.serve(config)
    doc = api(f"{served.url}/api/v1/status/alpha")
    assert doc["login_nodes"][0]["load1"] is None and doc["login_nodes"][0]["up"] is True
    assert doc["sections"]["availability"]["error"] is True
    assert doc["sections"]["utilisation"]["error"] is False and doc["partitions"][0]["jobs"]["pending"] == 37
    # The batch failed, then each query was asked alone; from now on the broken one goes alone.
    assert served.page.prometheus.isolated == {"login_load"}
    metrics = parse(fetch(served.url + "/metrics")[2].decode())
    assert value(metrics, "powerplane_statuspage_query_up", query="login_load") == 0
    assert value(metrics, "powerplane_statuspage_query_up", query="partition_nodes") == 1


def test_every_answer_is_hardened(served: Served) -> None:
    for path in ("/", "/system/alpha", "/api/v1/status", "/static/style.css", "/system/nope", "/metrics"):
        _status, headers, _body = fetch(served.url + path)
        assert headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY, path
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["X-Frame-Options"] == "DENY"
    assert "script-src 'self'" in CONTENT_SECURITY_POLICY and "unsafe" not in CONTENT_SECURITY_POLICY
    soup = html(served.url + "/")
    assert not soup.find_all("style") and not soup.select("[style]")
    assert not [s for s in soup.find_all("script") if not s.get("src")]
    assert not [t for t in soup.find_all(True) if any(a.startswith("on") for a in t.attrs)]
    # Unknown systems are not echoed back; fragments are the content only.
    status, _h, body = fetch(served.url + "/system/%3Cscript%3E")
    assert status == 404 and b"script" not in body
    assert fetch(served.url + "/api/v1/status/nope")[0] == 404
    fragment = fetch(served.url + "/system/alpha?fragment=1")[2].decode()
    assert "<html" not in fragment and 'data-view="alpha"' in fragment
    # Gzip for clients that take it, the same bytes once inflated.
    status, headers, body = fetch(served.url + "/", **{"Accept-Encoding": "gzip"})
    assert headers["Content-Encoding"] == "gzip"
    import gzip

    assert gzip.decompress(body) == fetch(served.url + "/")[2]


def test_the_overview_lists_every_system(served: Served) -> None:
    soup = html(served.url + "/")
    cards = {c["data-system"]: c for c in soup.select(".system-card")}
    assert list(cards) == ["alpha", "beta"]
    facts = {
        dt.get_text(strip=True): dd.get_text(strip=True)
        for dt, dd in zip(cards["alpha"].select("dt"), cards["alpha"].select("dd"), strict=True)
    }
    assert facts == {
        "Login nodes up": "1 / 2",
        "Compute nodes available": "10 / 14",
        "Jobs running / pending": "16 / 37",
        "Outages and maintenance": "2 now, 2 planned",
    }
    assert cards["beta"].select_one(".badge").get_text(strip=True) == "no data"
    assert soup.select_one('meta[http-equiv="refresh"]') is not None  # inside <noscript>
    assert soup.select_one("noscript meta")["content"] == "300"


def test_cached_answers_are_the_prepared_bytes_and_revalidate_to_304(served: Served) -> None:
    paths = ["/", "/system/alpha", "/system/alpha?fragment=1", "/api/v1/status", "/static/style.css"]
    first = {p: fetch(served.url + p, **{"Accept-Encoding": "gzip"}) for p in paths}
    made = served.server.renderer.renditions
    with ThreadPoolExecutor(16) as pool:
        again = list(
            pool.map(lambda i: fetch(served.url + paths[i % 5], **{"Accept-Encoding": "gzip"}), range(100))
        )
    # Nothing rendered again within the minute: the same bytes and ETag for every viewer.
    for i, (status, headers, body) in enumerate(again):
        assert status == 200 and body == first[paths[i % 5]][2]
        assert headers["ETag"] == first[paths[i % 5]][1]["ETag"]
    assert served.server.renderer.renditions - made <= 1  # at most the minute turning
    for path, (_status, headers, _body) in first.items():
        status, h304, body = fetch(
            served.url + path, **{"Accept-Encoding": "gzip", "If-None-Match": headers["ETag"]}
        )
        assert (status, body) == (304, b""), path
        assert h304["ETag"] == headers["ETag"]
        assert h304["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
        # The plain copy has its own tag: the gzip one does not validate it.
        assert fetch(served.url + path, **{"If-None-Match": headers["ETag"]})[0] == 200
    assert fetch(served.url + "/", **{"If-None-Match": '"stale", W/"x"'})[0] == 200


def test_the_documented_revalidation_example_gets_a_304(served: Served) -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "status-page.md").read_text()
    section = doc.split("## Serving from the cache", 1)[1]
    script = section.split("```sh\n", 1)[1].split("```", 1)[0]
    script = script.replace("http://127.0.0.1:9879/", served.url + "/")
    require_binary("curl")
    argv = ["bash", "-euo", "pipefail", "-c", script]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "304"

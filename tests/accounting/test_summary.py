"""The job summary's arithmetic (steps, periods, integration) and its Prometheus client's errors."""

from __future__ import annotations

import base64
import contextlib
import http.server
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from powerplane.accounting import model
from powerplane.accounting import summary as s
from powerplane.accounting.window import JobWindow
from powerplane.rulegen import render
from tests.conftest import PrometheusFactory


def test_ranges_leave_out_their_start_as_adjacent_periods_must() -> None:
    # Prometheus 2 ranges hold both ends: a sample on a period's edge would count twice.
    assert s._range(900) == "899999ms"
    assert s._range(0.0001) == "1ms"


def test_periods_align_like_the_market_and_cut_the_window() -> None:
    assert s._grid(905.0, 2000.0, 900.0) == [(900.0, 1800.0), (1800.0, 2700.0)]
    assert s._grid(900.0, 1800.0, 900.0) == [(900.0, 1800.0)]
    assert s._cuts(905.0, 2000.0, 900.0) == [(905.0, 1800.0), (1800.0, 2000.0)]


def test_a_period_price_is_its_middle_not_a_lagging_scrape() -> None:
    samples = [(0.0, 100.0), (1.0, 100.0), (2.0, 200.0), (10.0, 200.0), (15.0, 200.0)]
    assert s._value_in(samples, 5.0, 15.0) == 200.0
    assert s._value_in(samples, 30.0, 40.0) is None


def test_node_names_are_literal_in_a_regex() -> None:
    assert s.re_escape("gpu-07.site") == "gpu-07\\.site"
    assert s.re_escape("a|b(c)") == "a\\|b\\(c\\)"


def test_only_http_urls_are_asked() -> None:
    for url in ("file:///etc/passwd", "ftp://x/", "localhost:9090", "http://"):
        with pytest.raises(ValueError, match="not an http"):
            s.Prometheus(url)


@contextlib.contextmanager
def answering(answer: Callable[[http.server.BaseHTTPRequestHandler], tuple[bytes, str]]) -> Iterator[str]:
    """An HTTP server whose every POST gets ``answer(request)`` (a body and its content type)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body, content_type = answer(self)
            self.send_response(200)
            if content_type:
                self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def liar() -> Iterator[str]:
    """A server answering anything but the Prometheus API."""
    with answering(
        lambda request: (b"<html>proxy login</html>" if "query_range" in request.path else b"x" * 5000, "")
    ) as url:
        yield url


def test_errors_name_the_server_never_its_credentials(liar: str, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = liar.replace("http://", "http://admin:hunter2@")
    with pytest.raises(s.PrometheusError) as err:
        s.Prometheus(secret).query_range("up", 0, 1, 1)
    assert "answered something that is not JSON" in str(err.value) and "hunter2" not in str(err.value)
    assert str(err.value).startswith(f"Prometheus {liar}: query 'up': ")
    monkeypatch.setattr(s, "MAX_ANSWER_BYTES", 1000)
    with pytest.raises(s.PrometheusError, match="answer exceeds 1000 bytes"):
        s.Prometheus(liar).query("up", 0)
    with pytest.raises(s.PrometheusError) as err:
        s.Prometheus("http://admin:hunter2@127.0.0.1:1").query("up", 0)
    assert "hunter2" not in str(err.value) and "127.0.0.1" in str(err.value)


def test_a_real_prometheus_refusing_a_query_says_why(prometheus: PrometheusFactory, tmp_path: Path) -> None:
    bare = s.Prometheus(prometheus([]).url)
    with pytest.raises(s.PrometheusError, match=r"HTTP 400.*parse error"):
        bare.query("sum(", 0)
    window = JobWindow("5", "prometheus", "ENDED", start=1000.0, end=2000.0, nodes=("n1",))
    result = s.summarize(bare, window, now=3000.0)
    assert result.statements == ["this Prometheus does not evaluate the accounting rules: nothing to read"]
    # A job nobody saw: a clear statement, no numbers.
    client = s.Prometheus(prometheus([], render.write(tmp_path / "rules")).url)
    assert client.rule_interval(model.REST) == 1.0
    result = s.summarize(client, window, now=3000.0)
    assert result.it_energy_kwh is None and result.total("cost_eur") is None
    assert any("no allocation of job 5" in line and "unknown, not zero" in line for line in result.statements)
    empty = s.summarize(client, JobWindow("6", "scontrol", "CANCELLED"), now=3000.0)
    assert empty.statements == ["job 6 ran on no nodes (state CANCELLED): there is nothing to account"]


def test_credentials_go_in_the_shared_clients_headers() -> None:
    seen: list[str] = []

    empty = b'{"status": "success", "data": {"resultType": "vector", "result": []}}'

    def answer(request: http.server.BaseHTTPRequestHandler) -> tuple[bytes, str]:
        seen.append(request.headers.get("Authorization", ""))
        return empty, "application/json"

    with answering(answer) as url:
        port = url.rsplit(":", 1)[1]
        assert s.Prometheus(f"http://ad%40min:p%3Aw@127.0.0.1:{port}").query("up", 0) == []
        assert s.Prometheus(url, token="t0ken").queries(0, "up", "up") == [[], []]
    assert seen == ["Basic " + base64.b64encode(b"ad@min:p:w").decode(), "Bearer t0ken", "Bearer t0ken"]

"""The Prometheus API client: chunking, retries, refusals, hostile answers, auth, TLS, progress."""

from __future__ import annotations

import io
import json
import ssl
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import trustme
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from powerplane.accounting.prometheus import (
    KIND,
    MAX_POINTS,
    ClientSettings,
    Progress,
    PrometheusClient,
    QueryError,
    QueryRecord,
    choose_step,
    chunk_bounds,
    json_lines,
)
from powerplane.exporters.runtime.config import ConfigError
from powerplane.lab.tsdb import BackfilledPrometheus, backfill
from tests.conftest import require_binary

T0 = 1_772_409_600  # 2026-03-02T00:00:00Z


# --- chunks and steps ------------------------------------------------------------------------------


# No per-example deadline: the machines that run these are shared, and a wall-clock limit would
# make the test a timed one.
@settings(deadline=None)
@given(
    start=st.integers(0, 10**9),
    steps=st.integers(0, 60_000),
    step=st.sampled_from([1.0, 15.0, 60.0, 900.0]),
    points=st.integers(1, 20_000),
)
def test_chunks_cover_every_step_once_and_respect_the_limit(
    start: int, steps: int, step: float, points: int
) -> None:
    end = start + steps * step
    bounds = chunk_bounds(start, end, step, points)
    times = [a + k * step for a, b in bounds for k in range(round((b - a) / step) + 1)]
    assert times == [start + k * step for k in range(steps + 1)]
    assert all(round((b - a) / step) + 1 <= min(points, MAX_POINTS) for a, b in bounds)


def test_chunk_bounds_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="step"):
        chunk_bounds(0, 10, 0)
    with pytest.raises(ValueError, match="ends before"):
        chunk_bounds(10, 0, 1)


def test_step_is_chosen_from_the_range() -> None:
    assert choose_step(0, 3600) == 15
    assert choose_step(0, 86_400) == 30
    assert choose_step(0, 7 * 86_400) == 300
    assert choose_step(0, 30 * 86_400) == 900
    assert choose_step(0, 365 * 86_400) == 900  # more than 3000 points: still a market period


# --- settings ----------------------------------------------------------------------------------------


def test_settings_read_secrets_from_env_and_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROM_PW", "s3cret-pw")
    cfg = tmp_path / "prom.yaml"
    cfg.write_text("url: https://prom.example\nbasic_auth: {username: report, password: {env: PROM_PW}}\n")
    settings = KIND.load(cfg)
    assert settings.basic_auth is not None and settings.basic_auth.password.reveal() == "s3cret-pw"
    assert "s3cret-pw" not in repr(settings)
    token = tmp_path / "token"
    token.write_text("tok-123456\n")
    cfg.write_text(f"url: https://prom.example\nbearer_token: {{file: {token}}}\n")
    settings = KIND.load(cfg)
    assert settings.bearer_token is not None and settings.bearer_token.reveal() == "tok-123456"
    assert settings.tls.insecure_skip_verify is False


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("url: x\nbearer_token: inline-token\n", "secrets cannot be written inline"),
        ("url: x\nbasic_auth: {username: u, password: {env: NOPE_NOT_SET}}\n", "NOPE_NOT_SET is not set"),
        ("url: x\nbearer_token: {env: A}\nbasic_auth: {username: u, password: {env: A}}\n", "not both"),
        ("url: x\nretries: -1\n", "retries"),
        ("url: x\nverify: false\n", "unknown key"),
    ],
)
def test_bad_settings_name_the_field(text: str, message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("A", "aaaa")
    with pytest.raises(ConfigError, match=message):
        KIND.load_text(text, "prom.yaml")


def test_a_client_needs_a_url() -> None:
    with pytest.raises(ConfigError, match="no Prometheus URL"):
        PrometheusClient(ClientSettings())


# --- a real Prometheus ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Any:
    binary = require_binary("prometheus")
    require_binary("promtool")
    work = tmp_path_factory.mktemp("client-prom")
    # 4 hours at 1 s: 14,401 points, more than one range query may return.
    lines = (f'ramp{{node="n{n}"}} {t - T0 + n} {t}\n' for t in range(T0, T0 + 4 * 3600 + 1) for n in (1, 2))
    backfill(work / "data", lines)
    with BackfilledPrometheus(work / "prom", work / "data", binary=binary) as prom:
        yield prom


async def test_range_over_the_point_limit_is_chunked_and_complete(real_prometheus: Any) -> None:
    async with PrometheusClient(ClientSettings(url=real_prometheus.url)) as prom:
        series = await prom.query_range("ramp", T0, T0 + 4 * 3600, 1)
        chunks = [c async for c in prom.range_chunks("ramp", T0, T0 + 4 * 3600, 1)]
    assert len(chunks) == 2  # 14,401 points: 11,000 + 3,401
    assert {s.labels["node"] for s in series} == {"n1", "n2"}
    for s in series:
        offset = int(s.labels["node"][1:])
        assert len(s.times) == 4 * 3600 + 1
        assert list(s.times[:3]) == [T0, T0 + 1, T0 + 2]
        assert (s.values == s.times - T0 + offset).all()


async def test_instant_query_and_a_refused_query_names_it(real_prometheus: Any) -> None:
    async with PrometheusClient(ClientSettings(url=real_prometheus.url, retries=0)) as prom:
        result = await prom.query('ramp{node="n2"}', at=T0 + 10)
        assert [(s.labels["node"], s.value) for s in result] == [("n2", 12.0)]
        with pytest.raises(QueryError) as refused:
            await prom.query("sum(ramp", at=T0)
    assert "'sum(ramp'" in str(refused.value) and "bad_data" in str(refused.value)
    assert "HTTP 400" in str(refused.value)


async def test_small_body_cap_halves_the_chunks(real_prometheus: Any) -> None:
    settings = ClientSettings(url=real_prometheus.url, max_body_bytes=65536)
    async with PrometheusClient(settings) as prom:
        series = await prom.query_range('ramp{node="n1"}', T0, T0 + 3600, 1)
    assert len(series) == 1 and len(series[0].times) == 3601
    assert (series[0].values == series[0].times - T0 + 1).all()


async def test_metric_names_come_from_the_index_of_the_range(real_prometheus: Any) -> None:
    async with PrometheusClient(ClientSettings(url=real_prometheus.url)) as prom:
        names = await prom.label_values("__name__", T0, T0 + 3600)
        nodes = await prom.label_values("node", T0, T0 + 3600)
        before = await prom.label_values("__name__", T0 - 10 * 86400, T0 - 9 * 86400)
    assert "ramp" in names and sorted(nodes) == ["n1", "n2"]
    assert "ramp" not in before


def test_the_typed_decoder_and_the_checked_one_agree() -> None:
    from powerplane.accounting import prometheus as client_module

    doc = {
        "status": "success",
        "warnings": ["a partial answer"],
        "infos": ["a field the client does not read"],
        "data": {
            "resultType": "matrix",
            "result": [
                {"metric": {"node": "a"}, "values": [[1, "2.5"], [2.5, "NaN"], [3, "+Inf"], [4, "-1e3"]]},
                {"metric": {}, "values": []},
            ],
        },
    }
    fast = client_module._matrix("q", 200, json.dumps(doc).encode(), "u")
    checked = [client_module._series("q", item) for item in doc["data"]["result"]]  # type: ignore[index]
    assert [s.labels for s in fast] == [{"node": "a"}, {}]
    for a, b in zip(fast, checked, strict=True):
        assert a.labels == b.labels
        np.testing.assert_array_equal(a.times, b.times)
        np.testing.assert_array_equal(a.values, b.values)
    np.testing.assert_array_equal(fast[0].times, [1.0, 2.5, 3.0, 4.0])
    np.testing.assert_array_equal(fast[0].values, [2.5, np.nan, np.inf, -1000.0])


# --- hostile and failing servers ----------------------------------------------------------------

Handler = Callable[[web.Request], Any]


@pytest.fixture
async def fake() -> AsyncIterator[Callable[[Handler], Any]]:
    runners: list[web.AppRunner] = []

    async def start(handler: Handler, ssl_context: ssl.SSLContext | None = None) -> str:
        app = web.Application()
        app.router.add_route("*", "/api/v1/{path}", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
        await site.start()
        runners.append(runner)
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return f"{'https' if ssl_context else 'http'}://127.0.0.1:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


VECTOR = {
    "status": "success",
    "data": {"resultType": "vector", "result": [{"metric": {"a": "b"}, "value": [1, "2"]}]},
}


async def test_retries_5xx_and_429_then_succeeds(fake: Any) -> None:
    calls = []

    async def handler(request: web.Request) -> web.Response:
        calls.append(1)
        if len(calls) == 1:
            return web.Response(status=503, text="overloaded")
        if len(calls) == 2:
            return web.Response(status=429, text="slow down")
        return web.json_response(VECTOR)

    url = await fake(handler)
    async with PrometheusClient(ClientSettings(url=url, retries=3), backoff_base=0.01) as prom:
        result = await prom.query("up")
    assert len(calls) == 3 and result[0].value == 2.0


async def test_retries_used_up_names_the_query(fake: Any) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=500, text="boom")

    url = await fake(handler)
    async with PrometheusClient(ClientSettings(url=url, retries=2), backoff_base=0.01) as prom:
        with pytest.raises(QueryError, match=r"query 'sum\(x\)': HTTP 500"):
            await prom.query("sum(x)")


async def test_connection_refused_is_retried_then_reported() -> None:
    settings = ClientSettings(url="http://127.0.0.1:1", retries=1)
    async with PrometheusClient(settings, backoff_base=0.01) as prom:
        with pytest.raises(QueryError, match=r"query 'up'.*after 2 tries"):
            await prom.query("up")


def _vector(item: object) -> bytes:
    return json.dumps({"status": "success", "data": {"resultType": "vector", "result": [item]}}).encode()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"<html>not json</html>", "not JSON"),
        (b'{"status": "error", "error": "x"}', "status 'error'"),
        (b'{"status": "success"}', "no 'data'"),
        (b'{"status": "success", "data": {"resultType": "matrix", "result": []}}', "expected a vector"),
        (
            b'{"status": "success", "data": {"resultType": "vector", "result": [{"value": [1, "2"]}]}}',
            "metric",
        ),
        (_vector({"metric": {"a": 1}, "value": [1, "2"]}), "strings"),
        (_vector({"metric": {}, "value": [1, "x"]}), "not a number"),
        (_vector({"metric": {}, "value": 3}), "expected"),
        (b"[" * 100_000 + b"]" * 100_000, "not JSON"),
    ],
)
async def test_malformed_answers_fail_clearly(fake: Any, body: bytes, message: str) -> None:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")

    url = await fake(handler)
    async with PrometheusClient(ClientSettings(url=url, retries=0)) as prom:
        with pytest.raises(QueryError, match=message):
            await prom.query("up")


async def test_malformed_matrix_points_name_the_series(fake: Any) -> None:
    doc = {
        "status": "success",
        "data": {
            "resultType": "matrix",
            "result": [{"metric": {"__name__": "x", "node": "n"}, "values": [[1, "2"], [3]]}],
        },
    }

    async def handler(request: web.Request) -> web.Response:
        return web.json_response(doc)

    url = await fake(handler)
    async with PrometheusClient(ClientSettings(url=url, retries=0)) as prom:
        with pytest.raises(QueryError, match=r'series x\{node="n"\}'):
            await prom.query_range("x", 0, 10, 1)


async def test_an_endless_body_stops_at_the_cap(fake: Any) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for _ in range(200):
            await response.write(b" " * 65536)
        return response

    url = await fake(handler)
    async with PrometheusClient(ClientSettings(url=url, retries=0, max_body_bytes=1 << 20)) as prom:
        with pytest.raises(QueryError, match="one step's answer exceeds"):
            await prom.query_range("up", 0, 0, 1)


async def test_credentials_are_sent_and_never_shown(fake: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        seen.append(request.headers.get("X-Scope-OrgID", ""))
        return web.Response(
            status=400, text=json.dumps({"status": "error", "errorType": "bad_data", "error": "nope"})
        )

    url = await fake(handler)
    monkeypatch.setenv("PROM_TOKEN", "tok-abcdef")
    settings = KIND.load_text(
        f"url: {url}\nbearer_token: {{env: PROM_TOKEN}}\nheaders: {{X-Scope-OrgID: t1}}\n"
    )
    async with PrometheusClient(settings) as prom:
        with pytest.raises(QueryError) as error:
            await prom.query("up")
    assert seen == ["Bearer tok-abcdef", "t1"]
    assert "tok-abcdef" not in str(error.value)
    monkeypatch.setenv("PROM_PW", "pw-123456")
    settings = KIND.load_text(f"url: {url}\nbasic_auth: {{username: rep, password: {{env: PROM_PW}}}}\n")
    async with PrometheusClient(settings) as prom:
        with pytest.raises(QueryError) as error:
            await prom.query("up")
    assert seen[2].startswith("Basic ") and "pw-123456" not in str(error.value)


async def test_tls_is_verified_by_default(fake: Any, tmp_path: Path) -> None:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)

    async def handler(request: web.Request) -> web.Response:
        return web.json_response(VECTOR)

    url = await fake(handler, server_ctx)
    async with PrometheusClient(ClientSettings(url=url, retries=0)) as prom:
        with pytest.raises(QueryError, match="certificate"):
            await prom.query("up")
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    trusted = KIND.load_text(f"url: {url}\ntls: {{ca_file: {ca_file}}}\n")
    async with PrometheusClient(trusted) as prom:
        assert (await prom.query("up"))[0].value == 2.0
    skipping = KIND.load_text(f"url: {url}\ntls: {{insecure_skip_verify: true}}\n")
    async with PrometheusClient(skipping) as prom:
        assert (await prom.query("up"))[0].value == 2.0


# --- progress --------------------------------------------------------------------------------------


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_draws_only_on_a_terminal() -> None:
    quiet = io.StringIO()
    bar = Progress(stream=quiet)
    bar.add(4)
    bar.advance(2)
    bar.close()
    assert quiet.getvalue() == ""
    tty = _Tty()
    bar = Progress(stream=tty)
    bar.add(4)
    bar.advance(2)
    bar.close()
    assert "2/4" in tty.getvalue() and tty.getvalue().endswith("\n")


def test_the_docs_settings_example_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    import re

    text = (Path(__file__).resolve().parents[2] / "docs" / "reports.md").read_text()
    example = re.search(r"```yaml\n(url: .*?)```", text, re.S)
    assert example, "docs/reports.md has no settings example"
    monkeypatch.setenv("PROM_PASSWORD", "pw-docs-example")
    settings = KIND.load_text(example.group(1), "docs/reports.md")
    assert settings.basic_auth is not None and settings.basic_auth.username == "report"
    assert settings.headers == {"X-Scope-OrgID": "tenant-a"} and not settings.tls.insecure_skip_verify


def test_the_query_log_keeps_whole_lines_when_threads_write_at_once(tmp_path: Path) -> None:
    # powerplane job asks from two threads at once; each record must stay one whole line.
    path = tmp_path / "q.jsonl"
    with path.open("w", encoding="utf-8") as stream:
        write = json_lines(stream)
        query = "sum(x)" + " " * 5000  # long lines, written in more than one piece by the stream

        def many(thread: int) -> None:
            for i in range(500):
                write(QueryRecord("query", query, float(thread), None, None, 0.1, i, i, 0.0))

        threads = [threading.Thread(target=many, args=(t,)) for t in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line]
    assert len(records) == 8 * 500
    expected = [(float(t), i) for t in range(8) for i in range(500)]
    assert sorted((r["start"], r["bytes"]) for r in records) == expected

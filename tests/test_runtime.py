"""The shared exporter runtime: collectors, deadlines, probes, config, secrets, web config."""

from __future__ import annotations

import asyncio
import base64
import logging
import ssl
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import bcrypt
import pytest
import trustme
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from powerplane.cli import main
from powerplane.exporters.runtime import (
    Collector,
    CollectorError,
    ConfigError,
    ConfigKind,
    Deadline,
    ExporterServer,
    FailureLog,
    NoData,
    Partial,
    ProbeJob,
    Prober,
    ProbeRequestError,
    ResettableCounter,
    Scrape,
    WrappingCounter,
    parse_listen_address,
    resolve_secret,
    run_collectors,
    scrape_deadline,
    strict_object,
)
from powerplane.exporters.runtime.config import SECRET_SCHEMA, redacted
from powerplane.exporters.runtime.logs import scrub, setup_logging
from powerplane.exporters.runtime.webconfig import KIND as WEB_KIND

from .helpers import parse, undocumented, value


class Fixed(Collector[float]):
    """A collector whose fetch does what the test says."""

    def __init__(self, name: str, result: Any = 1.0, delay: float = 0.0) -> None:
        self.name = name
        self.result = result
        self.delay = delay
        self.fetches = 0

    async def fetch(self, deadline: Deadline) -> Any:
        self.fetches += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if isinstance(self.result, BaseException):
            raise self.result
        return self.result

    def render(self, snapshot: float) -> Iterable[Metric]:
        family = GaugeMetricFamily("test_value", "A test value.", labels=["collector"])
        family.add_metric([self.name], snapshot)
        yield family


def expose(outcomes: Any, exporter: str = "test") -> dict[str, Any]:
    return parse(generate_latest(Scrape(exporter, outcomes)).decode())  # type: ignore[arg-type]


# --- deadlines and addresses -------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "timeout", "expected"),
    [
        (None, 10.0, 10.0),  # no header: the configured timeout
        ("15", 10.0, 10.0),  # capped by the configured timeout
        ("5", 10.0, 4.5),  # the header minus the offset
        ("0.6", 10.0, 0.3),  # shorter than twice the offset: half of it
        ("garbage", 10.0, 10.0),
        ("-3", 10.0, 10.0),
        ("nan", 10.0, 10.0),
    ],
)
def test_scrape_deadline(header: str | None, timeout: float, expected: float) -> None:
    assert scrape_deadline(header, timeout).remaining() == pytest.approx(expected, abs=0.05)


@pytest.mark.parametrize(
    ("address", "expected"),
    [(":9871", ("0.0.0.0", 9871)), ("127.0.0.1:80", ("127.0.0.1", 80)), ("[::1]:9871", ("::1", 9871))],
)
def test_listen_address(address: str, expected: tuple[str, int]) -> None:
    assert parse_listen_address(address) == expected


@pytest.mark.parametrize("address", ["9871", "host:", "host:99999", "host:port"])
def test_listen_address_rejects(address: str) -> None:
    with pytest.raises(ValueError, match=r"--web\.listen-address"):
        parse_listen_address(address)


# --- collectors --------------------------------------------------------------------------


async def test_failing_collector_does_not_hide_the_others(caplog: pytest.LogCaptureFixture) -> None:
    failures = FailureLog(logging.getLogger("test"))
    collectors = [
        Fixed("good", 2.0),
        Fixed("bad", CollectorError("sensor/x: not a number")),
        Fixed("boom", KeyError("k")),
    ]
    outcomes = await run_collectors("test", collectors, Deadline.after(5), failures)
    samples = expose(outcomes)
    assert value(samples, "test_value", collector="good") == 2.0
    assert value(samples, "powerplane_scrape_collector_success", collector="good") == 1.0
    assert value(samples, "powerplane_scrape_collector_success", collector="bad") == 0.0
    assert value(samples, "powerplane_scrape_collector_success", collector="boom") == 0.0
    assert outcomes[1].error == "sensor/x: not a number"
    assert "KeyError" in outcomes[2].error


async def test_collector_deadline() -> None:
    failures = FailureLog(logging.getLogger("test"))
    slow, fast = Fixed("slow", 1.0, delay=5.0), Fixed("fast", 1.0)
    loop = asyncio.get_running_loop()
    start = loop.time()
    outcomes = await run_collectors("test", [slow, fast], Deadline.after(0.2), failures)
    assert loop.time() - start < 1.0
    assert [o.success for o in outcomes] == [False, True]
    assert outcomes[0].error == "deadline exceeded"


async def test_no_data_is_not_a_failure_and_partial_is() -> None:
    failures = FailureLog(logging.getLogger("test"))
    outcomes = await run_collectors(
        "test",
        [Fixed("absent", NoData("no GPU")), Fixed("partial", Partial(3.0, ["psu/1: missing"]))],
        Deadline.after(5),
        failures,
    )
    samples = expose(outcomes)
    assert value(samples, "powerplane_scrape_collector_success", collector="absent") == 1.0
    assert value(samples, "powerplane_scrape_collector_success", collector="partial") == 0.0
    assert value(samples, "test_value", collector="partial") == 3.0  # partial results are kept
    assert undocumented(generate_latest(Scrape("test", outcomes)).decode()) == {"test_value"}


async def test_failure_logged_once_per_condition(caplog: pytest.LogCaptureFixture) -> None:
    failures = FailureLog(logging.getLogger("powerplane.test"))
    bad = Fixed("bad", CollectorError("bmc: connection refused"))
    with caplog.at_level(logging.DEBUG, logger="powerplane.test"):
        for _ in range(5):
            await run_collectors("test", [bad], Deadline.after(5), failures, target="bmc-1")
        assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
        bad.result = CollectorError("bmc: timeout")  # a new cause is news
        await run_collectors("test", [bad], Deadline.after(5), failures, target="bmc-1")
        bad.result = 1.0
        await run_collectors("test", [bad], Deadline.after(5), failures, target="bmc-1")
    messages = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert messages == [
        ("WARNING", "collector failed"),
        ("WARNING", "collector failed"),
        ("INFO", "collector recovered"),
    ]


def test_same_family_from_two_collectors_is_exposed_once() -> None:
    from powerplane.exporters.runtime import Outcome

    a, b = GaugeMetricFamily("x", "X.", labels=["gpu"]), GaugeMetricFamily("x", "X.", labels=["gpu"])
    a.add_metric(["0"], 1.0)
    b.add_metric(["1"], 2.0)
    text = generate_latest(Scrape("t", [Outcome("a", True, 0.0, [a]), Outcome("b", True, 0.0, [b])])).decode()  # type: ignore[arg-type]
    assert text.count("# TYPE x gauge") == 1
    assert parse(text)["x"] == {(("gpu", "0"),): 1.0, (("gpu", "1"),): 2.0}


# --- counters ----------------------------------------------------------------------------


def test_wrapping_counter_adds_energy_across_a_wrap() -> None:
    c = WrappingCounter()
    assert c.update("z", 900, 1000) == 900
    assert c.update("z", 950, 1000) == 950
    assert c.update("z", 50, 1000) == 1050  # wrapped: 50 to the end, 50 after
    assert c.update("z", 60, 1000) == 1060


def test_resettable_counter_never_decreases() -> None:
    c = ResettableCounter()
    assert c.update("o", 100.0) == 100.0
    assert c.update("o", 130.0) == 130.0
    assert c.update("o", 5.0) == 135.0  # reset to 0 and counted 5 since
    assert c.update("o", 10.0) == 140.0
    assert c.resets == {"o": 1}


# --- config and secrets ------------------------------------------------------------------


def _kind() -> ConfigKind[dict[str, Any]]:
    schema = strict_object(
        {
            "modules": {
                "type": "object",
                "additionalProperties": strict_object(
                    {"timeout": {"type": "number", "minimum": 0.1}, "walk": {"type": "array"}}
                ),
            },
            "auths": {
                "type": "object",
                "additionalProperties": strict_object(
                    {"username": {"type": "string"}, "password": SECRET_SCHEMA}
                ),
            },
        }
    )

    def build(doc: Mapping[str, Any]) -> dict[str, Any]:
        return {
            name: {
                "username": a["username"],
                "password": resolve_secret(a["password"], f"auths.{name}.password"),
            }
            for name, a in doc.get("auths", {}).items()
        }

    return ConfigKind("test", schema, build)


def test_config_reports_every_error_with_its_path() -> None:
    text = """
modules:
  idrac: {timeout: -1, walk: 3, colour: red}
auths:
  admin: {username: root, password: calvin}
bogus: 1
"""
    with pytest.raises(ConfigError) as info:
        _kind().load_text(text, "redfish.yml")
    errors = info.value.errors
    assert "(top level): unknown key(s) 'bogus'" in errors
    assert "modules.idrac: unknown key(s) 'colour'" in errors
    assert "modules.idrac.timeout: -1 is less than the minimum of 0.1" in errors
    assert any(e.startswith("modules.idrac.walk:") for e in errors)
    assert "auths.admin.password: secrets cannot be written inline; use {env: NAME} or {file: PATH}" in errors
    assert "calvin" not in str(info.value)
    assert str(info.value).startswith("redfish.yml: ")


@pytest.mark.parametrize("text", ["modules: [", "a: b: c", "\t- x", "!!python/object:os.system {}"])
def test_config_rejects_malformed_yaml(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        _kind().load_text(text, "x.yml")
    assert info.value.errors


def test_secrets_from_env_and_file_are_redacted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BMC_PASSWORD", "s3cret-from-env")
    (tmp_path / "pw").write_text("s3cret-from-file\n")
    config = _kind().load_text(
        f"auths:\n  a: {{username: u, password: {{env: BMC_PASSWORD}}}}\n"
        f"  b: {{username: u, password: {{file: {tmp_path / 'pw'}}}}}\n"
    )
    assert config["a"]["password"].reveal() == "s3cret-from-env"
    assert config["b"]["password"].reveal() == "s3cret-from-file"
    dumped = f"{config} {redacted(config)} {config['a']['password']!s}"
    assert "s3cret" not in dumped
    assert "env:BMC_PASSWORD" in dumped
    assert scrub("login with s3cret-from-file failed") == "login with <redacted> failed"


def test_missing_secret_names_the_field(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("NOPE", raising=False)
    with pytest.raises(ConfigError, match=r"auths.a.password: environment variable NOPE is not set"):
        _kind().load_text("auths:\n  a: {username: u, password: {env: NOPE}}\n")
    with pytest.raises(ConfigError, match=r"auths.a.password: cannot read secret file"):
        _kind().load_text(f"auths:\n  a: {{username: u, password: {{file: {tmp_path}/missing}}}}\n")


def test_log_lines_scrub_secrets(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKEN_X", "tok-very-secret")
    resolve_secret({"env": "TOKEN_X"}, "auth.token")
    setup_logging("info", "logfmt")
    try:
        logging.getLogger("powerplane.test").warning("request failed: bad token tok-very-secret")
        setup_logging("info", "json")
        logging.getLogger("powerplane.test").warning("again tok-very-secret")
    finally:
        logging.getLogger().handlers.clear()
    err = capsys.readouterr().err
    assert "tok-very-secret" not in err
    assert err.count("<redacted>") == 2
    assert 'level=warn logger=powerplane.test msg="request failed: bad token <redacted>"' in err


def test_check_config_cli(tmp_path: Path) -> None:
    good = tmp_path / "web.yml"
    hashed = bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode()
    good.write_text(f"basic_auth_users:\n  prom: '{hashed}'\n")
    result = CliRunner().invoke(main, ["check-config", "--kind", "web", str(good)])
    assert result.exit_code == 0, result.output
    assert "valid web config" in result.output
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "tls_server_config: {cert_file: /nonexistent}\nbasic_auth_users: {prom: plaintext}\nhttp: 1\n"
    )
    result = CliRunner().invoke(main, ["check-config", "--kind", "web", str(bad)])
    assert result.exit_code == 1
    assert "tls_server_config: 'key_file' is a required property" in result.output
    assert "(top level): unknown key(s) 'http'" in result.output
    assert "basic_auth_users.prom:" in result.output
    assert "plaintext" not in result.output  # a wrongly stored password is not echoed back


# --- the HTTP server ---------------------------------------------------------------------


class ToyProber(Prober):
    """Targets a and b are configured; everything else is refused."""

    exporter = "toy"

    def __init__(self, delay: float = 0.0, fail_connect: bool = False) -> None:
        self.collectors = {
            t: [Fixed("power", 100.0, delay), Fixed("thermal", CollectorError("GeneralError"))]
            for t in ("a", "b")
        }
        self.fail_connect = fail_connect
        self.connects = 0
        self.closed = False

    def resolve(self, params: Mapping[str, str]) -> ProbeJob:
        target = params.get("target", "")
        if target not in self.collectors:
            raise ProbeRequestError(f"target {target!r} is not configured")
        if params.get("module", "default") != "default":
            raise ProbeRequestError(f"unknown module {params['module']!r}")

        async def connect(_deadline: Deadline) -> None:
            self.connects += 1
            if self.fail_connect:
                raise CollectorError(f"{target}: connection refused")

        return ProbeJob(target, "default", 10.0, self.collectors[target], device=target, connect=connect)

    async def close(self) -> None:
        self.closed = True


async def _serve(server: ExporterServer) -> str:
    host, port = await server.start("127.0.0.1", 0)
    return f"{server.scheme}://{host}:{port}"


async def test_probe_answers_partial_results_and_refuses_unknown_targets() -> None:
    prober = ToyProber()
    server = ExporterServer("toy", prober=prober)
    base = await _serve(server)
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/probe", params={"target": "a"}) as r:
                assert r.status == 200
                samples = parse(await r.text())
            for params in ({"target": "http://169.254.169.254/"}, {"target": "a", "module": "x"}, {}):
                async with http.get(f"{base}/probe", params=params) as r:
                    assert r.status == 400
                    assert "not configured" in await r.text() or "unknown module" in await r.text()
            async with http.get(f"{base}/metrics") as r:
                own = parse(await r.text())
    finally:
        await server.stop()
    assert value(samples, "powerplane_target_up") == 1.0
    assert value(samples, "test_value", collector="power") == 100.0
    assert value(samples, "powerplane_scrape_collector_success", collector="thermal") == 0.0
    assert value(own, "powerplane_probes_total", result="up") == 1.0
    assert prober.closed  # sessions released at shutdown


async def test_probe_connect_failure_is_target_down() -> None:
    server = ExporterServer("toy", prober=ToyProber(fail_connect=True))
    base = await _serve(server)
    try:
        async with aiohttp.ClientSession() as http, http.get(f"{base}/probe?target=b") as r:
            samples = parse(await r.text())
    finally:
        await server.stop()
    assert value(samples, "powerplane_target_up") == 0.0
    assert value(samples, "powerplane_scrape_collector_success", collector="power") == 0.0


async def test_concurrent_probes_of_one_target_coalesce() -> None:
    prober = ToyProber(delay=0.3)
    server = ExporterServer("toy", prober=prober)
    base = await _serve(server)
    try:
        async with aiohttp.ClientSession() as http:

            async def probe(target: str) -> dict[str, Any]:
                async with http.get(f"{base}/probe", params={"target": target}) as r:
                    return parse(await r.text())

            results = await asyncio.gather(*(probe("a") for _ in range(10)), probe("b"))
            async with http.get(f"{base}/metrics") as r:
                own = parse(await r.text())
    finally:
        await server.stop()
    assert all(value(s, "powerplane_target_up") == 1.0 for s in results)
    assert prober.collectors["a"][0].fetches == 1  # ten probes, one fetch
    assert prober.collectors["b"][0].fetches == 1
    assert value(own, "powerplane_probes_coalesced_total") == 9.0


async def test_probe_honours_the_scrape_timeout_header() -> None:
    server = ExporterServer("toy", prober=ToyProber(delay=30.0))
    base = await _serve(server)
    loop = asyncio.get_running_loop()
    try:
        async with aiohttp.ClientSession() as http:
            start = loop.time()
            async with http.get(
                f"{base}/probe?target=a", headers={"X-Prometheus-Scrape-Timeout-Seconds": "1.5"}
            ) as r:
                samples = parse(await r.text())
            elapsed = loop.time() - start
    finally:
        await server.stop()
    assert 0.9 < elapsed < 1.4  # 1.5 s minus the 0.5 s offset
    assert value(samples, "powerplane_scrape_collector_success", collector="power") == 0.0
    assert value(samples, "powerplane_target_up") == 0.0


async def test_a_hanging_collector_fails_alone_at_the_deadline() -> None:
    class OneHangs(ToyProber):
        def resolve(self, params: Mapping[str, str]) -> ProbeJob:
            job = super().resolve(params)
            collectors = [Fixed("power", 100.0), Fixed("thermal", 1.0, delay=30.0)]
            return ProbeJob(job.target, job.module, 1.0, collectors, device=job.target, connect=job.connect)

    server = ExporterServer("toy", prober=OneHangs())
    base = await _serve(server)
    try:
        async with aiohttp.ClientSession() as http, http.get(f"{base}/probe?target=a") as r:
            samples = parse(await r.text())
    finally:
        await server.stop()
    # the collector's own timeout fires before the probe's: the probe keeps what did arrive
    assert value(samples, "powerplane_target_up") == 1.0
    assert value(samples, "powerplane_scrape_collector_success", collector="power") == 1.0
    assert value(samples, "powerplane_scrape_collector_success", collector="thermal") == 0.0
    assert value(samples, "test_value", collector="power") == 100.0


async def test_per_device_concurrency_cap() -> None:
    class Tracking(Fixed):
        active = 0
        peak = 0

        async def fetch(self, deadline: Deadline) -> Any:
            Tracking.active += 1
            Tracking.peak = max(Tracking.peak, Tracking.active)
            try:
                await asyncio.sleep(0.1)
            finally:
                Tracking.active -= 1
            return 1.0

    class ManyModules(Prober):
        exporter = "toy"

        def resolve(self, params: Mapping[str, str]) -> ProbeJob:
            module = params["module"]
            return ProbeJob("dev", module, 10.0, [Tracking(module)], device="dev")

    server = ExporterServer("toy", prober=ManyModules(), per_device_concurrency=2)
    base = await _serve(server)
    try:
        async with aiohttp.ClientSession() as http:

            async def probe(module: str) -> int:
                async with http.get(f"{base}/probe", params={"target": "dev", "module": module}) as r:
                    return r.status

            assert await asyncio.gather(*(probe(f"m{i}") for i in range(8))) == [200] * 8
    finally:
        await server.stop()
    assert Tracking.peak == 2


async def test_landing_health_and_ready() -> None:
    server = ExporterServer("rapl", collectors=[Fixed("c")], description="test exporter")
    base = await _serve(server)
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(base + "/") as r:
                assert "powerplane rapl exporter" in await r.text()
                assert 'href="metrics"' in await r.text()
            async with http.get(base + "/-/healthy") as r:
                assert r.status == 200
            async with http.get(base + "/-/ready") as r:
                assert r.status == 200
            server.ready = False
            async with http.get(base + "/-/ready") as r:
                assert r.status == 503
            async with http.get(base + "/metrics", headers={"Accept": "application/openmetrics-text"}) as r:
                text = await r.text()
                assert r.headers["Content-Type"].startswith("application/openmetrics-text")
                assert text.endswith("# EOF\n")
            prometheus_accept = (
                "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
            )
            async with http.get(base + "/metrics", headers={"Accept": prometheus_accept}) as r:
                assert r.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
                assert "powerplane_scrape_collector_success" in await r.text()
            async with http.get(base + "/metrics", headers={"Accept-Encoding": "gzip"}) as r:
                assert r.headers.get("Content-Encoding") == "gzip"
                assert "powerplane_build_info" in await r.text()
    finally:
        await server.stop()


# --- web config: TLS and basic auth ------------------------------------------------------


async def test_tls_and_basic_auth(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp_path / "server.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    hashed = bcrypt.hashpw(b"right-password", bcrypt.gensalt(4)).decode()
    (tmp_path / "web.yml").write_text(
        f"tls_server_config:\n  cert_file: {tmp_path / 'server.pem'}\n  key_file: {tmp_path / 'server.pem'}\n"
        f"http_server_config:\n  headers: {{X-Frame-Options: deny}}\n"
        f"basic_auth_users:\n  prometheus: '{hashed}'\n"
    )
    web_config = WEB_KIND.load(tmp_path / "web.yml")
    server = ExporterServer("rapl", collectors=[Fixed("c")], web_config=web_config)
    base = await _serve(server)
    assert base.startswith("https://")
    client_ctx = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))

    def auth(user: str, password: str) -> dict[str, str]:
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}

    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(base + "/metrics", ssl=client_ctx) as r:
                assert r.status == 401
            for headers in (
                auth("prometheus", "wrong"),
                auth("nobody", "right-password"),
                {"Authorization": "Basic !!"},
            ):
                async with http.get(base + "/metrics", ssl=client_ctx, headers=headers) as r:
                    assert r.status == 401
            for _ in range(2):  # the second answer comes from the cache
                async with http.get(
                    base + "/metrics", ssl=client_ctx, headers=auth("prometheus", "right-password")
                ) as r:
                    assert r.status == 200
                    assert r.headers["X-Frame-Options"] == "deny"
            # Verification is on: a client that does not trust the CA is refused.
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                async with http.get(base + "/metrics"):
                    pass
    finally:
        await server.stop()


# --- exposition --------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(
    labels=st.lists(st.text(max_size=12), min_size=1, max_size=3),
    values=st.lists(
        st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(2**53), 2**53).map(float),
        min_size=1,
        max_size=3,
    ),
    help_text=st.text(max_size=40),
)
def test_fast_renderer_agrees_with_prometheus_client(
    labels: list[str], values: list[float], help_text: str
) -> None:
    from prometheus_client.core import CounterMetricFamily
    from prometheus_client.parser import text_string_to_metric_families

    from powerplane.exporters.runtime import exposition

    gauge = GaugeMetricFamily("g_watts", help_text, labels=["a"])
    counter = CounterMetricFamily("c_joules", help_text, labels=["a"])
    for i, v in enumerate(values):
        for j, label in enumerate(labels):
            gauge.add_metric([f"{label}{i}-{j}"], v)
            counter.add_metric([f"{label}{i}-{j}"], abs(v) if v == v else v)
    ours = exposition.render([gauge, counter]).decode()
    theirs = generate_latest(Scrape("t", [], [gauge, counter])).decode()  # type: ignore[arg-type]

    def samples(text: str) -> list[tuple[str, tuple[tuple[str, str], ...], str]]:
        return sorted(
            (s.name, tuple(sorted(s.labels.items())), repr(s.value))
            for f in text_string_to_metric_families(text)
            if not f.name.startswith("powerplane_")
            for s in f.samples
        )

    assert samples(ours) == samples(theirs)


def test_process_metrics_agree_with_prometheus_client() -> None:
    from prometheus_client.process_collector import ProcessCollector

    from powerplane.exporters.runtime.process import ProcessMetrics

    theirs = {m.name: m.samples[0].value for m in ProcessCollector(registry=None).collect()}
    ours = {m.name: m.samples[0].value for m in ProcessMetrics().collect()}
    assert set(ours) == set(theirs)
    for name in ("process_start_time_seconds", "process_max_fds", "process_virtual_memory_bytes"):
        assert ours[name] == pytest.approx(theirs[name], rel=0.01), name
    assert ours["process_cpu_seconds"] == pytest.approx(theirs["process_cpu_seconds"], abs=0.5)
    assert ours["process_open_fds"] == pytest.approx(theirs["process_open_fds"], abs=3)


async def test_every_fetch_finishes_before_any_render() -> None:
    """A render may use what another collector fetched in the same scrape, however slow."""
    shared: dict[str, str] = {}

    class Slow(Fixed):
        async def fetch(self, deadline: Deadline) -> Any:
            await asyncio.sleep(0.05)
            shared["job"] = "slurm-77"
            return 1.0

    class Reader(Fixed):
        def render(self, snapshot: float) -> Iterable[Metric]:
            family = GaugeMetricFamily("test_labelled", "A test value.", labels=["job"])
            family.add_metric([shared.get("job", "")], snapshot)
            yield family

    outcomes = await run_collectors(
        "test", [Reader("reader"), Slow("slow")], Deadline.after(5), FailureLog(logging.getLogger("test"))
    )
    assert expose(outcomes)["test_labelled"] == {(("job", "slurm-77"),): 1.0}
    assert outcomes[1].duration >= 0.05  # the slow fetch is timed as its own

"""The exporter's own endpoint: TLS and basic auth from an exporter-toolkit web config."""

from __future__ import annotations

import base64
import ssl
from pathlib import Path

import aiohttp
import bcrypt
import pytest
import trustme
from click.testing import CliRunner

from powerplane.cli import main
from powerplane.exporters.runtime import ExporterServer
from powerplane.exporters.runtime.webconfig import KIND as WEB_KIND
from tests.conftest import Serve

from .conftest import Fixed


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


async def test_tls_and_basic_auth(tmp_path: Path, serve: Serve) -> None:
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
    served = await serve(ExporterServer("rapl", collectors=[Fixed("c")], web_config=web_config))
    base = served.url
    assert base.startswith("https://")
    client_ctx = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))

    def auth(user: str, password: str) -> dict[str, str]:
        return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}

    http = served.http
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

"""The exporter's own endpoint and logs under hostile input: long passwords, bad hashes, swapped
TLS files, and secrets in every encoding a log line can carry."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterable
from pathlib import Path

import aiohttp
import bcrypt
import pytest
import trustme
from prometheus_client.core import Metric

from powerplane.exporters.runtime import Collector, Deadline, ExporterServer, resolve_secret, setup_logging
from powerplane.exporters.runtime.config import ConfigError
from powerplane.exporters.runtime.webconfig import KIND as WEB_KIND


class Fixed(Collector[None]):
    name = "fixed"

    async def fetch(self, deadline: Deadline) -> None:
        return None

    def render(self, snapshot: None) -> Iterable[Metric]:
        return []


def _auth(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def test_a_password_over_72_bytes_is_a_401_not_a_500(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    hashed = bcrypt.hashpw(b"right-password", bcrypt.gensalt(4)).decode()
    (tmp_path / "web.yml").write_text(f"basic_auth_users:\n  prometheus: '{hashed}'\n")
    server = ExporterServer("rapl", collectors=[Fixed()], web_config=WEB_KIND.load(tmp_path / "web.yml"))
    host, port = await server.start("127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as http:
            for password in ("x" * 73, "ä" * 40, "right-password" + "!" * 100):
                with caplog.at_level(logging.ERROR):
                    async with http.get(
                        f"http://{host}:{port}/metrics", headers=_auth("prometheus", password)
                    ) as r:
                        assert r.status == 401
            assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
            async with http.get(
                f"http://{host}:{port}/metrics", headers=_auth("prometheus", "right-password")
            ) as r:
                assert r.status == 200
    finally:
        await server.stop()


def test_a_basic_auth_entry_that_is_not_a_bcrypt_hash_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "web.yml").write_text("basic_auth_users:\n  prometheus: '$2y$10$short'\n")
    with pytest.raises(ConfigError, match=r"basic_auth_users.prometheus: invalid value"):
        WEB_KIND.load(tmp_path / "web.yml")


def test_swapped_certificate_and_key_are_a_config_error_not_a_traceback(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    (tmp_path / "web.yml").write_text(
        f"tls_server_config:\n  cert_file: {tmp_path / 'key.pem'}\n  key_file: {tmp_path / 'cert.pem'}\n"
    )
    with pytest.raises(ConfigError, match="cert_file and key_file are not a certificate and its key"):
        WEB_KIND.load(tmp_path / "web.yml")
    # The right way round loads.
    (tmp_path / "web.yml").write_text(
        f"tls_server_config:\n  cert_file: {tmp_path / 'cert.pem'}\n  key_file: {tmp_path / 'key.pem'}\n"
    )
    assert WEB_KIND.load(tmp_path / "web.yml").ssl_context() is not None


SECRET = 'Pä"ss\\wörd\x01→'


@pytest.mark.parametrize("fmt", ["logfmt", "json"])
def test_secrets_are_scrubbed_in_every_encoding_a_line_can_hold(
    fmt: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOSTILE_SECRET", SECRET)
    resolve_secret({"env": "HOSTILE_SECRET"}, "auths.x.password")
    setup_logging("info", fmt)
    logger = logging.getLogger("powerplane.test")
    try:
        logger.warning("as is %s", SECRET)
        logger.warning("repr %r", SECRET)
        logger.warning("ascii %a", SECRET)
        logger.warning("json %s", json.dumps(SECRET))
        logger.warning("url http://u:%s@h/", "P%C3%A4%22ss%5Cw%C3%B6rd%01%E2%86%92")
        logger.warning("fields", extra={"fields": {"err": SECRET, "detail": {"password": SECRET}}})
    finally:
        logging.getLogger().handlers.clear()
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert len(lines) == 6
    for line in lines:
        assert "<redacted>" in line, line
        # No fragment of the secret long enough to recognise survives, in any escaping.
        for fragment in ("ss\\\\w", "wörd", "w\\u00f6rd", "w\\xf6rd", "w%C3%B6rd"):
            assert fragment not in line, line

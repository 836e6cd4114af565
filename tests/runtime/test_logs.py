"""Log lines: logfmt and JSON, secrets scrubbed from both."""

from __future__ import annotations

import logging

import pytest

from powerplane.exporters.runtime import resolve_secret
from powerplane.exporters.runtime.logs import setup_logging


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

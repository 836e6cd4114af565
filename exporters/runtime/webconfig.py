"""TLS and basic auth for an exporter's own endpoint, from a web-config file.

The file uses the Prometheus exporter-toolkit format, so one file can serve powerplane and the
Prometheus exporters beside it::

    tls_server_config:
      cert_file: /etc/powerplane/tls.crt
      key_file: /etc/powerplane/tls.key
      client_auth_type: RequireAndVerifyClientCert   # optional
      client_ca_file: /etc/powerplane/ca.crt
      min_version: TLS12
    http_server_config:
      headers: {Strict-Transport-Security: max-age=31536000}
    basic_auth_users:
      prometheus: $2y$10$...   # bcrypt hash, e.g. from `htpasswd -nBC 10 "" | tr -d ':\\n'`

Password checks are bcrypt, cached per (user, password digest) after the first success so a
scrape every few seconds does not pay the bcrypt cost each time.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bcrypt
from aiohttp import web

from .config import ConfigError, ConfigKind, strict_object

_CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "RequestClientCert": ssl.CERT_OPTIONAL,
    "RequireAnyClientCert": ssl.CERT_REQUIRED,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
_TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}

SCHEMA: dict[str, Any] = strict_object(
    {
        "tls_server_config": strict_object(
            {
                "cert_file": {"type": "string"},
                "key_file": {"type": "string"},
                "client_auth_type": {"enum": list(_CLIENT_AUTH)},
                "client_ca_file": {"type": "string"},
                "min_version": {"enum": list(_TLS_VERSIONS)},
                "max_version": {"enum": list(_TLS_VERSIONS)},
            },
            required=("cert_file", "key_file"),
        ),
        "http_server_config": strict_object(
            {"headers": {"type": "object", "additionalProperties": {"type": "string"}}}
        ),
        "basic_auth_users": {
            "type": "object",
            "additionalProperties": {
                "type": "string",
                "writeOnly": True,
                "description": "bcrypt hash of the user's password",
                "pattern": r"^\$2[abxy]?\$\d\d\$.{53}$",
            },
        },
    }
)


@dataclass(frozen=True)
class WebConfig:
    cert_file: Path | None = None
    key_file: Path | None = None
    client_auth_type: str = "NoClientCert"
    client_ca_file: Path | None = None
    min_version: str = "TLS12"
    max_version: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    basic_auth_users: tuple[tuple[str, bytes], ...] = ()

    def ssl_context(self) -> ssl.SSLContext | None:
        if self.cert_file is None or self.key_file is None:
            return None
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = _TLS_VERSIONS[self.min_version]
        if self.max_version:
            ctx.maximum_version = _TLS_VERSIONS[self.max_version]
        ctx.load_cert_chain(self.cert_file, self.key_file)
        ctx.verify_mode = _CLIENT_AUTH[self.client_auth_type]
        if self.client_ca_file:
            ctx.load_verify_locations(cafile=str(self.client_ca_file))
        return ctx


def _build(doc: Mapping[str, Any]) -> WebConfig:
    tls = doc.get("tls_server_config") or {}
    errors = []
    for key in ("cert_file", "key_file", "client_ca_file"):
        if key in tls and not Path(tls[key]).is_file():
            errors.append(f"tls_server_config.{key}: file {tls[key]} does not exist")
    if tls.get("client_auth_type", "NoClientCert") in (
        "VerifyClientCertIfGiven",
        "RequireAndVerifyClientCert",
    ) and ("client_ca_file" not in tls):
        errors.append("tls_server_config.client_ca_file: required to verify client certificates")
    users = doc.get("basic_auth_users") or {}
    if errors:
        raise ConfigError(errors)
    config = WebConfig(
        cert_file=Path(tls["cert_file"]) if tls else None,
        key_file=Path(tls["key_file"]) if tls else None,
        client_auth_type=tls.get("client_auth_type", "NoClientCert"),
        client_ca_file=Path(tls["client_ca_file"]) if "client_ca_file" in tls else None,
        min_version=tls.get("min_version", "TLS12"),
        max_version=tls.get("max_version"),
        headers=tuple(sorted(((doc.get("http_server_config") or {}).get("headers") or {}).items())),
        basic_auth_users=tuple(sorted((u, h.encode()) for u, h in users.items())),
    )
    # Load the certificate now: swapped or unreadable files are a config error, not a traceback
    # when the server starts.
    try:
        config.ssl_context()
    except (ssl.SSLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(
            [f"tls_server_config: cert_file and key_file are not a certificate and its key ({reason})"]
        ) from None
    return config


KIND: ConfigKind[WebConfig] = ConfigKind("web", SCHEMA, _build)

BCRYPT_MAX_BYTES = 72

# A hash to check unknown users against, so their answer takes as long as a wrong password.
_DUMMY_HASH = bcrypt.hashpw(b"powerplane", bcrypt.gensalt(rounds=10))

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class BasicAuth:
    """aiohttp middleware enforcing the web config's basic auth users."""

    def __init__(self, users: Mapping[str, bytes]) -> None:
        self._users = dict(users)
        self._good: set[tuple[str, bytes]] = set()

    def _check(self, user: str, password: str) -> bool:
        # bcrypt reads at most 72 bytes (and the library refuses more): a longer password cannot
        # match any hash honestly, so it is a wrong password, not a server error.
        if len(password.encode()) > BCRYPT_MAX_BYTES:
            return False
        digest = hashlib.sha256(password.encode()).digest()
        if (user, digest) in self._good:
            return True
        hashed = self._users.get(user)
        ok = bcrypt.checkpw(password.encode(), hashed or _DUMMY_HASH) and hashed is not None
        if ok:
            self._good.add((user, digest))
        return ok

    async def _authorised(self, header: str | None) -> bool:
        if not header or not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        digest = hashlib.sha256(password.encode()).digest()
        if any(hmac.compare_digest(u, user) and d == digest for u, d in self._good):
            return True
        return await asyncio.get_running_loop().run_in_executor(None, self._check, user, password)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not await self._authorised(request.headers.get("Authorization")):
            raise web.HTTPUnauthorized(headers={"WWW-Authenticate": 'Basic realm="powerplane"'})
        return await handler(request)


def headers_middleware(headers: tuple[tuple[str, str], ...]) -> Callable[..., Any]:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        for name, value in headers:
            response.headers[name] = value
        return response

    return middleware

"""slurm.yml: where the scheduler's state comes from, what is exposed, and privacy.

Every option is a ``setting`` of the frozen dataclasses below (docs/ARCHITECTURE.md, "Defaults
said once"): the schema, its defaults, the table in docs/slurm.md and the builder read them from
here.

```yaml
source: slurmrestd               # slurmrestd (preferred) | cli
slurmrestd:
  url: http://slurmctl-01:6820   # or unix:/run/slurmrestd/slurmrestd.socket (local auth, no token)
  user: powerplane               # X-SLURM-USER-NAME
  token: {file: /run/powerplane/slurm.jwt}   # or {env: SLURM_JWT}; re-read when the file changes
  tls: {ca_file: /etc/ssl/slurm-ca.pem}      # or {insecure_skip_verify: true}
  full_refresh: 300              # seconds between unconditional reads (update_time in between)
min_interval: 15                 # a snapshot younger than this is served again, never re-fetched
jobs: {mapping: true, max_mapped: 20000, names: false}
privacy: {users: hash, accounts: keep, salt: {file: /etc/powerplane/slurm-salt}}
```
"""

from __future__ import annotations

import hashlib
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from powerplane.exporters.runtime.config import from_document, setting, settings_schema

from ..runtime.config import SECRET_SCHEMA, ConfigError, ConfigKind, Secret, resolve_secret
from ..runtime.logs import register_secret

COLLECTORS = ("scheduler", "partitions", "nodes", "jobs", "reservations")
API_VERSIONS = ("v0.0.44", "v0.0.43", "v0.0.42", "v0.0.41", "v0.0.40", "v0.0.39", "v0.0.38")
PRIVACY_MODES = ("keep", "hash", "drop")

_COUNT = {"minimum": 0, "maximum": 1_000_000}
_PATH = {"type": "string", "minLength": 1}


class Token:
    """A JWT from the environment or a file; a file is re-read when it changes (tokens expire).

    Held by the source, not the config: the config keeps only the ``Secret`` it started with.
    """

    def __init__(self, secret: Secret, path: Path | None = None) -> None:
        self._value = _strip(secret.reveal())
        self._path = path
        self._mtime = _mtime(path)
        register_secret(self._value)

    def value(self) -> str:
        if self._path is not None:
            mtime = _mtime(self._path)
            if mtime != self._mtime:
                try:
                    text = _strip(self._path.read_text(encoding="utf-8")[:16384])
                except OSError:
                    return self._value  # keep the last token; the server will say if it expired
                register_secret(text)
                self._value, self._mtime = text, mtime
        return self._value


def _strip(text: str) -> str:
    # `scontrol token` prints SLURM_JWT=...; accept a file holding that line as it is.
    return text.strip().removeprefix("SLURM_JWT=")


def _mtime(path: Path | None) -> int:
    try:
        return path.stat().st_mtime_ns if path else 0
    except OSError:
        return 0


def _token(spec: Mapping[str, str] | None, where: str) -> tuple[Secret | None, Path | None]:
    if not spec:
        return None, None
    return resolve_secret(spec, where), Path(spec["file"]) if "file" in spec else None


@dataclass(frozen=True)
class Tls:
    insecure_skip_verify: bool = setting(False, doc="Skip certificate checks (excludes `ca_file`).")
    ca_file: Path | None = setting(
        None, schema=_PATH, doc="The CA bundle that signed slurmrestd's certificate."
    )


@dataclass(frozen=True)
class RestConfig:
    url: str = setting(
        schema={"type": "string", "pattern": r"^(https?://[^\s/]+/?|unix:/\S+)$"},
        doc="slurmrestd: `http(s)://host:port` (a JWT needed) or `unix:/path` (local auth, no token).",
    )
    user: str = setting(
        "", schema={"pattern": r"^[A-Za-z0-9._-]{1,64}$"}, doc="The token's user (`X-SLURM-USER-NAME`)."
    )
    token: Secret | None = setting(
        None,
        schema=SECRET_SCHEMA,
        doc="a secret (`{env: NAME}` or `{file: PATH}`, re-read when it changes): the JWT.",
    )
    api_version: str = setting(
        "auto", schema={"enum": ["auto", *API_VERSIONS]}, doc="`auto`: the newest both sides know."
    )
    tls: Tls = setting(Tls(), of=Tls, doc="TLS for an `https` url.")
    full_refresh: float = setting(
        300.0,
        schema={"minimum": 0, "maximum": 86400},
        doc="Seconds between unconditional reads; in between, nodes, jobs, partitions and "
        "reservations are asked for only if they changed (`update_time`); 0: always in full.",
    )
    #: The token's file, re-read when it changes (derived from ``token``).
    token_path: Path | None = None

    @property
    def unix_socket(self) -> str | None:
        return self.url.removeprefix("unix:") if self.url.startswith("unix:") else None

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.url.startswith("https:"):
            return None
        if self.tls.insecure_skip_verify:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            return ctx
        ca_file = self.tls.ca_file
        return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)


@dataclass(frozen=True)
class CliConfig:
    bin_dir: Path | None = setting(
        None, schema=_PATH, doc="Where squeue, sinfo, scontrol and sdiag are (PATH)."
    )
    slurm_conf: Path | None = setting(None, schema=_PATH, doc="`SLURM_CONF` for the commands.")
    token: Secret | None = setting(
        None,
        schema=SECRET_SCHEMA,
        doc="a secret, only where the cluster has `auth/jwt`: `SLURM_JWT` for the commands (not inherited).",
    )
    token_path: Path | None = None

    def command(self, name: str) -> str:
        return str(self.bin_dir / name) if self.bin_dir else name

    def env(self, token: Token | None) -> dict[str, str]:
        """The commands' environment: SLURM_JWT only when a token is configured (JWT clusters)."""
        env = {k: v for k, v in os.environ.items() if k != "SLURM_JWT"}
        if self.slurm_conf:
            env["SLURM_CONF"] = str(self.slurm_conf)
        if token is not None:
            env["SLURM_JWT"] = token.value()
        return env


@dataclass(frozen=True)
class JobsConfig:
    mapping: bool = setting(True, doc="`job_info`, `job_allocation`, `job_gpu_info` for running jobs.")
    max_mapped: int = setting(
        20_000,
        schema=_COUNT,
        doc="Running jobs mapped per scrape (the longest running); the rest are counted.",
    )
    names: bool = setting(
        False, doc="Job names (`powerplane_slurm_job_name_info`; privacy: off unless enabled)."
    )
    by_account: int = setting(
        0, schema=_COUNT, doc="Per-account job counts for at most this many accounts (0: off)."
    )
    by_user: int = setting(0, schema=_COUNT, doc="Per-user job counts for at most this many users (0: off).")


@dataclass(frozen=True)
class Privacy:
    users: str = setting("keep", schema={"enum": list(PRIVACY_MODES)}, doc="User names: keep, hash or drop.")
    accounts: str = setting(
        "keep", schema={"enum": list(PRIVACY_MODES)}, doc="Account names: keep, hash or drop."
    )
    salt: Secret | None = setting(None, schema=SECRET_SCHEMA, doc="a secret mixed into the hashes.")

    def user(self, name: str) -> str | None:
        return self._apply(self.users, name)

    def account(self, name: str) -> str | None:
        return self._apply(self.accounts, name)

    def _apply(self, mode: str, name: str) -> str | None:
        if mode == "drop":
            return None
        if mode == "hash" and name:
            salt = self.salt.reveal() if self.salt else ""
            return hashlib.sha256((salt + "\0" + name).encode()).hexdigest()[:12]
        return name


@dataclass(frozen=True)
class Limits:
    max_response_bytes: int = setting(1 << 30, schema={"minimum": 1024}, doc="Bytes of one answer.")
    max_records: int = setting(500_000, schema={"minimum": 1}, doc="Records per endpoint; more are counted.")
    max_rpc_types: int = setting(
        25, schema={"minimum": 0, "maximum": 500}, doc="RPC types by count; the rest are summed as `other`."
    )
    reason_length: int = setting(
        120, schema={"minimum": 8, "maximum": 1024}, doc="Characters of a drain or down reason."
    )


@dataclass(frozen=True)
class SlurmConfig:
    source: str = setting(schema={"enum": ["slurmrestd", "cli"]}, doc="`slurmrestd` (preferred) or `cli`.")
    slurmrestd: RestConfig | None = setting(None, of=RestConfig, doc="The REST API (source slurmrestd).")
    cli: CliConfig = setting(CliConfig(), of=CliConfig, doc="The Slurm commands (source cli).")
    timeout: float = setting(
        20.0, schema={"minimum": 0.1, "maximum": 600}, doc="Seconds per request; the scrape deadline caps it."
    )
    min_interval: float = setting(
        15.0,
        schema={"minimum": 0, "maximum": 3600},
        doc="A snapshot younger than this is served again, never re-read (however many scrapers).",
    )
    collectors: tuple[str, ...] = setting(
        COLLECTORS,
        schema={"type": "array", "items": {"enum": list(COLLECTORS)}, "uniqueItems": True},
        doc="The collectors to run.",
    )
    jobs: JobsConfig = setting(JobsConfig(), of=JobsConfig, doc="The job mapping and breakdowns.")
    privacy: Privacy = setting(Privacy(), of=Privacy, doc="User and account names in labels.")
    limits: Limits = setting(Limits(), of=Limits, doc="Bounds on what is read and exposed.")


SCHEMA: dict[str, Any] = settings_schema(SlurmConfig)


def build(doc: Mapping[str, Any]) -> SlurmConfig:
    errors: list[str] = []
    rest = None
    spec = doc.get("slurmrestd")
    if doc["source"] == "slurmrestd" and not spec:
        errors.append("slurmrestd: required when source is slurmrestd")
    try:
        if spec:
            tls = spec.get("tls", {})
            if tls.get("insecure_skip_verify") and tls.get("ca_file"):
                errors.append("slurmrestd.tls: insecure_skip_verify and ca_file exclude each other")
            if spec["url"].startswith("unix:") and spec.get("token"):
                errors.append("slurmrestd.token: a unix socket uses local authentication, not a token")
            if spec["url"].startswith("http") and not spec.get("token"):
                errors.append("slurmrestd.token: required for an http(s) url (slurmrestd's rest_auth/jwt)")
            token, token_path = _token(spec.get("token"), "slurmrestd.token")
            rest = from_document(
                RestConfig,
                spec,
                url=spec["url"].rstrip("/"),
                token=token,
                token_path=token_path,
                tls=from_document(Tls, tls, ca_file=_path(tls.get("ca_file"))),
            )
        cli_spec = doc.get("cli", {})
        cli_token, cli_token_path = _token(cli_spec.get("token"), "cli.token")
        cli = from_document(
            CliConfig,
            cli_spec,
            bin_dir=_path(cli_spec.get("bin_dir")),
            slurm_conf=_path(cli_spec.get("slurm_conf")),
            token=cli_token,
            token_path=cli_token_path,
        )
        privacy_spec = doc.get("privacy", {})
        salt = resolve_secret(privacy_spec["salt"], "privacy.salt") if "salt" in privacy_spec else None
    except ConfigError as exc:
        raise ConfigError(errors + exc.errors) from None
    if errors:
        raise ConfigError(errors)
    return from_document(
        SlurmConfig,
        doc,
        slurmrestd=rest,
        cli=cli,
        privacy=from_document(Privacy, privacy_spec, salt=salt),
    )


def _path(value: str | None) -> Path | None:
    return Path(value) if value else None


KIND: ConfigKind[SlurmConfig] = ConfigKind("slurm", SCHEMA, build)

"""slurm.yml: where the scheduler's state comes from, what is exposed, and privacy.

```yaml
source: slurmrestd               # slurmrestd (preferred) | cli
slurmrestd:
  url: http://slurmctl-01:6820   # or unix:/run/slurmrestd/slurmrestd.socket (local auth, no token)
  user: powerplane               # X-SLURM-USER-NAME
  token: {file: /run/powerplane/slurm.jwt}   # or {env: SLURM_JWT}; re-read when the file changes
  api_version: auto              # auto: the newest the server and the exporter both know
  tls: {ca_file: /etc/ssl/slurm-ca.pem}      # or {insecure_skip_verify: true}
cli:
  bin_dir: /usr/bin              # where squeue, sinfo, scontrol and sdiag are
  slurm_conf: /etc/slurm/slurm.conf
  token: {env: SLURM_JWT}        # only where the cluster has auth/jwt: set as SLURM_JWT for the commands
timeout: 20                      # seconds per request; the scrape deadline caps it
min_interval: 15                 # a snapshot younger than this is served again, never re-fetched
collectors: [scheduler, partitions, nodes, jobs, reservations]
jobs:
  mapping: true                  # job_info, job_allocation, job_gpu_info for running jobs
  max_mapped: 20000              # running jobs mapped per scrape; the rest are counted as dropped
  names: false                   # job names (privacy: off unless enabled)
  by_account: 0                  # per-account job counts, at most this many accounts (0: off)
  by_user: 0                     # per-user job counts, at most this many users (0: off)
privacy:
  users: keep                    # keep | hash | drop
  accounts: keep
  salt: {file: /etc/powerplane/slurm-salt}   # optional, for hash
limits:
  max_response_bytes: 1073741824
  max_records: 500000            # per endpoint; more are counted as dropped
  max_rpc_types: 25
  reason_length: 120
```
"""

from __future__ import annotations

import hashlib
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..runtime.config import SECRET_SCHEMA, ConfigError, ConfigKind, Secret, resolve_secret, strict_object
from ..runtime.logs import register_secret

COLLECTORS = ("scheduler", "partitions", "nodes", "jobs", "reservations")
API_VERSIONS = ("v0.0.44", "v0.0.43", "v0.0.42", "v0.0.41", "v0.0.40", "v0.0.39", "v0.0.38")
PRIVACY_MODES = ("keep", "hash", "drop")

_COUNT = {"type": "integer", "minimum": 0, "maximum": 1_000_000}
SCHEMA: dict[str, Any] = strict_object(
    {
        "source": {"enum": ["slurmrestd", "cli"]},
        "slurmrestd": strict_object(
            {
                "url": {"type": "string", "pattern": r"^(https?://[^\s/]+/?|unix:/\S+)$"},
                "user": {"type": "string", "pattern": r"^[A-Za-z0-9._-]{1,64}$"},
                "token": SECRET_SCHEMA,
                "api_version": {"enum": ["auto", *API_VERSIONS]},
                "tls": strict_object(
                    {
                        "insecure_skip_verify": {"type": "boolean"},
                        "ca_file": {"type": "string", "minLength": 1},
                    }
                ),
            },
            required=("url",),
        ),
        "cli": strict_object(
            {
                "bin_dir": {"type": "string", "minLength": 1},
                "slurm_conf": {"type": "string", "minLength": 1},
                "token": SECRET_SCHEMA,
            }
        ),
        "timeout": {"type": "number", "minimum": 0.1, "maximum": 600},
        "min_interval": {"type": "number", "minimum": 0, "maximum": 3600},
        "collectors": {"type": "array", "items": {"enum": list(COLLECTORS)}, "uniqueItems": True},
        "jobs": strict_object(
            {
                "mapping": {"type": "boolean"},
                "max_mapped": _COUNT,
                "names": {"type": "boolean"},
                "by_account": _COUNT,
                "by_user": _COUNT,
            }
        ),
        "privacy": strict_object(
            {
                "users": {"enum": list(PRIVACY_MODES)},
                "accounts": {"enum": list(PRIVACY_MODES)},
                "salt": SECRET_SCHEMA,
            }
        ),
        "limits": strict_object(
            {
                "max_response_bytes": {"type": "integer", "minimum": 1024},
                "max_records": {"type": "integer", "minimum": 1},
                "max_rpc_types": {"type": "integer", "minimum": 0, "maximum": 500},
                "reason_length": {"type": "integer", "minimum": 8, "maximum": 1024},
            }
        ),
    },
    required=("source",),
)


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
class RestConfig:
    url: str
    user: str = ""
    token: Secret | None = None
    token_path: Path | None = None
    api_version: str = "auto"
    insecure_skip_verify: bool = False
    ca_file: Path | None = None

    @property
    def unix_socket(self) -> str | None:
        return self.url.removeprefix("unix:") if self.url.startswith("unix:") else None

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.url.startswith("https:"):
            return None
        if self.insecure_skip_verify:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            return ctx
        return ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)


@dataclass(frozen=True)
class CliConfig:
    bin_dir: Path | None = None
    slurm_conf: Path | None = None
    token: Secret | None = None
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
    mapping: bool = True
    max_mapped: int = 20_000
    names: bool = False
    by_account: int = 0
    by_user: int = 0


@dataclass(frozen=True)
class Privacy:
    users: str = "keep"
    accounts: str = "keep"
    salt: Secret | None = None

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
    max_response_bytes: int = 1 << 30
    max_records: int = 500_000
    max_rpc_types: int = 25
    reason_length: int = 120


@dataclass(frozen=True)
class SlurmConfig:
    source: str
    rest: RestConfig | None = None
    cli: CliConfig = field(default_factory=CliConfig)
    timeout: float = 20.0
    min_interval: float = 15.0
    collectors: tuple[str, ...] = COLLECTORS
    jobs: JobsConfig = field(default_factory=JobsConfig)
    privacy: Privacy = field(default_factory=Privacy)
    limits: Limits = field(default_factory=Limits)


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
            rest = RestConfig(
                spec["url"].rstrip("/"),
                spec.get("user", ""),
                *_token(spec.get("token"), "slurmrestd.token"),
                spec.get("api_version", "auto"),
                bool(tls.get("insecure_skip_verify", False)),
                Path(tls["ca_file"]) if tls.get("ca_file") else None,
            )
        cli_spec = doc.get("cli", {})
        cli = CliConfig(
            Path(cli_spec["bin_dir"]) if "bin_dir" in cli_spec else None,
            Path(cli_spec["slurm_conf"]) if "slurm_conf" in cli_spec else None,
            *_token(cli_spec.get("token"), "cli.token"),
        )
        privacy_spec = doc.get("privacy", {})
        salt = resolve_secret(privacy_spec["salt"], "privacy.salt") if "salt" in privacy_spec else None
    except ConfigError as exc:
        raise ConfigError(errors + exc.errors) from None
    if errors:
        raise ConfigError(errors)
    return SlurmConfig(
        source=doc["source"],
        rest=rest,
        cli=cli,
        timeout=float(doc.get("timeout", 20.0)),
        min_interval=float(doc.get("min_interval", 15.0)),
        collectors=tuple(doc.get("collectors", COLLECTORS)),
        jobs=JobsConfig(**doc.get("jobs", {})),
        privacy=Privacy(privacy_spec.get("users", "keep"), privacy_spec.get("accounts", "keep"), salt),
        limits=Limits(**doc.get("limits", {})),
    )


KIND: ConfigKind[SlurmConfig] = ConfigKind("slurm", SCHEMA, build)

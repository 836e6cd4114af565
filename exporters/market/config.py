"""The market exporter's configuration file (``powerplane exporter market --config FILE``).

.. code-block:: yaml

    areas:
      - DE-LU
      - {area: AT, timezone: Europe/Vienna}
    providers:                       # the fallback order
      - {type: entsoe, token: {env: ENTSOE_TOKEN}}
      - {type: energy_charts}
      - {type: static, path: /etc/powerplane/curve.yaml}
    store: {path: /var/lib/powerplane/market}
    refresh: {publication_time: "13:00", interval_seconds: 21600}
    load_forecast: {provider: entsoe}
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..runtime import ConfigError, ConfigKind, Secret, resolve_secret, strict_object
from ..runtime.config import SECRET_SCHEMA
from .curve import area_timezone
from .energycharts import DEFAULT_URL as ENERGY_CHARTS_URL
from .energycharts import EnergyChartsProvider
from .entsoe import AREA_EIC, EntsoeProvider
from .entsoe import DEFAULT_URL as ENTSOE_URL
from .feed import RefreshPolicy
from .files import CsvStore, StaticProvider
from .provider import Provider

_AREA_CODE = {"type": "string", "pattern": "^[A-Z0-9][A-Z0-9-]{0,31}$"}
_NAME = {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,31}$"}
_URL = {"type": "string", "pattern": "^https?://"}
_TIMEOUT = {"type": "number", "minimum": 1, "maximum": 300}
_HHMM = {"type": "string", "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]$"}


def _provider_schema(kind: str, properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return strict_object({"type": {"const": kind}, "name": _NAME, **properties}, required=("type", *required))


SCHEMA: dict[str, Any] = strict_object(
    {
        "areas": {
            "type": "array",
            "minItems": 1,
            "items": {
                "oneOf": [
                    _AREA_CODE,
                    strict_object(
                        {
                            "area": _AREA_CODE,
                            "timezone": {"type": "string", "minLength": 1},
                            "entsoe_eic": {"type": "string", "pattern": "^[0-9A-Z-]{16}$"},
                            "energy_charts_bzn": {"type": "string", "minLength": 1, "maxLength": 32},
                        },
                        required=("area",),
                    ),
                ]
            },
        },
        "providers": {
            "type": "array",
            "minItems": 1,
            "items": {
                "oneOf": [
                    _provider_schema(
                        "entsoe",
                        {
                            "token": SECRET_SCHEMA,
                            "url": _URL,
                            "timeout_seconds": _TIMEOUT,
                            "classification_sequence": {"type": "integer", "minimum": 1, "maximum": 9},
                        },
                        ("token",),
                    ),
                    _provider_schema("energy_charts", {"url": _URL, "timeout_seconds": _TIMEOUT}),
                    _provider_schema(
                        "static",
                        {
                            "path": {"type": "string", "minLength": 1},
                            "resolution_minutes": {"enum": [15, 30, 60]},
                        },
                        ("path",),
                    ),
                    _provider_schema("csv_store", {"path": {"type": "string", "minLength": 1}}, ("path",)),
                ]
            },
        },
        "store": strict_object({"path": {"type": "string", "minLength": 1}}, required=("path",)),
        "refresh": strict_object(
            {
                "publication_time": _HHMM,
                "publication_timezone": {"type": "string", "minLength": 1},
                "interval_seconds": {"type": "number", "minimum": 600, "maximum": 86400},
                "pending_interval_seconds": {"type": "number", "minimum": 60, "maximum": 21600},
                "retry_min_seconds": {"type": "number", "minimum": 5, "maximum": 3600},
                "retry_max_seconds": {"type": "number", "minimum": 60, "maximum": 86400},
            }
        ),
        "load_forecast": strict_object({"provider": _NAME}, required=("provider",)),
    },
    required=("areas", "providers"),
)


@dataclass(frozen=True)
class AreaConfig:
    area: str
    timezone: str
    entsoe_eic: str | None = None
    energy_charts_bzn: str | None = None

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@dataclass(frozen=True)
class ProviderConfig:
    type: str
    name: str
    url: str | None = None
    timeout_seconds: float = 30.0
    token: Secret | None = None
    classification_sequence: int = 1
    path: Path | None = None
    resolution_minutes: int = 15


@dataclass(frozen=True)
class MarketConfig:
    areas: tuple[AreaConfig, ...]
    providers: tuple[ProviderConfig, ...]
    store: Path | None
    refresh: RefreshPolicy
    load_forecast: str | None = None

    def build_providers(self) -> list[Provider]:
        """The configured providers, in fallback order."""
        timezones = {a.area: a.zone for a in self.areas}
        eic = {a.area: a.entsoe_eic for a in self.areas if a.entsoe_eic}
        bzn = {a.area: a.energy_charts_bzn for a in self.areas if a.energy_charts_bzn}
        built: list[Provider] = []
        for p in self.providers:
            if p.type == "entsoe" and p.token is not None:
                built.append(
                    EntsoeProvider(
                        p.name,
                        p.token,
                        p.url or ENTSOE_URL,
                        p.timeout_seconds,
                        p.classification_sequence,
                        eic,
                    )
                )
            elif p.type == "energy_charts":
                built.append(
                    EnergyChartsProvider(
                        p.name, p.url or ENERGY_CHARTS_URL, p.timeout_seconds, bzn, timezones
                    )
                )
            elif p.type == "static" and p.path is not None:
                step = timedelta(minutes=p.resolution_minutes)
                built.append(StaticProvider(p.name, p.path, step, timezones))
            elif p.type == "csv_store" and p.path is not None:
                built.append(CsvStore(p.name, p.path, timezones))
            else:  # pragma: no cover - the schema requires these fields
                raise ConfigError([f"providers: {p.name}: incomplete {p.type} provider"])
        return built

    def build_store(self) -> CsvStore | None:
        if self.store is None:
            return None
        return CsvStore("store", self.store, {a.area: a.zone for a in self.areas})


def _zone(name: str, where: str, errors: list[str]) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        errors.append(f"{where}: unknown time zone {name!r}")
        return ZoneInfo("UTC")


def build(doc: dict[str, Any]) -> MarketConfig:
    errors: list[str] = []
    areas = []
    for i, item in enumerate(doc["areas"]):
        item = {"area": item} if isinstance(item, str) else item
        code = item["area"]
        tz = item.get("timezone") or str(area_timezone(code))
        _zone(tz, f"areas.{i}.timezone", errors)
        areas.append(AreaConfig(code, tz, item.get("entsoe_eic"), item.get("energy_charts_bzn")))
    codes = [a.area for a in areas]
    for code in sorted({c for c in codes if codes.count(c) > 1}):
        errors.append(f"areas: {code} is listed twice")

    providers = []
    names: set[str] = set()
    for i, item in enumerate(doc["providers"]):
        kind = item["type"]
        name = item.get("name", kind)
        if name in names:
            errors.append(f"providers.{i}.name: {name!r} is used twice (give each provider a unique name)")
        names.add(name)
        token = None
        if "token" in item:
            try:
                token = resolve_secret(item["token"], f"providers.{i}.token")
            except ConfigError as exc:
                errors.extend(exc.errors)
        if kind == "entsoe":
            unknown = [a.area for a in areas if a.area not in AREA_EIC and not a.entsoe_eic]
            for code in unknown:
                errors.append(f"areas: {code} has no known ENTSO-E EIC code; set entsoe_eic")
        providers.append(
            ProviderConfig(
                type=kind,
                name=name,
                url=item.get("url"),
                timeout_seconds=float(item.get("timeout_seconds", 30.0)),
                token=token,
                classification_sequence=int(item.get("classification_sequence", 1)),
                path=Path(item["path"]) if "path" in item else None,
                resolution_minutes=int(item.get("resolution_minutes", 15)),
            )
        )

    refresh = doc.get("refresh", {})
    publication_tz = refresh.get("publication_timezone", "Europe/Berlin")
    _zone(publication_tz, "refresh.publication_timezone", errors)
    policy = RefreshPolicy(
        publication=refresh.get("publication_time", "13:00"),
        publication_timezone=publication_tz,
        interval=float(refresh.get("interval_seconds", 6 * 3600)),
        pending_interval=float(refresh.get("pending_interval_seconds", 900)),
        retry_min=float(refresh.get("retry_min_seconds", 60)),
        retry_max=float(refresh.get("retry_max_seconds", 3600)),
    )
    if policy.retry_max < policy.retry_min:
        errors.append("refresh.retry_max_seconds: must not be less than retry_min_seconds")

    load = doc.get("load_forecast", {}).get("provider")
    if load is not None:
        match = [p for p in providers if p.name == load]
        if not match:
            errors.append(f"load_forecast.provider: no provider named {load!r}")
        elif match[0].type != "entsoe":
            errors.append(f"load_forecast.provider: {load!r} is not an entsoe provider")
    if errors:
        raise ConfigError(errors)
    store = Path(doc["store"]["path"]) if "store" in doc else None
    return MarketConfig(tuple(areas), tuple(providers), store, policy, load)


KIND: ConfigKind[MarketConfig] = ConfigKind("market", SCHEMA, build)

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
    carbon:                          # grid carbon intensity, its own fallback order
      providers:
        - {type: entsoe, token: {env: ENTSOE_TOKEN}}          # actual generation (A75)
        - {type: electricity_maps, token: {env: ELECTRICITY_MAPS_TOKEN}}
        - {type: static, path: /etc/powerplane/carbon.yaml}
      emission_factors: {B02: 1100}  # gCO2eq/kWh per production type, over the shipped ones
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..runtime import ConfigError, ConfigKind, Secret, resolve_secret, strict_object
from ..runtime.config import SECRET_SCHEMA
from .carbon import DEFAULT_MIN_COVERAGE, factor_table
from .curve import area_timezone
from .electricitymaps import DEFAULT_URL as ELECTRICITY_MAPS_URL
from .electricitymaps import ElectricityMapsProvider
from .energycharts import DEFAULT_URL as ENERGY_CHARTS_URL
from .energycharts import EnergyChartsProvider
from .entsoe import AREA_EIC, EntsoeCarbonProvider, EntsoeProvider
from .entsoe import DEFAULT_URL as ENTSOE_URL
from .feed import CarbonPolicy, RefreshPolicy
from .files import CARBON_KEYS, CsvStore, StaticProvider
from .provider import Provider

_AREA_CODE = {"type": "string", "pattern": "^[A-Z0-9][A-Z0-9-]{0,31}$"}
_NAME = {"type": "string", "pattern": "^[a-z0-9][a-z0-9_-]{0,31}$"}
_URL = {"type": "string", "pattern": "^https?://"}
_TIMEOUT = {"type": "number", "minimum": 1, "maximum": 300}
_HHMM = {"type": "string", "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]$"}


def _provider_schema(kind: str, properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return strict_object({"type": {"const": kind}, "name": _NAME, **properties}, required=("type", *required))


_STATIC = _provider_schema(
    "static",
    {"path": {"type": "string", "minLength": 1}, "resolution_minutes": {"enum": [15, 30, 60]}},
    ("path",),
)
_CARBON_SCHEMA = strict_object(
    {
        "areas": {"type": "array", "minItems": 1, "items": _AREA_CODE},
        "providers": {
            "type": "array",
            "minItems": 1,
            "items": {
                "oneOf": [
                    _provider_schema(
                        "entsoe",
                        {"token": SECRET_SCHEMA, "url": _URL, "timeout_seconds": _TIMEOUT},
                        ("token",),
                    ),
                    _provider_schema(
                        "electricity_maps",
                        {
                            "token": SECRET_SCHEMA,
                            "url": _URL,
                            "timeout_seconds": _TIMEOUT,
                            "forecast": {"type": "boolean"},
                        },
                        ("token",),
                    ),
                    _STATIC,
                ]
            },
        },
        "emission_factors": {
            "type": "object",
            "propertyNames": {"pattern": "^[A-Z][0-9]{2}$"},
            "additionalProperties": {"type": "number", "minimum": 0, "maximum": 5000},
        },
        "min_coverage": {"type": "number", "minimum": 0.5, "maximum": 1},
        "refresh": strict_object(
            {
                "interval_seconds": {"type": "number", "minimum": 60, "maximum": 86400},
                "max_age_seconds": {"type": "number", "minimum": 900, "maximum": 172800},
                "retry_min_seconds": {"type": "number", "minimum": 5, "maximum": 3600},
                "retry_max_seconds": {"type": "number", "minimum": 60, "maximum": 86400},
            }
        ),
    },
    required=("providers",),
)


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
                            "electricity_maps_zone": {"type": "string", "minLength": 1, "maxLength": 32},
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
                    _STATIC,
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
        "carbon": _CARBON_SCHEMA,
    },
    required=("areas", "providers"),
)


@dataclass(frozen=True)
class AreaConfig:
    area: str
    timezone: str
    entsoe_eic: str | None = None
    energy_charts_bzn: str | None = None
    electricity_maps_zone: str | None = None

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
    forecast: bool = False


@dataclass(frozen=True)
class CarbonConfig:
    """The ``carbon:`` section: areas, the provider chain, emission factors, the refresh."""

    areas: tuple[str, ...]
    providers: tuple[ProviderConfig, ...]
    #: psrType → gCO2eq/kWh: the shipped factors with the site's overrides applied.
    factors: dict[str, float] = field(default_factory=factor_table)
    min_coverage: float = DEFAULT_MIN_COVERAGE
    refresh: CarbonPolicy = field(default_factory=CarbonPolicy)


@dataclass(frozen=True)
class MarketConfig:
    areas: tuple[AreaConfig, ...]
    providers: tuple[ProviderConfig, ...]
    store: Path | None
    refresh: RefreshPolicy
    load_forecast: str | None = None
    carbon: CarbonConfig | None = None

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

    def build_carbon_providers(self) -> list[Provider]:
        """The carbon providers, in fallback order (none without a ``carbon:`` section)."""
        if self.carbon is None:
            return []
        timezones = {a.area: a.zone for a in self.areas}
        eic = {a.area: a.entsoe_eic for a in self.areas if a.entsoe_eic}
        zones = {a.area: a.electricity_maps_zone for a in self.areas if a.electricity_maps_zone}
        built: list[Provider] = []
        for p in self.carbon.providers:
            if p.type == "entsoe" and p.token is not None:
                built.append(
                    EntsoeCarbonProvider(
                        p.name,
                        p.token,
                        p.url or ENTSOE_URL,
                        p.timeout_seconds,
                        eic,
                        self.carbon.factors,
                        self.carbon.min_coverage,
                    )
                )
            elif p.type == "electricity_maps" and p.token is not None:
                built.append(
                    ElectricityMapsProvider(
                        p.name, p.token, p.url or ELECTRICITY_MAPS_URL, p.timeout_seconds, zones, p.forecast
                    )
                )
            elif p.type == "static" and p.path is not None:
                step = timedelta(minutes=p.resolution_minutes)
                built.append(StaticProvider(p.name, p.path, step, timezones, CARBON_KEYS))
            else:  # pragma: no cover - the schema requires these fields
                raise ConfigError([f"carbon.providers: {p.name}: incomplete {p.type} provider"])
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


def _non_finite(value: Any, where: str, errors: list[str]) -> None:
    """Report NaN and infinities, which YAML allows (.nan, .inf) and JSON Schema bounds let pass."""
    if isinstance(value, float) and not math.isfinite(value):
        errors.append(f"{where}: {value} is not a finite number")
    elif isinstance(value, dict):
        for key, item in value.items():
            _non_finite(item, f"{where}.{key}" if where else str(key), errors)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _non_finite(item, f"{where}.{i}", errors)


def _build_areas(items: list[Any], errors: list[str]) -> list[AreaConfig]:
    areas = []
    for i, item in enumerate(items):
        item = {"area": item} if isinstance(item, str) else item
        code = item["area"]
        tz = item.get("timezone") or str(area_timezone(code))
        _zone(tz, f"areas.{i}.timezone", errors)
        areas.append(
            AreaConfig(
                code,
                tz,
                item.get("entsoe_eic"),
                item.get("energy_charts_bzn"),
                item.get("electricity_maps_zone"),
            )
        )
    codes = [a.area for a in areas]
    for code in sorted({c for c in codes if codes.count(c) > 1}):
        errors.append(f"areas: {code} is listed twice")
    return areas


def _build_providers(
    items: list[Any], where: str, areas: list[AreaConfig], errors: list[str]
) -> list[ProviderConfig]:
    """One provider chain (``providers`` or ``carbon.providers``): names unique, secrets resolved."""
    providers = []
    names: set[str] = set()
    for i, item in enumerate(items):
        kind = item["type"]
        name = item.get("name", kind)
        if name in names:
            errors.append(f"{where}.{i}.name: {name!r} is used twice (give each provider a unique name)")
        names.add(name)
        token = None
        if "token" in item:
            try:
                token = resolve_secret(item["token"], f"{where}.{i}.token")
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
                forecast=bool(item.get("forecast", False)),
            )
        )
    return providers


def _build_refresh(refresh: dict[str, Any], errors: list[str]) -> RefreshPolicy:
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
    return policy


def _build_carbon(doc: dict[str, Any], areas: list[AreaConfig], errors: list[str]) -> CarbonConfig:
    codes = [a.area for a in areas]
    chosen = doc.get("areas", codes)
    for i, code in enumerate(chosen):
        if code not in codes:
            errors.append(f"carbon.areas.{i}: {code} is not one of the configured areas")
    providers = _build_providers(
        doc["providers"], "carbon.providers", [a for a in areas if a.area in chosen], errors
    )
    refresh = doc.get("refresh", {})
    defaults = CarbonPolicy()
    policy = CarbonPolicy(
        interval=float(refresh.get("interval_seconds", defaults.interval)),
        max_age=float(refresh.get("max_age_seconds", defaults.max_age)),
        retry_min=float(refresh.get("retry_min_seconds", defaults.retry_min)),
        retry_max=float(refresh.get("retry_max_seconds", defaults.retry_max)),
    )
    if policy.retry_max < policy.retry_min:
        errors.append("carbon.refresh.retry_max_seconds: must not be less than retry_min_seconds")
    overrides = {code: float(v) for code, v in doc.get("emission_factors", {}).items()}
    return CarbonConfig(
        tuple(chosen),
        tuple(providers),
        factor_table(overrides),
        float(doc.get("min_coverage", DEFAULT_MIN_COVERAGE)),
        policy,
    )


def build(doc: dict[str, Any]) -> MarketConfig:
    errors: list[str] = []
    _non_finite(doc, "", errors)
    areas = _build_areas(doc["areas"], errors)
    providers = _build_providers(doc["providers"], "providers", areas, errors)
    policy = _build_refresh(doc.get("refresh", {}), errors)
    load = doc.get("load_forecast", {}).get("provider")
    if load is not None:
        match = [p for p in providers if p.name == load]
        if not match:
            errors.append(f"load_forecast.provider: no provider named {load!r}")
        elif match[0].type != "entsoe":
            errors.append(f"load_forecast.provider: {load!r} is not an entsoe provider")
    carbon = _build_carbon(doc["carbon"], areas, errors) if "carbon" in doc else None
    if errors:
        raise ConfigError(errors)
    store = Path(doc["store"]["path"]) if "store" in doc else None
    return MarketConfig(tuple(areas), tuple(providers), store, policy, load, carbon)


KIND: ConfigKind[MarketConfig] = ConfigKind("market", SCHEMA, build)

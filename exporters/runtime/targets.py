"""Which targets a ``/probe`` may name, and with which module and auth: one path for every exporter.

A multi-target exporter must never become a way to reach arbitrary hosts, so a probe's
``target=`` passes three steps before anything is contacted:

1. ``parse_address`` reads it as ``host``, ``host:port``, ``[v6]:port`` or, where the protocol
   has schemes, ``scheme://host[:port]``.  Host names are lower-cased and lose one trailing dot;
   addresses take their canonical form (an IPv4-mapped IPv6 address becomes the IPv4 one).
   Anything else is refused with the reason: user info, paths, queries, fragments, backslashes,
   percent-encodings, white space and control characters, numeric host names that resolvers
   would read as addresses (``2130706433``, ``0x7f.1``, ``10.1``), ports out of range.
2. The target is one of the config's ``targets`` (by its key, or by its address and port) or
   matches an ``allow`` rule.  A rule is a CIDR (``10.20.0.0/16``, IP addresses only: no name is
   resolved to decide), an IP-like glob (``10.20.0.*``: IP addresses only, never a name such as
   ``10.20.0.attacker.example``) or a host-name glob (``*.bmc.example``: names only), optionally
   followed by the ports it allows (``:623``, ``:8000-8099``, ``:443,8443``, ``:*``).  A rule
   without ports allows the protocol's port alone (443 for HTTPS, 80 for HTTP, 161 for SNMP), so
   an allowed host's SSH port or the exporter's own port cannot be probed.
3. ``module=`` and ``auth=`` (or the target's and the config's defaults) name configured
   entries; with a single auth, it is the default.

Every refusal is a ``ProbeRequestError`` (HTTP 400) naming the parameter and the reason; the
request's text is quoted shortened and escaped, never echoed raw.

The config keys are the same for every multi-target exporter (``schema_properties``):

```yaml
defaults: {module: default, auth: idrac}      # what a probe without module=/auth= uses
targets:                                      # key: a name, or the address itself
  idrac-r01-n01.mgmt.example: {}
  pdu-a01: {address: "10.1.0.21:161", module: apc_rpdu2, auth: pdus_v3}
allow: [10.20.0.0/16, "10.30.0.*", "*.bmc.example:443,8443"]
state_ttl: 600                                # seconds a target's state outlives its last probe
```
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from .config import strict_object
from .probe import ProbeRequestError
from .state import DEFAULT_STATE_TTL

M = TypeVar("M")
A = TypeVar("A")

#: The longest ``target=`` accepted: a 253-character name, a port and a scheme fit.
MAX_TARGET_LENGTH = 300

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(?:\.{_LABEL})*$")
# A last label that resolvers read as a number makes the whole name an address in disguise.
_NUMERIC_LABEL = re.compile(r"^(?:[0-9]+|0x[0-9a-f]*)$")
_NAME_GLOB = re.compile(r"^[a-z0-9.*?-]+$")
_IP_GLOB = re.compile(r"^[0-9.*?]*[0-9.][0-9.*?]*$")
_PORTS = re.compile(r"^(?:\*|[0-9]{1,5}(?:-[0-9]{1,5})?(?:,[0-9]{1,5}(?:-[0-9]{1,5})?)*)$")
_ENTRY_NAME = re.compile(r"^[A-Za-z0-9_.:\[\]-]{1,253}$")


class TargetError(ValueError):
    """A target, or an allow rule, that cannot be accepted; the message says why."""


def quoted(text: str, limit: int = 80) -> str:
    """``text`` for an error message: shortened, quoted and with every control character escaped."""
    return repr(text[:limit] + ("…" if len(text) > limit else ""))


@dataclass(frozen=True)
class Address:
    """A parsed target: host (canonical), port and scheme, each ``None`` when not written."""

    host: str
    port: int | None = None
    scheme: str | None = None

    @property
    def ip(self) -> IPAddress | None:
        try:
            return ipaddress.ip_address(self.host)
        except ValueError:
            return None

    def netloc(self, port: int | None = None) -> str:
        """``host[:port]`` with an IPv6 host in brackets (``port`` overrides the written one)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = self.port if port is None else port
        return f"{host}:{port}" if port is not None else host


def _port(text: str) -> int:
    if not text.isdigit() or len(text) > 5 or not 0 < int(text) < 65536:
        raise TargetError(f"invalid port {quoted(text, 8)}")
    return int(text)


def _host(text: str) -> str:
    """A canonical host: an IP address in its compressed form, or a lower-case host name."""
    if text.startswith("["):
        if not text.endswith("]"):
            raise TargetError("unbalanced '[' in the host")
        try:
            return _canonical_ip(ipaddress.IPv6Address(text[1:-1]))
        except ValueError:
            raise TargetError("invalid IPv6 address in brackets") from None
    try:
        return _canonical_ip(ipaddress.ip_address(text))
    except ValueError:
        pass
    name = text.lower().removesuffix(".")
    if not _HOSTNAME.match(name):
        raise TargetError("invalid host name")
    if _NUMERIC_LABEL.match(name.rsplit(".", 1)[-1]):
        raise TargetError("not an IP address in dotted form, nor a host name")
    return name


def _canonical_ip(address: IPAddress) -> str:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def parse_address(text: str, schemes: Collection[str] = ()) -> Address:
    """``host``, ``host:port``, ``[v6]:port``, a bare IPv6 address or ``scheme://host[:port]``.

    ``schemes`` are the schemes the protocol accepts (none: any scheme is refused).  Raises
    ``TargetError`` with the reason.
    """
    if not text:
        raise TargetError("empty")
    if len(text) > MAX_TARGET_LENGTH:
        raise TargetError(f"longer than {MAX_TARGET_LENGTH} characters")
    for bad, what in (("\\", "backslashes"), ("%", "percent-encoding"), ("@", "user info (user@)")):
        if bad in text:
            raise TargetError(f"{what} not allowed")
    if not text.isascii() or not text.isprintable() or " " in text:
        raise TargetError("white space, control or non-ASCII characters not allowed")
    for bad, what in (("?", "a query"), ("#", "a fragment")):
        if bad in text:
            raise TargetError(f"{what} not allowed")
    scheme: str | None = None
    rest = text
    if "://" in text:
        scheme, rest = text.split("://", 1)
        scheme = scheme.lower()
        if scheme not in schemes:
            allowed = ", ".join(sorted(schemes)) or "none"
            raise TargetError(f"scheme {quoted(scheme, 16)} not allowed (schemes: {allowed})")
        # The empty path of a URL ("https://host/") is the only path accepted.
        rest = rest.removesuffix("/")
    if "/" in rest:
        raise TargetError("a path is not allowed")
    if rest.startswith("["):
        inner, bracket, after = rest.partition("]")
        if not bracket or (after and not after.startswith(":")):
            raise TargetError("expected [IPv6]:port")
        return Address(_host(inner + "]"), _port(after[1:]) if after else None, scheme)
    if rest.count(":") > 1:  # a bare IPv6 address has no port
        return Address(_host(f"[{rest}]"), None, scheme)
    host, colon, port = rest.partition(":")
    if not host:
        raise TargetError("empty host")
    return Address(_host(host), _port(port) if colon else None, scheme)


# --- allow rules -------------------------------------------------------------------------------


def _split_rule(text: str) -> tuple[str, str | None]:
    """(pattern, ports) of ``PATTERN[:PORTS]``; an IPv6 pattern with ports is in brackets."""
    if text.startswith("["):
        inner, bracket, after = text[1:].partition("]")
        if not bracket or (after and not after.startswith(":")):
            raise TargetError("expected [IPv6 pattern]:ports")
        return inner, after[1:] if after else None
    if text.count(":") == 1:
        pattern, _, ports = text.partition(":")
        return pattern, ports
    return text, None


def _parse_ports(text: str) -> tuple[tuple[int, int], ...]:
    if not _PORTS.match(text):
        raise TargetError(f"invalid ports {quoted(text, 32)} (a port, a range N-M, a list, or *)")
    if text == "*":
        return ((1, 65535),)
    ranges = []
    for part in text.split(","):
        low, _, high = part.partition("-")
        first, last = _port(low), _port(high or low)
        if first > last:
            raise TargetError(f"empty port range {part}")
        ranges.append((first, last))
    return tuple(ranges)


@dataclass(frozen=True)
class AllowRule:
    """One ``allow`` entry: a CIDR, an IP-like glob or a host-name glob, and the ports it allows."""

    pattern: str
    # Leading underscores: check-config shows the pattern as written, not the parsed parts.
    _network: IPNetwork | None = field(default=None, compare=False)
    _glob: str | None = field(default=None, compare=False)
    _ip_glob: bool = field(default=False, compare=False)
    #: None: the protocol's port only.
    _ports: tuple[tuple[int, int], ...] | None = field(default=None, compare=False)

    @classmethod
    def parse(cls, text: str) -> AllowRule:
        pattern, ports = _split_rule(text.strip())
        port_ranges = _parse_ports(ports) if ports is not None else None
        pattern = pattern.lower().removesuffix(".")
        if "/" in pattern or _is_ip(pattern):
            try:
                network = ipaddress.ip_network(pattern, strict=False)
            except ValueError as exc:
                raise TargetError(str(exc)) from None
            return cls(text, _network=network, _ports=port_ranges)
        if _IP_GLOB.match(pattern):
            return cls(text, _glob=pattern, _ip_glob=True, _ports=port_ranges)
        if not _NAME_GLOB.match(pattern):
            raise TargetError(
                f"{quoted(pattern, 64)} is neither a CIDR nor a glob of host names or IPv4 addresses"
            )
        return cls(text, _glob=pattern, _ports=port_ranges)

    def matches(self, host: str, ip: IPAddress | None, port: int, default_port: int) -> bool:
        if self._ports is None:
            if port != default_port:
                return False
        elif not any(low <= port <= high for low, high in self._ports):
            return False
        if self._network is not None:
            return ip is not None and ip.version == self._network.version and ip in self._network
        assert self._glob is not None
        if self._ip_glob != (ip is not None):  # IP-like globs match addresses, others names
            return False
        return fnmatch.fnmatchcase(host, self._glob)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


# --- configured targets and the lookup ---------------------------------------------------------


@dataclass(frozen=True)
class Protocol:
    """What a multi-target exporter speaks: its schemes, their default ports, its default scheme."""

    #: scheme → default port; a protocol without schemes has the one key "".
    ports: Mapping[str, int]
    default_scheme: str = ""

    @property
    def schemes(self) -> tuple[str, ...]:
        return tuple(s for s in self.ports if s)


@dataclass(frozen=True)
class TargetDefaults:
    """``defaults`` and each entry of ``targets``: what a probe that names none uses."""

    module: str | None = None
    auth: str | None = None
    scheme: str | None = None


@dataclass(frozen=True)
class TargetEntry:
    """A configured target: its key, its address and its own defaults."""

    name: str
    address: Address
    defaults: TargetDefaults = TargetDefaults()


@dataclass(frozen=True)
class Resolved(Generic[M, A]):
    """What a probe request resolved to: everything the exporter needs to connect."""

    #: How logs and keys name the target: the entry's key, else the address as normalised.
    name: str
    host: str
    port: int
    scheme: str
    module_name: str | None
    module: M | None
    auth: A
    auth_name: str

    @property
    def device(self) -> str:
        """The physical device, ``host:port`` (the per-device concurrency key)."""
        return Address(self.host).netloc(self.port)

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.device}"


@dataclass(frozen=True)
class TargetPolicy(Generic[M, A]):
    """The targets, allow rules, modules and auths of a multi-target exporter, and the lookup."""

    protocol: Protocol
    modules: Mapping[str, M]
    auths: Mapping[str, A]
    targets: Mapping[str, TargetEntry] = field(default_factory=dict)
    allow: tuple[AllowRule, ...] = ()
    defaults: TargetDefaults = TargetDefaults()
    #: The module used when neither the probe, the target nor ``defaults`` names one (None: the
    #: exporter chooses, e.g. SNMP detects it from sysObjectID).
    fallback_module: str | None = None
    state_ttl: float = DEFAULT_STATE_TTL
    #: The configured targets by (host, port), built once by ``build_policy``.
    _addresses: Mapping[tuple[str, int], TargetEntry] = field(default_factory=dict, repr=False, compare=False)

    def scheme_of(self, entry: TargetEntry | None) -> str:
        written = entry.address.scheme or entry.defaults.scheme if entry else None
        return written or self.defaults.scheme or self.protocol.default_scheme

    def port_of(self, address: Address, scheme: str) -> int:
        return address.port if address.port is not None else self.protocol.ports[scheme]

    def _by_address(self, address: Address) -> TargetEntry | None:
        """The configured target at this host and port (no port: at its scheme's default port)."""
        if address.port is not None:
            return self._addresses.get((address.host, address.port))
        for scheme in [address.scheme] if address.scheme else self.protocol.ports:
            found = self._addresses.get((address.host, self.protocol.ports[scheme]))
            if found is not None and self.scheme_of(found) == scheme:
                return found
        return None

    def resolve(self, params: Mapping[str, str]) -> Resolved[M, A]:
        """The target, module and auth a probe asks for; ``ProbeRequestError`` for anything else."""
        text = params.get("target", "")
        if not text:
            raise ProbeRequestError("missing 'target' parameter")
        entry = self.targets.get(text)  # by its key, as written in the config
        requested: Address | None = None
        if entry is None:
            try:
                requested = parse_address(text, self.protocol.schemes)
            except TargetError as exc:
                raise ProbeRequestError(f"target {quoted(text)}: {exc}") from None
            entry = self._by_address(requested)
        scheme = self.scheme_of(entry)
        # A request may restate the scheme, never choose it (no downgrade to plain HTTP).
        if requested is not None and requested.scheme not in (None, scheme):
            raise ProbeRequestError(
                f"target {quoted(requested.netloc())} is configured for {scheme}, not {requested.scheme}"
            )
        if entry is not None:
            name, address = entry.name, entry.address
        else:
            assert requested is not None
            name, address = requested.netloc(), requested
        port = self.port_of(address, scheme)
        if entry is None:
            default_port = self.protocol.ports[scheme]
            if not any(rule.matches(address.host, address.ip, port, default_port) for rule in self.allow):
                raise ProbeRequestError(
                    f"target {quoted(address.netloc(port))} is neither configured nor allowed "
                    f"(an allow rule without ports allows port {default_port} only)"
                )
        module_name, module = self._module(params, entry)
        auth_name, auth = self._auth(params, entry)
        return Resolved(name, address.host, port, scheme, module_name, module, auth, auth_name)

    def _module(self, params: Mapping[str, str], entry: TargetEntry | None) -> tuple[str | None, M | None]:
        own = entry.defaults.module if entry else None
        name = params.get("module") or own or self.defaults.module or self.fallback_module
        if name is None:
            return None, None
        module = self.modules.get(name)
        if module is None:
            raise ProbeRequestError(f"unknown module {quoted(name, 64)}")
        return name, module

    def _auth(self, params: Mapping[str, str], entry: TargetEntry | None) -> tuple[str, A]:
        own = entry.defaults.auth if entry else None
        name = params.get("auth") or own or self.defaults.auth
        if name is None and len(self.auths) == 1:
            name = next(iter(self.auths))
        if name is None:
            raise ProbeRequestError("missing 'auth' parameter (the config has no default auth)")
        auth = self.auths.get(name)
        if auth is None:
            raise ProbeRequestError(f"unknown auth {quoted(name, 64)}")
        return name, auth


# --- the config fragment -----------------------------------------------------------------------

_NAME = {"type": "string", "pattern": "^[A-Za-z0-9_.-]+$"}


def schema_properties(protocol: Protocol) -> dict[str, Any]:
    """The ``defaults``, ``targets``, ``allow`` and ``state_ttl`` keys of an exporter's schema."""
    scheme = {"scheme": {"enum": list(protocol.schemes)}} if protocol.schemes else {}
    defaults = strict_object({"module": _NAME, "auth": _NAME, **scheme})
    entry = strict_object(
        {
            "address": {"type": "string", "minLength": 1, "maxLength": MAX_TARGET_LENGTH},
            **defaults["properties"],
        }
    )
    return {
        "defaults": defaults,
        "targets": {"type": "object", "additionalProperties": {"oneOf": [entry, {"type": "null"}]}},
        "allow": {
            "type": "array",
            "items": {"type": "string", "minLength": 1, "maxLength": MAX_TARGET_LENGTH},
        },
        "state_ttl": {"type": "number", "minimum": 1, "maximum": 86400},
    }


def build_policy(
    doc: Mapping[str, Any],
    protocol: Protocol,
    modules: Mapping[str, M],
    auths: Mapping[str, A],
    errors: list[str],
    *,
    defaults: TargetDefaults | None = None,
    fallback_module: str | None = None,
    known_auths: Collection[str] = (),
    longest_timeout: float = 0.0,
) -> TargetPolicy[M, A]:
    """The policy from a validated document's shared keys; every problem is appended to ``errors``.

    ``known_auths`` are auth names that exist in the document but failed to build (a missing
    secret): references to them are not reported a second time.  ``state_ttl`` must exceed
    ``longest_timeout``, so that no state can expire while a probe still uses it.
    """
    defaults = defaults or TargetDefaults(**(doc.get("defaults") or {}))
    known = set(auths) | set(known_auths)

    def check(where: str, ref: TargetDefaults) -> None:
        if ref.module and ref.module not in modules:
            errors.append(f"{where}.module: unknown module {ref.module!r}")
        if ref.auth and ref.auth not in known:
            errors.append(f"{where}.auth: unknown auth {ref.auth!r}")

    check("defaults", defaults)
    targets: dict[str, TargetEntry] = {}
    by_address: dict[tuple[str, int], TargetEntry] = {}
    for key, spec in (doc.get("targets") or {}).items():
        spec = dict(spec or {})
        named = "address" in spec
        text = spec.pop("address", None) or key
        own = TargetDefaults(**spec)
        check(f"targets.{key}", own)
        try:
            address = parse_address(str(text), protocol.schemes)
        except TargetError as exc:
            errors.append(f"targets.{key}{'.address' if named else ''}: {exc}")
            continue
        if named and not _ENTRY_NAME.match(str(key)):
            errors.append(f"targets.{key}: a target's name is letters, digits and _.:[]- only")
            continue
        entry = TargetEntry(str(key), address, own)
        scheme = address.scheme or own.scheme or defaults.scheme or protocol.default_scheme
        port = address.port if address.port is not None else protocol.ports[scheme]
        other = by_address.setdefault((address.host, port), entry)
        if other is not entry:
            errors.append(f"targets.{key}: the same address and port as targets.{other.name}")
        targets[entry.name] = entry
    allow = []
    for i, text in enumerate(doc.get("allow") or []):
        try:
            allow.append(AllowRule.parse(text))
        except TargetError as exc:
            errors.append(f"allow[{i}]: {exc}")
    state_ttl = float(doc.get("state_ttl", DEFAULT_STATE_TTL))
    if state_ttl <= longest_timeout:
        errors.append(
            f"state_ttl: {state_ttl:g} s is not longer than the longest timeout ({longest_timeout:g} s)"
        )
    return TargetPolicy(
        protocol,
        modules,
        auths,
        targets,
        tuple(allow),
        defaults,
        fallback_module,
        state_ttl,
        by_address,
    )

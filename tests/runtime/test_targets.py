"""The multi-target request path every exporter shares: addresses, allow rules, targets, module, auth."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from powerplane.exporters.runtime import ConfigError, ConfigKind, ProbeRequestError, strict_object
from powerplane.exporters.runtime.targets import (
    Address,
    AllowRule,
    Protocol,
    TargetError,
    TargetPolicy,
    build_policy,
    parse_address,
    schema_properties,
)

HTTP = Protocol({"https": 443, "http": 80}, default_scheme="https")
UDP = Protocol({"": 161})


# --- addresses ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "schemes", "expected"),
    [
        ("IDRAC-01.Example.NET", (), Address("idrac-01.example.net")),
        ("bmc.example.", (), Address("bmc.example")),  # the root's trailing dot
        ("bmc.example.:623", (), Address("bmc.example", 623)),
        ("10.0.0.5:161", (), Address("10.0.0.5", 161)),
        ("HTTPS://Host.Example:443", ("https",), Address("host.example", 443, "https")),
        ("https://10.0.0.1/", ("https",), Address("10.0.0.1", None, "https")),
        ("[::1]:8443", (), Address("::1", 8443)),
        ("[2001:DB8::0:1]", (), Address("2001:db8::1")),
        ("2001:db8::1", (), Address("2001:db8::1")),  # a bare IPv6 address has no port
        ("[::ffff:10.0.0.1]:161", (), Address("10.0.0.1", 161)),  # IPv4-mapped: the real destination
        ("xn--bcher-kva.example", (), Address("xn--bcher-kva.example")),
        ("host:0161", (), Address("host", 161)),
    ],
)
def test_addresses_are_normalised(text: str, schemes: tuple[str, ...], expected: Address) -> None:
    assert parse_address(text, schemes) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("a" * 301, "longer than"),
        ("root:calvin@10.0.0.1", "user info"),
        ("@127.0.0.2:19199", "user info"),
        ("10.0.0.1\\@evil", "backslashes"),
        ("10.0.0.1%2f", "percent"),
        ("fe80::1%eth0", "percent"),
        ("evil%2eexample", "percent"),
        ("host/redfish/v1", "path"),
        ("https://host/x", "path"),
        ("//evil.example", "path"),
        ("host?x=1", "query"),
        ("host#frag", "fragment"),
        ("ftp://host", "scheme"),
        ("gopher://host:70", "scheme"),
        ("a b", "white space"),
        ("host\tx", "white space"),
        ("host\r\nX-Injected: 1", "white space"),
        ("host\x00", "white space"),
        ("hóst.example", "non-ASCII"),
        ("host:", "invalid port"),
        ("host:0", "invalid port"),
        ("host:65536", "invalid port"),
        ("host:99999", "invalid port"),
        ("host:+80", "invalid port"),
        ("host:\uff18\uff10", "non-ASCII"),  # fullwidth digits
        ("host:1:2", "IPv6"),
        ("[::1", "IPv6"),
        ("[::1]x", "IPv6"),
        ("[10.0.0.1]", "IPv6"),
        ("-x.example", "invalid host name"),
        ("a..b", "invalid host name"),
        ("under_score.example", "invalid host name"),
        ("2130706433", "not an IP address in dotted form"),
        ("0x7f.0.0.1", "not an IP address in dotted form"),
        ("0x7f000001", "not an IP address in dotted form"),
        ("127.1", "not an IP address in dotted form"),
        ("10.0.0.001", "not an IP address in dotted form"),
        ("1.2.3.4.5", "not an IP address in dotted form"),
    ],
)
def test_hostile_addresses_are_refused_with_the_reason(text: str, reason: str) -> None:
    with pytest.raises(TargetError, match=reason):
        parse_address(text, ("https", "http") if "://" in text and "ftp" not in text else ())


def test_a_scheme_needs_a_protocol_with_schemes() -> None:
    with pytest.raises(TargetError, match=r"scheme 'http' not allowed \(schemes: none\)"):
        parse_address("http://10.0.0.1")


# --- allow rules -------------------------------------------------------------------------------


def allowed(rule: str, target: str, default_port: int = 443) -> bool:
    address = parse_address(target)
    port = address.port if address.port is not None else default_port
    return AllowRule.parse(rule).matches(address.host, address.ip, port, default_port)


@pytest.mark.parametrize(
    ("rule", "target", "expected"),
    [
        ("10.20.0.0/16", "10.20.3.4", True),
        ("10.20.0.0/16", "10.20.3.4:443", True),
        ("10.20.0.0/16", "10.20.3.4:22", False),  # ports are part of the rule
        ("10.20.0.0/16", "10.21.0.1", False),
        ("10.20.0.0/16", "bmc.example", False),  # no name is resolved to decide
        ("10.20.0.0/16:*", "10.20.3.4:22", True),
        ("10.20.0.0/16:8000-8099", "10.20.3.4:8080", True),
        ("10.20.0.0/16:8000-8099", "10.20.3.4:443", False),
        ("10.0.0.5", "10.0.0.5", True),
        ("10.0.0.5", "10.0.0.6", False),
        ("10.20.0.*", "10.20.0.7", True),
        ("10.20.0.*", "10.20.0.attacker.example", False),  # IP-like globs match addresses only
        ("10.20.0.*", "10.20.1.7", False),
        ("*.bmc.example", "idrac-1.bmc.example", True),
        ("*.bmc.example", "IDRAC-1.BMC.EXAMPLE.", True),
        ("*.bmc.example", "bmc.example", False),
        ("*.bmc.example", "idrac-1.bmc.example.evil.com", False),
        ("*.bmc.example", "idrac-1.bmc.example:8443", False),
        ("*.bmc.example:443,8443", "idrac-1.bmc.example:8443", True),
        ("*.bmc.example:443,8443", "idrac-1.bmc.example:8080", False),
        ("*", "anything.example", True),
        ("*", "10.0.0.1", False),  # name globs match names only
        ("[fd00::/8]:623", "[fd12::1]:623", True),
        ("[fd00::/8]:623", "[fd12::1]:624", False),
        ("fd00::/8", "[fd12::1]", True),
        ("fd00::/8", "10.0.0.1", False),
        ("0.0.0.0/0", "[::1]", False),
        ("127.0.0.0/8", "[::ffff:127.0.0.1]", True),  # mapped addresses are their IPv4 selves
    ],
)
def test_allow_rules(rule: str, target: str, expected: bool) -> None:
    assert allowed(rule, target) is expected


@pytest.mark.parametrize(
    ("rule", "reason"),
    [
        ("10.0.0.0/33", "33"),
        ("bad pattern!", "neither a CIDR nor a glob"),
        ("under_score.*", "neither a CIDR nor a glob"),
        ("fd00::*", "neither a CIDR nor a glob"),
        ("10.0.0.0/8:99999", "invalid port"),
        ("10.0.0.0/8:5-2", "empty port range"),
        ("10.0.0.0/8:http", "invalid ports"),
        ("[fd00::/8", "expected"),
    ],
)
def test_bad_allow_rules_are_refused(rule: str, reason: str) -> None:
    with pytest.raises(TargetError, match=reason):
        AllowRule.parse(rule)


# --- the policy --------------------------------------------------------------------------------

SCHEMA = strict_object(
    {"auths": {"type": "object"}, "modules": {"type": "object"}, **schema_properties(HTTP)}, ("auths",)
)


def policy(text: str, protocol: Protocol = HTTP, fallback: str | None = "default") -> TargetPolicy[str, str]:
    def build(doc: Any) -> TargetPolicy[str, str]:
        errors: list[str] = []
        modules = {"default": "M", **{k: f"M-{k}" for k in doc.get("modules") or {}}}
        auths = {k: f"A-{k}" for k in doc["auths"]}
        built = build_policy(doc, protocol, modules, auths, errors, fallback_module=fallback)
        if errors:
            raise ConfigError(errors)
        return built

    schema = strict_object(
        {"auths": {"type": "object"}, "modules": {"type": "object"}, **schema_properties(protocol)},
        ("auths",),
    )
    kind: ConfigKind[TargetPolicy[str, str]] = ConfigKind("test", schema, build)
    return kind.load_text(text)


REDFISH_LIKE = """
auths: {idrac: {}, lab: {}}
modules: {quick: {}}
defaults: {auth: idrac}
targets:
  idrac-01.mgmt.example: {}
  "http://10.99.0.7:8000": {auth: lab}
  10.20.0.5: {module: quick, scheme: http}
allow: [10.20.0.0/16, "*.bmc.example:443,8443"]
"""


@pytest.mark.parametrize(
    ("params", "name", "url", "module", "auth"),
    [
        (
            {"target": "idrac-01.mgmt.example"},
            "idrac-01.mgmt.example",
            "https://idrac-01.mgmt.example:443",
            "default",
            "idrac",
        ),
        (
            {"target": "IDRAC-01.mgmt.example.:443"},
            "idrac-01.mgmt.example",
            "https://idrac-01.mgmt.example:443",
            "default",
            "idrac",
        ),
        (
            {"target": "https://idrac-01.mgmt.example"},
            "idrac-01.mgmt.example",
            "https://idrac-01.mgmt.example:443",
            "default",
            "idrac",
        ),
        (
            {"target": "http://10.99.0.7:8000"},
            "http://10.99.0.7:8000",
            "http://10.99.0.7:8000",
            "default",
            "lab",
        ),
        ({"target": "10.99.0.7:8000"}, "http://10.99.0.7:8000", "http://10.99.0.7:8000", "default", "lab"),
        ({"target": "10.20.0.5"}, "10.20.0.5", "http://10.20.0.5:80", "quick", "idrac"),
        (
            {"target": "10.20.0.5:80", "module": "default"},
            "10.20.0.5",
            "http://10.20.0.5:80",
            "default",
            "idrac",
        ),
        ({"target": "10.20.7.7", "auth": "lab"}, "10.20.7.7", "https://10.20.7.7:443", "default", "lab"),
        (
            {"target": "x.bmc.example:8443"},
            "x.bmc.example:8443",
            "https://x.bmc.example:8443",
            "default",
            "idrac",
        ),
    ],
)
def test_configured_and_allowed_targets_resolve(
    params: dict[str, str], name: str, url: str, module: str, auth: str
) -> None:
    found = policy(REDFISH_LIKE).resolve(params)
    assert (found.name, found.base_url, found.module_name, found.auth_name) == (name, url, module, auth)


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({}, "missing 'target' parameter"),
        ({"target": ""}, "missing 'target' parameter"),
        ({"target": "10.21.0.1"}, "neither configured nor allowed"),
        ({"target": "10.20.0.9:22"}, "'10.20.0.9:22' is neither configured nor allowed"),
        ({"target": "10.20.0.5:22"}, "neither configured nor allowed"),  # a configured host, another port
        ({"target": "x.bmc.example:9873"}, "neither configured nor allowed"),
        ({"target": "10.20.0.attacker.example"}, "neither configured nor allowed"),
        ({"target": "http://10.20.0.9"}, "configured for https, not http"),  # no downgrade
        ({"target": "http://idrac-01.mgmt.example"}, "configured for https, not http"),
        ({"target": "https://10.20.0.5:80"}, "configured for http, not https"),
        ({"target": "root:pw@10.20.0.9"}, "user info"),
        ({"target": "10.20.0.9/redfish/v1/Systems"}, "path"),
        ({"target": "file:///etc/passwd"}, "scheme 'file' not allowed"),
        ({"target": "10.20.0.9", "module": "nope"}, "unknown module 'nope'"),
        ({"target": "10.20.0.9", "auth": "nope"}, "unknown auth 'nope'"),
        ({"target": "10.20.0.9", "auth": "x" * 500}, "unknown auth 'xxxx"),
    ],
)
def test_everything_else_is_refused_with_the_reason(params: dict[str, str], reason: str) -> None:
    with pytest.raises(ProbeRequestError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        policy(REDFISH_LIKE).resolve(params)


def test_refusals_quote_the_request_escaped_and_short() -> None:
    with pytest.raises(ProbeRequestError) as info:
        policy(REDFISH_LIKE).resolve({"target": "evil\r\n<script>" + "x" * 500})
    message = str(info.value)
    assert "\r" not in message and "\n" not in message
    assert len(message) < 200


def test_named_targets_resolve_by_name_and_by_address() -> None:
    udp = policy(
        "auths: {v2: {}}\ntargets:\n"
        "  pdu-a01: {address: '10.1.0.21'}\n  pdu-a02: {address: 'pdu-a02.example:1161'}\n",
        UDP,
        fallback=None,
    )
    for target in ("pdu-a01", "10.1.0.21", "10.1.0.21:161"):
        found = udp.resolve({"target": target})
        assert (found.name, found.device, found.module, found.auth_name) == (
            "pdu-a01",
            "10.1.0.21:161",
            None,
            "v2",
        )
    assert udp.resolve({"target": "pdu-a02"}).device == "pdu-a02.example:1161"
    with pytest.raises(ProbeRequestError, match="scheme"):
        udp.resolve({"target": "udp://10.1.0.21"})


def test_without_a_default_auth_the_probe_must_name_one() -> None:
    with pytest.raises(ProbeRequestError, match="missing 'auth' parameter"):
        policy("auths: {a: {}, b: {}}\nallow: [10.0.0.0/8]").resolve({"target": "10.0.0.1"})


BROKEN = """
auths: {a: {}}
defaults: {module: nope, auth: zz}
targets:
  "bad host!": {}
  "x y": {address: 10.0.0.1}
  t1: {address: "10.0.0.1:99999"}
  t2: {address: 10.0.0.2, auth: nobody}
  t3: {address: "10.0.0.2:443"}
allow: [10.0.0.0/33, "*.ok.example", "no good"]
"""


def test_config_errors_name_the_field() -> None:
    with pytest.raises(ConfigError) as info:
        policy(BROKEN + "unknown: 1\n")
    errors = info.value.errors
    assert errors == ["(top level): unknown key(s) 'unknown'"]  # the schema runs first
    with pytest.raises(ConfigError) as info:
        policy(BROKEN)
    errors = info.value.errors
    for expected in (
        "targets.bad host!: white space",
        "targets.x y: a target's name is letters, digits",
        "targets.t1.address: invalid port '99999'",
        "targets.t2.auth: unknown auth 'nobody'",
        "targets.t3: the same address and port as targets.t2",
        "allow[0]: ",
        "allow[2]: ",
        "defaults.module: unknown module 'nope'",
        "defaults.auth: unknown auth 'zz'",
    ):
        assert any(e.startswith(expected) for e in errors), (expected, errors)
    assert not any(e.startswith("allow[1]") for e in errors)


def test_state_must_outlive_a_probe() -> None:
    errors: list[str] = []
    build_policy({"state_ttl": 30}, HTTP, {}, {}, errors, longest_timeout=30.0)
    assert errors == ["state_ttl: 30 s is not longer than the longest timeout (30 s)"]


ALLOWED = ipaddress.ip_network("10.20.0.0/16")


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(
        st.text(max_size=40),
        st.from_regex(r"\A(https?://)?[0-9a-zA-Z.:\[\]@%/\\?#-]{0,30}\Z"),
        st.builds(
            lambda a, b, p: f"10.20.{a}.{b}:{p}",
            st.integers(0, 300),
            st.integers(0, 300),
            st.integers(0, 70000),
        ),
    )
)
def test_only_allowed_addresses_ever_resolve(text: str) -> None:
    """Whatever a probe sends, it is refused or resolves to an allowed host at an allowed port."""
    rules = policy("auths: {a: {}}\nallow: [10.20.0.0/16, '*.bmc.example']")
    try:
        found = rules.resolve({"target": text})
    except ProbeRequestError as exc:
        assert "\n" not in str(exc)
        return
    assert found.port == 443 and found.scheme == "https"
    if found.host.endswith(".bmc.example"):
        assert parse_address(found.host).host == found.host
    else:
        assert ipaddress.ip_address(found.host) in ALLOWED

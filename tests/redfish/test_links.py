"""Links from BMC content resolve on the BMC's own origin, or are refused."""

from __future__ import annotations

import pytest
from yarl import URL

from powerplane.exporters.redfish.links import LinkRefused, same_origin

ORIGIN = URL("https://10.0.0.5:443")


@pytest.mark.parametrize(
    ("link", "expected"),
    [
        ("/redfish/v1/Systems", "https://10.0.0.5/redfish/v1/Systems"),
        ("/redfish/v1/Chassis/1/Power#/PowerControl/0", "https://10.0.0.5/redfish/v1/Chassis/1/Power"),
        (
            "/redfish/v1/Chassis?$expand=.($levels=2)",
            "https://10.0.0.5/redfish/v1/Chassis?$expand=.($levels=2)",
        ),
        (
            "https://10.0.0.5/redfish/v1/SessionService/Sessions/7",
            "https://10.0.0.5/redfish/v1/SessionService/Sessions/7",
        ),
        ("HTTPS://10.0.0.5:443/redfish/v1/x", "https://10.0.0.5/redfish/v1/x"),
        ("/redfish/v1/Members/PSU%201", "https://10.0.0.5/redfish/v1/Members/PSU%201"),
    ],
)
def test_paths_on_the_origin_are_accepted(link: str, expected: str) -> None:
    assert str(same_origin(ORIGIN, link)) == expected


@pytest.mark.parametrize(
    "link",
    [
        None,
        17,
        "",
        "redfish/v1",
        "0:19199/x",
        "@127.0.0.2:19199/x",
        "//127.0.0.2:19199/x",
        "http://10.0.0.5/redfish/v1",  # another scheme
        "https://10.0.0.5:8443/redfish/v1",  # another port
        "https://10.0.0.6/redfish/v1",  # another host
        "https://user:pw@10.0.0.5/redfish/v1",
        "\\\\127.0.0.2\\x",
        "/\\127.0.0.2/x",
        "/%2f%2f127.0.0.2/x",
        "/redfish/%2E%2E/x",
        "/redfish/%252e%252e/x",
        "/redfish/%00",
        "/redfish/../../etc",
        "/redfish/./v1",
        "/redfish/v1\r\nHost: evil",
        "/redfish/v1/caf\u00e9",
        "/" + "x" * 3000,
    ],
)
def test_everything_else_is_refused(link: object) -> None:
    with pytest.raises(LinkRefused):
        same_origin(ORIGIN, link)


def test_an_ipv6_origin_keeps_its_brackets() -> None:
    assert str(same_origin(URL("http://[::1]:8000"), "/redfish/v1")) == "http://[::1]:8000/redfish/v1"
    with pytest.raises(LinkRefused):
        same_origin(URL("http://[::1]:8000"), "http://[::2]:8000/redfish/v1")

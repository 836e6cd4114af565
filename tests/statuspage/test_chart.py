"""The chart's optional status page: rendered by the real Helm engine, its config loads as the page's."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml

from powerplane import helm
from powerplane.statuspage.config import KIND
from powerplane.statuspage.outages import KIND as OUTAGES

CHART = Path(__file__).resolve().parent.parent.parent / "charts" / "powerplane"
VALUES = yaml.safe_load((CHART / "ci" / "statuspage-values.yaml").read_text())


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    return list(helm.objects(helm.render(CHART, values, include_crds=False)))


def named(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"].endswith("-statuspage")]
    return found


def test_off_by_default() -> None:
    assert not [o for o in render({}) if o["metadata"]["name"].endswith("-statuspage")]


def test_the_deployment_serves_the_rendered_config(monkeypatch: pytest.MonkeyPatch) -> None:
    objects = render(VALUES)
    deployment, service = named(objects, "Deployment"), named(objects, "Service")
    config_map, secret = named(objects, "ConfigMap"), named(objects, "Secret")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][:3] == [
        "status-page",
        "--config=/etc/powerplane/config.yaml",
        "--web.listen-address=:9879",
    ]
    assert (
        container["securityContext"]["runAsNonRoot"] is True
        and container["securityContext"]["readOnlyRootFilesystem"]
    )
    assert container["envFrom"] == [{"secretRef": {"name": secret["metadata"]["name"]}}]
    assert service["spec"]["ports"][0]["port"] == 9879
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    # The ConfigMap holds a valid page config, pointing at the mounted outages file.
    password = base64.b64decode(secret["data"]["PROMETHEUS_PASSWORD"]).decode()
    assert password not in yaml.safe_dump(config_map) and password not in yaml.safe_dump(deployment)
    monkeypatch.setenv("PROMETHEUS_PASSWORD", password)
    config = KIND.load_text(config_map["data"]["config.yaml"], "ConfigMap config.yaml")
    assert str(config.outages_file) == "/etc/powerplane/outages.yaml"
    assert config.prometheus.password is not None and config.prometheus.password.reveal() == password
    (announcement,) = OUTAGES.load_text(config_map["data"]["outages.yaml"], "ConfigMap outages.yaml")
    assert announcement.title == "Scratch upgrade"


def test_editing_the_outages_does_not_restart_the_pods() -> None:
    def checksum(values: dict[str, Any]) -> str:
        annotations = named(render(values), "Deployment")["spec"]["template"]["metadata"]["annotations"]
        return str(annotations["checksum/config"])

    other = yaml.safe_load(yaml.safe_dump(VALUES))
    other["statuspage"]["outages"]["outages"][0]["title"] = "Scratch upgrade, postponed"
    assert checksum(VALUES) == checksum(other)
    other["statuspage"]["config"]["title"] = "Another title"
    assert checksum(VALUES) != checksum(other)


@pytest.mark.parametrize(
    ("config", "complaint"),
    [
        ({}, "statuspage.config.prometheus.url is required"),
        ({"prometheus": {"url": "http://p"}}, "systems is required"),
    ],
)
def test_enabled_without_a_config_fails_clearly(config: dict[str, Any], complaint: str) -> None:
    with pytest.raises(Exception, match=complaint):
        render({"statuspage": {"enabled": True, "config": config}})

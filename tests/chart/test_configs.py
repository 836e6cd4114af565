"""The chart against the exporters it deploys: flags, config files and probe parameters.

Every ci/*-values.yaml is rendered; each central exporter container's arguments are parsed by
the exporter's own click command, the config file it is pointed at is found in its ConfigMap and
loaded with the real ``ConfigKind`` (secrets from environment variables set here, files under
/etc/powerplane from the ConfigMap), and every probe target the chart gives Prometheus (static
ScrapeConfig targets and file_sd groups) is resolved by the exporter's own prober. A chart that
drifts from an exporter fails here, not in a cluster. The full config examples in docs/ are
loaded with the same kinds.
"""

from __future__ import annotations

import base64
import fnmatch
import json
import re
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import click
import pytest
import yaml

from powerplane import components
from powerplane.exporters.runtime.config import ConfigError, ConfigKind
from powerplane.exporters.runtime.probe import Prober

from .test_chart import CI_VALUES, ROOT, by_kind, load_values, render

PROBED = ("redfish", "snmp")


def config_kind(name: str) -> ConfigKind[Any]:
    kind: ConfigKind[Any] = components.resolve(components.config_kinds()[name])
    return kind


def exporter_command(name: str) -> click.Command:
    command: click.Command = components.resolve(components.exporters()[name])
    return command


def walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def env_names(doc: Any) -> set[str]:
    return {n["env"] for n in walk(doc) if isinstance(n, dict) and set(n) == {"env"}}


def relocate(node: Any, mount: PurePosixPath, local: Path) -> Any:
    """Paths under the ConfigMap's mount point → the same files written under ``local``."""
    if isinstance(node, dict):
        return {k: relocate(v, mount, local) for k, v in node.items()}
    if isinstance(node, list):
        return [relocate(v, mount, local) for v in node]
    if isinstance(node, str) and node.startswith(f"{mount}/"):
        return str(local / node[len(str(mount)) + 1 :])
    return node


def exporter_deployments(
    objects: list[dict[str, Any]],
) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(exporter name, pod spec, container) of every container running ``powerplane exporter X``."""
    for obj in by_kind(objects, "Deployment"):
        spec = obj["spec"]["template"]["spec"]
        for container in spec["containers"]:
            args = container.get("args", [])
            if args[:1] == ["exporter"] and args[1] in components.exporters():
                yield args[1], spec, container


def mounted_file(
    objects: list[dict[str, Any]], spec: dict[str, Any], container: dict[str, Any], path: str
) -> tuple[PurePosixPath, dict[str, str]]:
    """The mount point and ConfigMap data holding ``path`` inside ``container``."""
    file = PurePosixPath(path)
    (mount,) = [m for m in container["volumeMounts"] if PurePosixPath(m["mountPath"]) == file.parent]
    (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    maps = {c["metadata"]["name"]: c for c in by_kind(objects, "ConfigMap")}
    data: dict[str, str] = maps[volume["configMap"]["name"]]["data"]
    assert file.name in data, f"{path} is not a key of ConfigMap {volume['configMap']['name']}"
    return file.parent, data


def secret_env(objects: list[dict[str, Any]], container: dict[str, Any]) -> dict[str, str] | None:
    """Variables the container gets from Secrets; None where a Secret is not the chart's own."""
    charted = {s["metadata"]["name"]: s for s in by_kind(objects, "Secret")}
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        name = source["secretRef"]["name"]
        if name not in charted:
            return None  # an existingSecret: its keys are not known to the chart
        env.update({k: base64.b64decode(v).decode() for k, v in charted[name]["data"].items()})
    for item in container.get("env", []):
        env[item["name"]] = item.get("value", "")
    return env


def probe_params(objects: list[dict[str, Any]], component: str) -> list[dict[str, str]]:
    """The /probe parameters Prometheus sends for every target the chart configures."""
    groups: list[dict[str, Any]] = []
    for scrape in by_kind(objects, "ScrapeConfig"):
        if scrape["spec"]["jobName"] == f"powerplane-{component}-probe":
            assert scrape["spec"]["metricsPath"] == "/probe"
            relabel = scrape["spec"]["relabelings"][0]
            assert (relabel["sourceLabels"], relabel["targetLabel"]) == (["__address__"], "__param_target")
            groups.extend(scrape["spec"].get("staticConfigs", []))
    globs = [
        PurePosixPath(f).name
        for scrape in by_kind(objects, "ScrapeConfig")
        if scrape["spec"]["jobName"] == f"powerplane-{component}-probe"
        for sd in scrape["spec"].get("fileSDConfigs", [])
        for f in sd["files"]
    ]
    for config_map in by_kind(objects, "ConfigMap"):
        if config_map["metadata"]["name"].endswith("-file-sd"):
            for name, text in config_map["data"].items():
                if any(fnmatch.fnmatchcase(name, g) for g in globs):
                    groups.extend(json.loads(text))
    params: list[dict[str, str]] = []
    for group in groups:
        labels = group.get("labels", {})
        extra = {k.removeprefix("__param_"): v for k, v in labels.items() if k.startswith("__param_")}
        assert set(extra) <= {"module", "auth"}, f"{component}: unknown probe parameter(s) {sorted(extra)}"
        params.extend({"target": target, **extra} for target in group["targets"])
    return params


def make_prober(component: str, config: Any) -> Prober:
    if component == "redfish":
        from powerplane.exporters.redfish.prober import RedfishProber

        return RedfishProber(config)
    from powerplane.exporters.snmp.prober import SnmpProber

    # No session is opened: resolving a probe only builds the job.
    return SnmpProber(config, session_factory=lambda *args: object())


def load_rendered(
    objects: list[dict[str, Any]],
    component: str,
    spec: dict[str, Any],
    container: dict[str, Any],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    secrets_known: bool = True,
) -> Any:
    """Parse the container's flags with the exporter's CLI and load the config it names.

    With ``secrets_known`` every variable the config reads must be set by the chart's Secret
    (or by an existingSecret, whose keys the chart cannot know).
    """
    args = list(container["args"][2:])
    # The config file: the one argument naming a file under a ConfigMap mount.
    config_maps = {v["name"] for v in spec["volumes"] if "configMap" in v}
    mounts = [m["mountPath"] for m in container["volumeMounts"] if m["name"] in config_maps]
    named = [a for a in args if any(a.partition("=")[2].startswith(f"{m}/") for m in mounts)]
    assert len(named) == 1, f"{component}: no single config file argument in {args}"
    config_path = named[0].partition("=")[2]
    mount, data = mounted_file(objects, spec, container, config_path)
    local = tmp_path / component
    local.mkdir(parents=True)
    for name, text in data.items():
        (local / name).write_text(text)
    local_config = str(local / PurePosixPath(config_path).name)
    doc = yaml.safe_load(data[PurePosixPath(config_path).name])
    for node in walk(doc):
        if isinstance(node, str) and node.startswith(f"{mount}/"):
            assert PurePosixPath(node).name in data, f"{component}: {node} is not in the ConfigMap"
    provided = secret_env(objects, container) if secrets_known else None
    for name in sorted(env_names(doc)):
        if provided is not None:
            assert name in provided, f"{component}: config reads ${name}, which no Secret or env sets"
        monkeypatch.setenv(name, provided[name] if provided is not None else f"test-{name.lower()}")
    Path(local_config).write_text(yaml.safe_dump(relocate(doc, mount, local)))
    # The exporter's own CLI parses the flags (names, choices, required options, files present);
    # commands with a --config option load and validate the file while parsing.
    command = exporter_command(component)
    with command.make_context(component, [a.replace(config_path, local_config) for a in args]) as ctx:
        loaded = ctx.params.get("config")
        assert loaded is not None or local_config in {str(v) for v in ctx.params.values()}, (
            f"{component}: {named[0]} unused"
        )
        listen = ctx.params["listen_address"]
    port = {p["name"]: p["containerPort"] for p in container["ports"]}["http"]
    assert listen == f":{port}", f"{component}: listens on {listen}, container port {port}"
    return loaded if loaded is not None else config_kind(component).load(local_config)


@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda p: p.name)
async def test_rendered_exporter_configs_load(
    values_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    values = load_values(values_file)
    objects = render(values)
    configs = {
        component: load_rendered(objects, component, spec, container, tmp_path, monkeypatch)
        for component, spec, container in exporter_deployments(objects)
    }
    if "inventory" in configs and values["inventory"].get("fileSD"):
        from powerplane.exporters.inventory.sd import file_sd

        # The file_sd ConfigMap holds what `powerplane inventory sd` makes of the inventory.
        assert file_sd(configs["inventory"]) == values["inventory"]["fileSD"]
    for component in PROBED:
        if component not in configs:
            continue
        prober = make_prober(component, configs[component])
        try:
            for params in probe_params(objects, component):
                job = prober.resolve(params)  # raises ProbeRequestError (HTTP 400) on drift
                assert job.collectors, params
        finally:
            await prober.close()


def test_the_matrix_covers_every_central_exporter() -> None:
    seen: dict[str, int] = {}
    for values_file in CI_VALUES:
        objects = render(load_values(values_file))
        for component, _, _ in exporter_deployments(objects):
            seen[component] = seen.get(component, 0) + 1
        for component in PROBED:
            if by_kind(objects, "ScrapeConfig"):
                seen[f"{component}-probes"] = seen.get(f"{component}-probes", 0) + len(
                    probe_params(objects, component)
                )
    assert {"redfish", "snmp", "market", "redfish-probes", "snmp-probes"} <= set(seen), seen


@pytest.mark.parametrize("component", ["redfish", "snmp", "market"])
async def test_default_config_loads(component: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Enabled with nothing else set, an exporter gets a config its kind accepts."""
    objects = render({component: {"enabled": True}})
    ((name, spec, container),) = list(exporter_deployments(objects))
    # No credentials given: the variables would come from the user's Secret.
    config = load_rendered(objects, name, spec, container, tmp_path, monkeypatch, secrets_known=False)
    if component == "market":
        assert str(config.store) == "/var/lib/powerplane/market"
        (mount,) = [m for m in container["volumeMounts"] if m["name"] == "data"]
        assert str(config.store).startswith(mount["mountPath"] + "/")


def test_the_multi_target_exporters_run_on_glibcs_allocator() -> None:
    """As the systemd units: the pages of targets released after state_ttl go back to the
    system. The user's extraEnv comes after; the single-target exporters keep CPython's."""
    extra = [{"name": "TZ", "value": "UTC"}]
    values = {c: {"enabled": True, "extraEnv": extra} for c in ("redfish", "snmp", "market")}
    envs = {name: container.get("env") for name, _, container in exporter_deployments(render(values))}
    malloc = {"name": "PYTHONMALLOC", "value": "malloc"}
    assert envs == {"redfish": [malloc, *extra], "snmp": [malloc, *extra], "market": extra}
    plain = {
        name: container.get("env")
        for name, _, container in exporter_deployments(render({"snmp": {"enabled": True}}))
    }
    assert plain == {"snmp": [malloc]}


async def test_probe_targets_are_added_to_the_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    values = {
        "scrapeConfig": {"enabled": True},
        "redfish": {
            "enabled": True,
            "credentials": {"REDFISH_USERNAME": "u", "REDFISH_PASSWORD": "p"},
            "targets": [{"target": "bmc-a.mgmt.example", "labels": {"node": "a"}}],
        },
        "snmp": {
            "enabled": True,
            "credentials": {"SNMP_COMMUNITY": "c"},
            "targets": [{"target": "pdu-a.mgmt.example", "module": "apc_rpdu2", "labels": {"pdu": "a"}}],
        },
    }
    objects = render(values)
    for component, spec, container in exporter_deployments(objects):
        config = load_rendered(objects, component, spec, container, tmp_path, monkeypatch)
        prober = make_prober(component, config)
        try:
            for params in probe_params(objects, component):
                prober.resolve(params)
            # Anything the chart was not told about is still refused.
            from powerplane.exporters.runtime.probe import ProbeRequestError

            with pytest.raises(ProbeRequestError):
                prober.resolve({"target": "10.0.0.1"})
            with pytest.raises(ProbeRequestError):
                prober.resolve({**probe_params(objects, component)[0], "module": "no-such-module"})
        finally:
            await prober.close()
    snmp_config = next(c for c in by_kind(objects, "ConfigMap") if c["metadata"]["name"] == "powerplane-snmp")
    assert yaml.safe_load(snmp_config["data"]["config.yaml"])["targets"] == {
        "pdu-a.mgmt.example": {"address": "pdu-a.mgmt.example", "module": "apc_rpdu2"}
    }


def test_a_drifted_config_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The check bites: a config the exporter rejects is reported, naming the field."""
    objects = render(
        {"market": {"enabled": True, "config": {"areas": ["DE-LU"], "providers": [{"entsoe": {}}]}}}
    )
    ((component, spec, container),) = list(exporter_deployments(objects))
    with pytest.raises((ConfigError, click.ClickException), match="providers"):
        load_rendered(objects, component, spec, container, tmp_path, monkeypatch)


def test_extra_files_reach_the_config_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    curve = "  # leading spaces survive\nresolution_minutes: 60\nprofile: [" + ", ".join(["50"] * 24) + "]\n"
    values = {
        "market": {
            "enabled": True,
            "config": {
                "areas": ["DE-LU"],
                "providers": [{"type": "static", "path": "/etc/powerplane/curve.yaml"}],
            },
            "files": {"curve.yaml": curve},
        }
    }
    objects = render(values)
    ((component, spec, container),) = list(exporter_deployments(objects))
    config = load_rendered(objects, component, spec, container, tmp_path, monkeypatch)
    assert (tmp_path / "market" / "curve.yaml").read_text() == curve
    assert config.providers[0].path == tmp_path / "market" / "curve.yaml"
    missing = {**values["market"], "files": {}}
    objects = render({"market": missing})
    ((component, spec, container),) = list(exporter_deployments(objects))
    with pytest.raises(AssertionError, match=r"curve\.yaml is not in the ConfigMap"):
        load_rendered(objects, component, spec, container, tmp_path / "again", monkeypatch)


# -- the full config examples in the docs --------------------------------------------------------

DOCS = {
    "redfish": ROOT / "docs" / "redfish.md",
    "snmp": ROOT / "docs" / "snmp.md",
    "market": ROOT / "docs" / "market.md",
}


def yaml_blocks(path: Path) -> list[str]:
    return re.findall(r"```yaml\n(.*?)```", path.read_text(), flags=re.DOTALL)


def full_configs(kind: ConfigKind[Any], path: Path) -> list[Any]:
    """Blocks that are whole config files: mappings with the kind's required keys, nothing unknown."""
    found = []
    schema = kind.schema
    for block in yaml_blocks(path):
        try:
            doc = yaml.safe_load(block)
        except yaml.YAMLError:
            continue
        if (
            isinstance(doc, dict)
            and set(schema.get("required", [])) <= set(doc)
            and set(doc) <= set(schema["properties"])
        ):
            found.append(doc)
    return found


def stand_in_files(doc: Any, tmp_path: Path, profiles: list[str]) -> Any:
    """Replace file paths (secrets, CA bundles, profiles) with files that exist."""
    if isinstance(doc, dict):
        out = {}
        for key, value in doc.items():
            if key == "file" and set(doc) == {"file"}:
                secret = tmp_path / f"secret-{len(list(tmp_path.iterdir()))}"
                secret.write_text("doc-secret\n")
                value = str(secret)
            elif key == "ca_file":
                (tmp_path / "ca.pem").write_text("")
                value = str(tmp_path / "ca.pem")
            elif key == "profile_files":
                value = []
                for i, text in enumerate(profiles):
                    (tmp_path / f"profile-{i}.yaml").write_text(text)
                    value.append(str(tmp_path / f"profile-{i}.yaml"))
            else:
                value = stand_in_files(value, tmp_path, profiles)
            out[key] = value
        return out
    if isinstance(doc, list):
        return [stand_in_files(v, tmp_path, profiles) for v in doc]
    return doc


@pytest.mark.parametrize("component", sorted(DOCS))
def test_doc_config_examples_load(component: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    kind = config_kind(component)
    docs = full_configs(kind, DOCS[component])
    assert docs, f"{DOCS[component].name}: no full {component} config example found"
    # docs/snmp.md's "Adding a device" example is the profile its config example lists.
    profiles = [b for b in yaml_blocks(DOCS[component]) if re.search(r"^name: ", b, re.MULTILINE)]
    for i, doc in enumerate(docs):
        for name in env_names(doc):
            monkeypatch.setenv(name, f"doc-{name.lower()}")
        where = tmp_path / str(i)
        where.mkdir()
        kind.load_text(yaml.safe_dump(stand_in_files(doc, where, profiles)), f"{DOCS[component].name} #{i}")


def test_install_doc_values_render_valid_configs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The site values file in docs/install.md renders configs the exporters accept."""
    blocks = [
        b for b in yaml_blocks(ROOT / "docs" / "install.md") if re.search(r"^redfish:", b, re.MULTILINE)
    ]
    assert blocks, "docs/install.md: no values example with redfish"
    for i, block in enumerate(blocks):
        values = yaml.safe_load(block)
        objects = render(values)
        checked = set()
        for component, spec, container in exporter_deployments(objects):
            load_rendered(objects, component, spec, container, tmp_path / str(i), monkeypatch)
            checked.add(component)
        assert checked, f"docs/install.md block {i} enables no exporter"

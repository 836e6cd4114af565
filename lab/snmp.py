"""Simulated SNMP devices: snmpd (the net-snmp C agent) and snmpsim serving .snmprec recordings.

``Snmpd`` starts the Debian ``snmpd`` with a generated configuration (never the system one) on
127.0.0.1: a v1/v2c community and an SNMPv3 authPriv user (SHA/AES).  ``Snmpsim`` starts
snmpsim's command responder over a directory of recordings: the real APC Rack PDU walks from
the ``snmpsim-data`` package and the recordings written for this project (``lab/snmprec/``:
Raritan PDU2, ServerTech Sentry4, Vertiv/Geist V5, APC InRow RC).  The community selects the
recording (``apc-8641`` serves ``apc-8641.snmprec``).

snmpsim refuses to run as root and, after dropping privileges to ``nobody``, still imports
modules: the interpreter and every package it loads must be readable by that user.  When the
running interpreter lives somewhere ``nobody`` cannot read (a pyenv under /root), the
responder runs on the system ``python3`` of the same version with snmpsim and its pure-Python
dependencies staged, world-readable, under the temporary directory.

``snmprec_file`` helps write recordings; ``rack_demo`` (``snmp_component``) adds a rack of PDUs
and an in-row cooler to ``powerplane demo``.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import shutil
import stat
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import procs

#: Recordings written for this project, shipped beside this module.
RECORDINGS = Path(__file__).resolve().parent / "snmprec"

V3_USER = "powerplane"
V3_AUTH = "powerplane-auth-pass"
V3_PRIV = "powerplane-priv-pass"


def snmpsim_data_dir() -> Path | None:
    """The recordings of the ``snmpsim-data`` package, or None when it is not installed."""
    try:
        import snmpsim_data  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except ImportError:
        return None
    path = Path(snmpsim_data.__file__).resolve().parent / "data"
    return path if path.is_dir() else None


def apc_recording(name: str = "apc-8641") -> Path | None:
    """A real APC Rack PDU recording from snmpsim-data (``UPS/apc-8641.snmprec``)."""
    base = snmpsim_data_dir()
    if base is None:
        return None
    path = base / "UPS" / f"{name}.snmprec"
    return path if path.is_file() else None


def _wait_snmp(port: int, community: str, proc: procs.Process, timeout: float) -> None:
    from gufo.snmp.sync.client import SnmpSession

    def ready() -> bool:
        if not proc.alive():
            raise RuntimeError(f"{proc.argv[0]} exited with {proc.proc.returncode}:\n{proc.log_tail()}")
        with SnmpSession(addr="127.0.0.1", port=port, community=community, timeout=0.5) as session:
            return session.get("1.3.6.1.2.1.1.2.0") is not None

    try:
        procs.wait_until(ready, timeout, interval=0.2, what=f"SNMP agent on 127.0.0.1:{port}")
    except (RuntimeError, TimeoutError):
        proc.stop()
        raise


class Snmpd:
    """The net-snmp agent on 127.0.0.1 with a generated configuration."""

    def __init__(
        self, workdir: Path, community: str = "public", port: int | None = None, extra_config: str = ""
    ) -> None:
        self.binary = procs.find_binary("snmpd")
        if self.binary is None:
            raise FileNotFoundError("snmpd is not installed (Debian package 'snmpd')")
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.community = community
        #: Lines added to the generated snmpd.conf (e.g. ``extend`` commands serving long values).
        self.extra_config = extra_config
        self.port = port or procs.free_port()
        self.process: procs.Process | None = None

    def start(self, timeout: float = 30.0) -> Snmpd:
        persist = self.workdir / "persist"
        persist.mkdir(exist_ok=True)
        conf = self.workdir / "snmpd.conf"
        conf.write_text(
            f"rocommunity {self.community} 127.0.0.1\n"
            f'createUser {V3_USER} SHA "{V3_AUTH}" AES "{V3_PRIV}"\n'
            f"rouser {V3_USER} priv\n"
            "sysLocation powerplane lab\nsysContact lab@example.invalid\nsysServices 72\n" + self.extra_config
        )
        assert self.binary is not None
        self.process = procs.Process(
            [
                self.binary,
                "-f",
                "-C",
                "-c",
                str(conf),
                "-Lf",
                str(self.workdir / "snmpd.log"),
                "-p",
                str(self.workdir / "snmpd.pid"),
                f"udp:127.0.0.1:{self.port}",
            ],
            self.workdir / "snmpd.out",
            env={"SNMP_PERSISTENT_DIR": str(persist), "MIBS": ""},
        )
        _wait_snmp(self.port, self.community, self.process, timeout)
        return self

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    def __enter__(self) -> Snmpd:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


# --- snmpsim ---------------------------------------------------------------------------------


def _readable_by_others(path: Path) -> bool:
    """Whether ``path`` and every directory above it can be read by an unprivileged user."""
    path = path.resolve()
    for part in [path, *path.parents]:
        try:
            mode = part.stat().st_mode
        except OSError:
            return False
        need = (stat.S_IROTH | stat.S_IXOTH) if stat.S_ISDIR(mode) else stat.S_IROTH
        if mode & need != need:
            return False
    return True


def _distribution_closure(names: Iterable[str]) -> list[importlib.metadata.Distribution]:
    seen: dict[str, importlib.metadata.Distribution] = {}
    todo = list(names)
    while todo:
        name = todo.pop()
        key = name.lower().replace("_", "-")
        if key in seen:
            continue
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            continue
        seen[key] = dist
        for requirement in dist.requires or []:
            if "extra ==" in requirement:
                continue
            req = requirement.split(";")[0].strip()
            for sep in "<>=!~[ (":
                req = req.split(sep)[0]
            if req:
                todo.append(req)
    return list(seen.values())


def snmpsim_runtime() -> tuple[str, dict[str, str]]:
    """An interpreter and environment that run snmpsim's responder as ``nobody``."""
    try:
        importlib.metadata.distribution("snmpsim")
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError("snmpsim is not installed (pip install snmpsim)") from None
    dists = _distribution_closure(["snmpsim", "pysmi"])
    site_dirs = {str(Path(str(d.locate_file(""))).resolve()) for d in dists}
    interpreter_readable = _readable_by_others(Path(sys.executable)) and _readable_by_others(
        Path(sys.base_prefix) / "lib"
    )
    if interpreter_readable and all(_readable_by_others(Path(s)) for s in site_dirs):
        return sys.executable, {"PYTHONPATH": os.pathsep.join(sorted(site_dirs))}
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    interpreter = next(
        (p for p in (f"/usr/bin/{version}", f"/usr/local/bin/{version}") if os.access(p, os.X_OK)), None
    )
    if interpreter is None or not _readable_by_others(Path(interpreter)):
        raise FileNotFoundError(
            f"no {version} readable by 'nobody' to run snmpsim (install Debian's {version})"
        )
    tag = hashlib.sha256(
        "|".join(sorted(f"{d.metadata['Name']}=={d.version}" for d in dists)).encode()
    ).hexdigest()[:12]
    stage = Path(tempfile.gettempdir()) / f"powerplane-snmpsim-{tag}"
    if not (stage / ".complete").exists():
        building = Path(tempfile.mkdtemp(prefix="powerplane-snmpsim-build-"))
        for dist in dists:
            for file in dist.files or []:
                rel = Path(str(file))
                if rel.parts and (rel.parts[0] == ".." or rel.parts[0].endswith(".dist-info")):
                    continue
                if rel.suffix == ".pyc":
                    continue
                source = Path(str(dist.locate_file(file)))
                if source.is_file():
                    target = building / rel
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(source, target)
        (building / ".complete").write_text("ok\n")
        for root, dirs, files in os.walk(building):
            os.chmod(root, 0o755)
            for name in files:
                os.chmod(os.path.join(root, name), 0o644)
            del dirs  # walked by os.walk itself
        try:
            os.rename(building, stage)
        except OSError:  # another process staged it first
            shutil.rmtree(building, ignore_errors=True)
    return interpreter, {"PYTHONPATH": str(stage), "PYTHONDONTWRITEBYTECODE": "1"}


class Snmpsim:
    """snmpsim's command responder over a set of recordings, as ``nobody``, on 127.0.0.1."""

    def __init__(
        self,
        workdir: Path,
        recordings: Mapping[str, Path | str],
        port: int | None = None,
    ) -> None:
        """``recordings`` maps community → .snmprec file (or its text)."""
        self.workdir = Path(workdir)
        self.port = port or procs.free_port()
        self.recordings = dict(recordings)
        if not self.recordings:
            raise ValueError("snmpsim needs at least one recording")
        self.process: procs.Process | None = None
        self.base = Path()

    def start(self, timeout: float = 60.0) -> Snmpsim:
        interpreter, env = snmpsim_runtime()
        # Outside workdir: a private temporary directory would hide the data from nobody.
        base = Path(tempfile.mkdtemp(prefix="powerplane-snmpsim-data-"))
        data, cache = base / "data", base / "cache"
        data.mkdir()
        cache.mkdir()
        for community, source in self.recordings.items():
            target = data / f"{community}.snmprec"
            if isinstance(source, Path):
                shutil.copyfile(source, target)
            else:
                target.write_text(source)
        # The responder drops to nobody before it reads the data and writes its index.
        for path in (base, data):
            os.chmod(path, 0o755)
        os.chmod(cache, 0o777)
        for file in data.iterdir():
            os.chmod(file, 0o644)
        self.base = base
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process = procs.Process(
            [
                interpreter,
                "-c",
                "import sys; from snmpsim.commands.responder import main; sys.exit(main())",
                f"--data-dir={data}",
                f"--cache-dir={cache}",
                f"--agent-udpv4-endpoint=127.0.0.1:{self.port}",
                "--process-user=nobody",
                "--process-group=nogroup",
            ],
            self.workdir / f"snmpsim-{self.port}.log",
            cwd=base,
            env=env,
        )
        _wait_snmp(self.port, next(iter(self.recordings)), self.process, timeout)
        return self

    def replace(self, community: str, text: str) -> None:
        """Serve new readings for ``community`` while running (a device that heats up, say).

        snmpsim re-indexes a recording when its modification time (whole seconds) changes, so
        the new file gets a later one even when written within the same second.
        """
        if community not in self.recordings or self.process is None:
            raise KeyError(f"snmpsim serves no recording for community {community!r}")
        target = self.base / "data" / f"{community}.snmprec"
        previous = int(target.stat().st_mtime)
        tmp = target.with_name(f".{target.name}.new")
        tmp.write_text(text)
        os.chmod(tmp, 0o644)
        stamp = max(int(time.time()), previous + 1)
        os.utime(tmp, (stamp, stamp))
        # Atomic: the responder may be reading the old file at this moment.
        os.replace(tmp, target)
        self.recordings[community] = text

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None
            shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> Snmpsim:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


# --- recordings ------------------------------------------------------------------------------

#: snmprec type tags.
INTEGER, OCTETS, OID, COUNTER32, GAUGE32, TIMETICKS, COUNTER64 = "2", "4", "6", "65", "66", "67", "70"


@dataclass(frozen=True)
class Row:
    oid: str
    tag: str
    value: Any


def snmprec_text(rows: Sequence[Row]) -> str:
    """Recording text with rows sorted by OID (snmpsim serves them in file order)."""

    def key(row: Row) -> tuple[int, ...]:
        return tuple(int(p) for p in row.oid.split("."))

    lines = []
    for row in sorted(rows, key=key):
        if isinstance(row.value, bytes):
            lines.append(f"{row.oid}|{row.tag}x|{row.value.hex()}")
        else:
            lines.append(f"{row.oid}|{row.tag}|{row.value}")
    return "\n".join(lines) + "\n"


def _system(sys_object_id: str, descr: str, name: str) -> list[Row]:
    return [
        Row("1.3.6.1.2.1.1.1.0", OCTETS, descr),
        Row("1.3.6.1.2.1.1.2.0", OID, sys_object_id),
        Row("1.3.6.1.2.1.1.3.0", TIMETICKS, 123456),
        Row("1.3.6.1.2.1.1.5.0", OCTETS, name),
    ]


def _value(value: int, moving_fraction: float, moving: bool) -> tuple[str, Any]:
    """A reading: fixed, or (for the demo) an snmpsim numeric variation around it."""
    if not moving or value <= 0 or moving_fraction <= 0:
        return INTEGER, value
    amplitude = max(1, int(value * moving_fraction))
    return f"{INTEGER}:numeric", _sine(value, amplitude)


def _sine(base: int, amplitude: int, period_s: float = 300.0) -> str:
    rate = 2 * 3.141592653589793 / period_s
    return (
        f"min={max(0, base - amplitude)},max={base + amplitude},initial={base},"
        f"function=sin,rate={rate:.6f},scale={amplitude}"
    )


def _energy(value: int, per_second: float, moving: bool, tag: str = INTEGER) -> tuple[str, Any]:
    if not moving:
        return tag, value
    # Without a function the variation is initial + rate * seconds since start: a steady meter.
    return f"{tag}:numeric", f"min=0,initial={value},rate={per_second:.6f}"


def raritan_pdu2(moving: bool = False, outlets: int = 8) -> str:
    """A Raritan PX3 (PDU2-MIB) with one inlet and ``outlets`` metered outlets."""
    base = "1.3.6.1.4.1.13742.6"
    rows = _system(f"{base}", "Raritan PX3-5190R", "px3-rack")
    inlet = {
        1: (4, 12345),
        4: (0, 230),
        5: (0, 2840),
        8: (0, 1234567),
    }  # sensor type: (decimal digits, reading)
    for sensor, (digits, value) in inlet.items():
        rows.append(Row(f"{base}.3.3.4.1.7.1.1.{sensor}", INTEGER, digits))
        rows.append(Row(f"{base}.5.2.3.1.4.1.1.{sensor}", GAUGE32, value))
        tag, signed = (
            _energy(value, 0.8, moving) if sensor == 8 else _value(value, 0.1 if sensor == 5 else 0, moving)
        )
        rows.append(Row(f"{base}.5.2.3.1.6.1.1.{sensor}", tag, signed))
    for n in range(1, outlets + 1):
        watts = 3000 + 250 * n  # tenths of W
        rows.append(Row(f"{base}.3.5.3.1.3.1.{n}", OCTETS, f"node-{n:02d}"))
        for sensor, digits, value in ((1, 3, 1300 + 100 * n), (5, 1, watts), (8, 0, 50000 * n)):
            rows.append(Row(f"{base}.3.5.4.1.7.1.{n}.{sensor}", INTEGER, digits))
            if sensor == 8:
                tag, reading = _energy(value, watts / 10 / 3600, moving, GAUGE32)
            else:
                tag, reading = _value(value, 0.15, moving)
                tag = tag.replace(INTEGER, GAUGE32, 1)
            rows.append(Row(f"{base}.5.4.3.1.4.1.{n}.{sensor}", tag, reading))
    return snmprec_text(rows)


def servertech_sentry4(moving: bool = False, outlets: int = 8) -> str:
    """A ServerTech Sentry4 PRO2 with one unit, one input cord, three phases and outlets."""
    base = "1.3.6.1.4.1.1718.4.1"
    rows = _system("1.3.6.1.4.1.1718.4", "Sentry Switched PDU", "sentry4-rack")
    rows.append(Row(f"{base}.3.3.1.3.1.1", *_value(3120, 0.1, moving)))
    rows.append(Row(f"{base}.3.3.1.10.1.1", *_energy(45678, 3120 / 360000, moving)))
    for phase in (1, 2, 3):
        rows += [
            Row(f"{base}.5.3.1.3.1.1.{phase}", INTEGER, 2300 + phase),
            Row(f"{base}.5.3.1.6.1.1.{phase}", *_value(450 + phase, 0.1, moving)),
            Row(f"{base}.5.3.1.8.1.1.{phase}", *_value(1040, 0.1, moving)),
        ]
    for n in range(1, outlets + 1):
        rows += [
            Row(f"{base}.8.2.1.3.1.1.{n}", OCTETS, f"node-{n:02d}"),
            Row(f"{base}.8.3.1.3.1.1.{n}", *_value(150 + 10 * n, 0.1, moving)),
            Row(f"{base}.8.3.1.7.1.1.{n}", *_value(300 + 20 * n, 0.1, moving)),
            Row(f"{base}.8.3.1.14.1.1.{n}", *_energy(100000 * n, (300 + 20 * n) / 3600, moving)),
        ]
    rows += [
        Row(f"{base}.9.3.1.1.1.1", INTEGER, 245),
        Row(f"{base}.9.3.1.1.1.2", INTEGER, -1),  # no probe connected
        Row(f"{base}.10.3.1.1.1.1", INTEGER, 45),
    ]
    return snmprec_text(rows)


def vertiv_geist_v5(moving: bool = False, outlets: int = 8) -> str:
    """A Vertiv/Geist rPDU with V5 firmware: totals, three phases, outlets, internal sensor."""
    base = "1.3.6.1.4.1.21239.5"
    rows = _system(f"{base}.2", "Vertiv Geist rPDU", "geist-rack")
    rows.append(Row(f"{base}.2.3.1.1.8.1", *_value(2500, 0.1, moving)))
    rows.append(Row(f"{base}.2.3.1.1.12.1", *_energy(9876543, 2500 / 3600, moving)))
    for phase, label in ((1, "L1"), (2, "L2"), (3, "L3")):
        rows += [
            Row(f"{base}.2.3.2.1.3.1.{phase}", OCTETS, label),
            Row(f"{base}.2.3.2.1.4.1.{phase}", INTEGER, 2290 + phase),
            Row(f"{base}.2.3.2.1.6.1.{phase}", *_value(360 + phase, 0.1, moving)),
            Row(f"{base}.2.3.2.1.8.1.{phase}", *_value(830, 0.1, moving)),
        ]
    for n in range(1, outlets + 1):
        rows += [
            Row(f"{base}.2.3.5.1.3.1.{n}", OCTETS, f"node-{n:02d}"),
            Row(f"{base}.2.3.5.1.4.1.{n}", *_value(120 + 5 * n, 0.1, moving)),
            Row(f"{base}.2.3.5.1.6.1.{n}", *_value(280 + 10 * n, 0.1, moving)),
            Row(f"{base}.2.3.5.1.10.1.{n}", *_energy(200000 + n, (280 + 10 * n) / 3600, moving)),
        ]
    rows += [Row(f"{base}.1.2.2.1.5.1", INTEGER, 231), Row(f"{base}.1.2.2.1.6.1", INTEGER, 38)]
    return snmprec_text(rows)


def apc_inrow(moving: bool = False, supply_celsius: float = 18.0, return_celsius: float = 32.0) -> str:
    """An APC InRow RC (ACRC) with group status, run hours and its airIR alarm count.

    ``supply_celsius`` and ``return_celsius`` set the air temperatures (a hot cooler in tests).
    """
    unit = "1.3.6.1.4.1.318.1.1.13.3.2.2.2"
    rows = _system("1.3.6.1.4.1.318.1.3.14.5", "APC InRow RC ACRC301S", "inrow-01")
    readings = {
        2: (118, 0.2),
        3: (120, 0.2),
        5: (1250, 0.1),
        7: (224, 0.03),
        9: (round(supply_celsius * 10), 0.02),
        11: (round(return_celsius * 10), 0.03),
        16: (655, 0.1),
        24: (120, 0.0),
        26: (170, 0.02),
        27: (1, 0.0),
        1: (2, 0.0),
    }
    for column, (value, fraction) in readings.items():
        rows.append(Row(f"{unit}.{column}.0", *_value(value, fraction, moving)))
    rows += [
        Row("1.3.6.1.4.1.318.1.1.13.3.2.1.1.1.0", *_value(236, 0.2, moving)),
        Row("1.3.6.1.4.1.318.1.1.13.3.2.1.1.2.0", *_value(240, 0.2, moving)),
        Row("1.3.6.1.4.1.318.1.1.13.3.2.2.3.1.0", INTEGER, 1500),
        Row("1.3.6.1.4.1.318.1.1.13.3.2.2.3.2.0", INTEGER, 41230),
        Row("1.3.6.1.4.1.318.1.1.13.3.2.2.3.3.0", INTEGER, 41220),
        Row("1.3.6.1.4.1.318.1.1.13.3.2.2.4.1.0", INTEGER, 12),
        Row("1.3.6.1.4.1.318.1.1.13.3.1.1.0", INTEGER, 0),
    ]
    return snmprec_text(rows)


#: Project recordings: community → builder.
BUILDERS: dict[str, Callable[..., str]] = {
    "raritan-px3": raritan_pdu2,
    "sentry4": servertech_sentry4,
    "vertiv-v5": vertiv_geist_v5,
    "apc-inrow": apc_inrow,
}


def write_recordings(folder: Path = RECORDINGS) -> list[Path]:
    """(Re)write the committed static recordings (``python -m powerplane.lab.snmp``)."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for community, build in BUILDERS.items():
        path = folder / f"{community}.snmprec"
        path.write_text(build())
        written.append(path)
    return written


if __name__ == "__main__":
    for written_path in write_recordings():
        print(written_path)


async def snmp_component(ctx: Any) -> None:
    """``powerplane demo``: a rack of PDUs (APC AP8641 recording, Raritan, Sentry4, Vertiv) and an
    InRow cooler, served by snmpsim with moving readings, probed by the SNMP exporter."""
    import asyncio
    import logging

    from powerplane.exporters.runtime import log
    from powerplane.exporters.snmp.config import KIND
    from powerplane.exporters.snmp.exporter import make_server

    recordings: dict[str, Path | str] = {name: build(moving=True) for name, build in BUILDERS.items()}
    apc = apc_recording()
    if apc is not None:
        recordings["apc-8641"] = apc
    try:
        sim = Snmpsim(ctx.workdir / "snmp", recordings)
        await asyncio.to_thread(sim.start)
    except (FileNotFoundError, RuntimeError, TimeoutError) as exc:
        log(logging.getLogger("powerplane.demo"), logging.WARNING, "SNMP lab not started", cause=str(exc))
        return
    ctx.stack.callback(sim.stop)
    secrets = ctx.workdir / "snmp" / "secrets"
    secrets.mkdir(parents=True, exist_ok=True)
    auths = {}
    for community in recordings:
        (secrets / community).write_text(community)
        auths[community] = {"version": 2, "community": {"file": str(secrets / community)}}
    config = KIND.load_text(
        __import__("yaml").safe_dump({"auths": auths, "allow": ["127.0.0.1/32:*"], "timeout": 10})
    )
    address = await ctx.serve(make_server(config), "SNMP exporter (rack PDUs, InRow cooler)")
    agent = f"127.0.0.1:{sim.port}"
    # Each rack of the demo inventory is fed by one PDU, named as the inventory names it, so the
    # outlet → node and PDU → rack joins work; the project-written recordings (whose readings
    # move) go first, spare recordings keep their own names.
    from .inventory import rack_of

    racks = sorted({rack_of(i) for i in range(len(ctx.nodes))})
    pdus = sorted((c for c in recordings if "inrow" not in c), key=lambda c: (c == "apc-8641", c))
    names = {c: (f"pdu-{racks[i]}" if i < len(racks) else c) for i, c in enumerate(pdus)}
    names.update({c: c for c in recordings if "inrow" in c})
    ctx.shared["pdu_addresses"] = {names[c]: agent for c in pdus if names[c] != c}
    ctx.shared["cooler_addresses"] = {c: agent for c in recordings if "inrow" in c}
    ctx.shared["snmp_auths"] = {names[c]: c for c in recordings}
    for community in recordings:
        role = "cooler" if "inrow" in community else "pdu"
        ctx.scrape_configs.append(
            {
                "job_name": f"powerplane-snmp-{community}",
                "metrics_path": "/probe",
                "params": {"auth": [community]},
                "scrape_timeout": "4s",
                "static_configs": [{"targets": [agent], "labels": {role: names[community]}}],
                "relabel_configs": [
                    {"source_labels": ["__address__"], "target_label": "__param_target"},
                    {"target_label": "__address__", "replacement": address},
                ],
            }
        )

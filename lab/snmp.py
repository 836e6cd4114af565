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

The recording builders turn a reading (``PduReading``, ``CoolerReading`` of
``powerplane.lab.model``) into each vendor's encoding; without one they write the fixed readings
of the committed recordings.  ``snmp_component`` plays the demo's PDUs and in-row coolers with
recordings rewritten from the lab's model every second (docs/lab.md says why this way and not
with snmpsim's variation modules); the third-party APC AP8641 walk stays a parser fixture.
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
from dataclasses import dataclass, replace
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from powerplane.resources import output_dir, resource

from . import procs
from .model import ClusterModel, CoolerReading, OutletReading, PduReading, PduSpec, PhaseReading

if TYPE_CHECKING:
    from .demo import DemoContext

#: Recordings written for this project, shipped as package data (a wheel has them too).
RECORDINGS: Traversable = resource("powerplane.lab", "snmprec")

#: The recording a ``Snmpsim`` with a v3 user serves to SNMPv3 requests without a context name.
V3_RECORDING = "self"
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
    # cryptography: pysnmp's SNMPv3 privacy, an optional dependency of it (without, v3 fails).
    dists = _distribution_closure(["snmpsim", "pysmi", "cryptography"])
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
        recordings: Mapping[str, Traversable | str],
        port: int | None = None,
        v3_user: tuple[str, str, str] | None = None,
    ) -> None:
        """``recordings`` maps community → .snmprec file (a path or a shipped resource) or its text.

        ``v3_user`` (user name, SHA auth password, AES priv password) also answers SNMPv3
        authPriv: a request without a context name, as a PDU's agent gets them, reads the
        recording ``V3_RECORDING`` (snmpsim picks a v3 request's data by context name, and an
        empty one by its own engine's label).
        """
        self.workdir = Path(workdir)
        self.port = port or procs.free_port()
        self.v3_user = v3_user
        if v3_user is not None and V3_RECORDING not in recordings:
            raise ValueError(f"SNMPv3 is served from the recording {V3_RECORDING!r}; give one")
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
            if isinstance(source, str):
                target.write_text(source)
            else:
                target.write_bytes(source.read_bytes())
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
                # An engine's options (--v3-engine-id first) precede its data and endpoint.
                *self._v3_arguments(),
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
        # snmpsim serves the recording named for its own engine under the empty community.
        first = next(iter(self.recordings))
        _wait_snmp(self.port, "" if first == V3_RECORDING else first, self.process, timeout)
        return self

    def _v3_arguments(self) -> list[str]:
        if self.v3_user is None:
            return []
        user, auth_key, priv_key = self.v3_user
        return [
            "--v3-engine-id=auto",
            f"--v3-user={user}",
            f"--v3-auth-key={auth_key}",
            "--v3-auth-proto=SHA",
            f"--v3-priv-key={priv_key}",
            "--v3-priv-proto=AES",
        ]

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
_NUMERIC = {INTEGER, COUNTER32, GAUGE32, TIMETICKS, COUNTER64}


@dataclass(frozen=True)
class Row:
    oid: str
    tag: str
    value: Any


def snmprec_text(rows: Sequence[Row], width: int = 0) -> str:
    """Recording text with rows sorted by OID (snmpsim serves them in file order).

    ``width`` pads every number to that many characters, so a recording rewritten with new
    readings keeps each line at the same offset: snmpsim looks lines up by the offsets it
    indexed, and a file replaced between its indexing and its reading then still answers right.
    """

    def key(row: Row) -> tuple[int, ...]:
        return tuple(int(p) for p in row.oid.split("."))

    lines = []
    for row in sorted(rows, key=key):
        if isinstance(row.value, bytes):
            lines.append(f"{row.oid}|{row.tag}x|{row.value.hex()}")
        elif width and row.tag in _NUMERIC and isinstance(row.value, int):
            lines.append(f"{row.oid}|{row.tag}|{row.value:0{width}d}")
        else:
            lines.append(f"{row.oid}|{row.tag}|{row.value}")
    return "\n".join(lines) + "\n"


#: The width of numbers in the recordings the demo rewrites every second (snmprec_text).
LIVE_WIDTH = 12


def _system(sys_object_id: str, descr: str, name: str, uptime: int = 123456) -> list[Row]:
    return [
        Row("1.3.6.1.2.1.1.1.0", OCTETS, descr),
        Row("1.3.6.1.2.1.1.2.0", OID, sys_object_id),
        Row("1.3.6.1.2.1.1.3.0", TIMETICKS, uptime),
        Row("1.3.6.1.2.1.1.5.0", OCTETS, name),
    ]


def _scaled(value: float, scale: float) -> int:
    return round(value * scale)


def _outlets(
    watts: Callable[[int], float], amps: Callable[[int], float], wh: Callable[[int], float]
) -> tuple[OutletReading, ...]:
    return tuple(OutletReading(f"node-{n:02d}", watts(n), amps(n), wh(n)) for n in range(1, 9))


#: The readings of the committed recordings (lab/snmprec/): fixed, for the profile tests.
STATIC_READINGS: dict[str, PduReading | CoolerReading] = {
    "raritan-px3": PduReading(
        2840.0, 1234567.0, (PhaseReading("1", 230.0, 1.2345, 2840.0),),
        _outlets(lambda n: (3000 + 250 * n) / 10, lambda n: (1300 + 100 * n) / 1000, lambda n: 50000.0 * n),
    ),
    "sentry4": PduReading(
        3120.0, 4567800.0,
        tuple(PhaseReading(str(p), (2300 + p) / 10, (450 + p) / 100, 1040.0) for p in (1, 2, 3)),
        _outlets(lambda n: 300.0 + 20 * n, lambda n: (150 + 10 * n) / 100, lambda n: 100000.0 * n),
        (24.5, None), (0.45,),
    ),
    "vertiv-v5": PduReading(
        2500.0, 9876543.0,
        tuple(PhaseReading(f"L{p}", (2290 + p) / 10, (360 + p) / 100, 830.0) for p in (1, 2, 3)),
        _outlets(lambda n: 280.0 + 10 * n, lambda n: (120 + 5 * n) / 100, lambda n: 200000.0 + n),
        (23.1,), (0.38,),
    ),
    "apc-inrow": CoolerReading(
        11800.0, 12000.0, 1.25, 0.655, 22.4, 18.0, 32.0, 12.0, 17.0, 0.452, False, 23600.0, 24000.0
    ),
}  # fmt: skip


def raritan_pdu2(
    reading: PduReading | None = None, name: str = "px3-rack", width: int = 0, uptime: int = 123456
) -> str:
    """A Raritan PX3 (PDU2-MIB): one inlet and metered outlets, each reading with its decimal digits."""
    r = reading or STATIC_READINGS["raritan-px3"]
    assert isinstance(r, PduReading)
    base = "1.3.6.1.4.1.13742.6"
    rows = _system(base, "Raritan PX3-5190R", name, uptime)
    phase = r.phases[0]
    # sensor type: (decimal digits, reading) - 1 rmsCurrent, 4 rmsVoltage, 5 activePower, 8 activeEnergy
    inlet = {1: (4, phase.amps), 4: (0, phase.volts), 5: (0, r.watts), 8: (0, r.wh)}
    for sensor, (digits, value) in inlet.items():
        encoded = _scaled(value, 10**digits)
        rows.append(Row(f"{base}.3.3.4.1.7.1.1.{sensor}", INTEGER, digits))
        rows.append(Row(f"{base}.5.2.3.1.4.1.1.{sensor}", GAUGE32, encoded))
        rows.append(Row(f"{base}.5.2.3.1.6.1.1.{sensor}", INTEGER, encoded))
    for n, outlet in enumerate(r.outlets, start=1):
        rows.append(Row(f"{base}.3.5.3.1.3.1.{n}", OCTETS, outlet.name))
        for sensor, digits, value in ((1, 3, outlet.amps), (5, 1, outlet.watts), (8, 0, outlet.wh)):
            rows.append(Row(f"{base}.3.5.4.1.7.1.{n}.{sensor}", INTEGER, digits))
            rows.append(Row(f"{base}.5.4.3.1.4.1.{n}.{sensor}", GAUGE32, _scaled(value, 10**digits)))
    return snmprec_text(rows, width)


def _sensor(value: float | None, scale: float) -> int:
    return -1 if value is None else _scaled(value, scale)  # -1: no probe connected


def servertech_sentry4(
    reading: PduReading | None = None, name: str = "sentry4-rack", width: int = 0, uptime: int = 123456
) -> str:
    """A ServerTech Sentry4 PRO2: one unit and input cord, its phases, outlets and sensors."""
    r = reading or STATIC_READINGS["sentry4"]
    assert isinstance(r, PduReading)
    base = "1.3.6.1.4.1.1718.4.1"
    rows = _system("1.3.6.1.4.1.1718.4", "Sentry Switched PDU", name, uptime)
    rows.append(Row(f"{base}.3.3.1.3.1.1", INTEGER, _scaled(r.watts, 1)))
    rows.append(Row(f"{base}.3.3.1.10.1.1", INTEGER, _scaled(r.wh, 0.01)))  # tenths of kWh
    for p, phase in enumerate(r.phases, start=1):
        rows += [
            Row(f"{base}.5.3.1.3.1.1.{p}", INTEGER, _scaled(phase.volts, 10)),
            Row(f"{base}.5.3.1.6.1.1.{p}", INTEGER, _scaled(phase.amps, 100)),
            Row(f"{base}.5.3.1.8.1.1.{p}", INTEGER, _scaled(phase.watts, 1)),
        ]
    for n, outlet in enumerate(r.outlets, start=1):
        rows += [
            Row(f"{base}.8.2.1.3.1.1.{n}", OCTETS, outlet.name),
            Row(f"{base}.8.3.1.3.1.1.{n}", INTEGER, _scaled(outlet.amps, 100)),
            Row(f"{base}.8.3.1.7.1.1.{n}", INTEGER, _scaled(outlet.watts, 1)),
            Row(f"{base}.8.3.1.14.1.1.{n}", INTEGER, _scaled(outlet.wh, 1)),
        ]
    rows += [Row(f"{base}.9.3.1.1.1.{k}", INTEGER, _sensor(t, 10)) for k, t in enumerate(r.temperatures, 1)]
    rows += [Row(f"{base}.10.3.1.1.1.{k}", INTEGER, _sensor(h, 100)) for k, h in enumerate(r.humidities, 1)]
    return snmprec_text(rows, width)


def vertiv_geist_v5(
    reading: PduReading | None = None, name: str = "geist-rack", width: int = 0, uptime: int = 123456
) -> str:
    """A Vertiv/Geist rPDU with V5 firmware: totals, phases, outlets and its internal sensor."""
    r = reading or STATIC_READINGS["vertiv-v5"]
    assert isinstance(r, PduReading)
    base = "1.3.6.1.4.1.21239.5"
    rows = _system(f"{base}.2", "Vertiv Geist rPDU", name, uptime)
    rows.append(Row(f"{base}.2.3.1.1.8.1", INTEGER, _scaled(r.watts, 1)))
    rows.append(Row(f"{base}.2.3.1.1.12.1", INTEGER, _scaled(r.wh, 1)))
    for p, phase in enumerate(r.phases, start=1):
        rows += [
            Row(f"{base}.2.3.2.1.3.1.{p}", OCTETS, phase.label),
            Row(f"{base}.2.3.2.1.4.1.{p}", INTEGER, _scaled(phase.volts, 10)),
            Row(f"{base}.2.3.2.1.6.1.{p}", INTEGER, _scaled(phase.amps, 100)),
            Row(f"{base}.2.3.2.1.8.1.{p}", INTEGER, _scaled(phase.watts, 1)),
        ]
    for n, outlet in enumerate(r.outlets, start=1):
        rows += [
            Row(f"{base}.2.3.5.1.3.1.{n}", OCTETS, outlet.name),
            Row(f"{base}.2.3.5.1.4.1.{n}", INTEGER, _scaled(outlet.amps, 100)),
            Row(f"{base}.2.3.5.1.6.1.{n}", INTEGER, _scaled(outlet.watts, 1)),
            Row(f"{base}.2.3.5.1.10.1.{n}", INTEGER, _scaled(outlet.wh, 1)),
        ]
    rows += [
        Row(f"{base}.1.2.2.1.5.1", INTEGER, _sensor(r.temperatures[0] if r.temperatures else None, 10)),
        Row(f"{base}.1.2.2.1.6.1", INTEGER, _sensor(r.humidities[0] if r.humidities else None, 100)),
    ]
    return snmprec_text(rows, width)


def apc_inrow(
    reading: CoolerReading | None = None,
    supply_celsius: float | None = None,
    return_celsius: float | None = None,
    name: str = "inrow-01",
    width: int = 0,
    uptime: int = 123456,
) -> str:
    """An APC InRow RC (ACRC) with group status, run hours and its airIR alarm count.

    ``supply_celsius`` and ``return_celsius`` change those air temperatures (a hot cooler in tests).
    """
    r = reading or STATIC_READINGS["apc-inrow"]
    assert isinstance(r, CoolerReading)
    if supply_celsius is not None:
        r = replace(r, supply_c=supply_celsius)
    if return_celsius is not None:
        r = replace(r, return_c=return_celsius)
    unit = "1.3.6.1.4.1.318.1.1.13.3.2.2.2"
    rows = _system("1.3.6.1.4.1.318.1.3.14.5", "APC InRow RC ACRC301S", name, uptime)
    columns = {
        2: _scaled(r.output_w, 0.01),  # tenths of kW
        3: _scaled(r.demand_w, 0.01),
        5: _scaled(r.airflow_m3s, 1000),  # L/s
        7: _scaled(r.rack_inlet_c, 10),
        9: _scaled(r.supply_c, 10),
        11: _scaled(r.return_c, 10),
        16: _scaled(r.fan_ratio, 1000),  # tenths of %
        24: _scaled(r.fluid_in_c, 10),
        26: _scaled(r.fluid_out_c, 10),
        27: 2 if r.leak else 1,
        1: 2,  # operating mode: on
    }
    rows += [Row(f"{unit}.{column}.0", INTEGER, value) for column, value in columns.items()]
    rows += [
        Row("1.3.6.1.4.1.318.1.1.13.3.2.1.1.1.0", INTEGER, _scaled(r.group_output_w, 0.01)),
        Row("1.3.6.1.4.1.318.1.1.13.3.2.1.1.2.0", INTEGER, _scaled(r.group_demand_w, 0.01)),
        Row("1.3.6.1.4.1.318.1.1.13.3.2.2.3.1.0", INTEGER, 1500),  # run hours: air filter, fan 1, fan 2
        Row("1.3.6.1.4.1.318.1.1.13.3.2.2.3.2.0", INTEGER, 41230),
        Row("1.3.6.1.4.1.318.1.1.13.3.2.2.3.3.0", INTEGER, 41220),
        Row("1.3.6.1.4.1.318.1.1.13.3.2.2.4.1.0", INTEGER, 12),  # air filter service interval
        Row("1.3.6.1.4.1.318.1.1.13.3.1.1.0", INTEGER, 0),  # active alarms
    ]
    return snmprec_text(rows, width)


#: Project recordings: community → builder.
BUILDERS: dict[str, Callable[..., str]] = {
    "raritan-px3": raritan_pdu2,
    "sentry4": servertech_sentry4,
    "vertiv-v5": vertiv_geist_v5,
    "apc-inrow": apc_inrow,
}


def write_recordings(folder: Path | None = None) -> list[Path]:
    """(Re)write the committed static recordings (``python -m powerplane.lab.snmp``).

    Into ``folder``, else into the checkout's lab/snmprec/; never into an installed package.
    """
    folder = output_dir(folder, "lab/snmprec", "writing the lab's SNMP recordings")
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


def live_recordings(model: ClusterModel) -> dict[str, Callable[[], str]]:
    """Device name → a function writing its recording from the model's latest readings."""

    def uptime() -> int:
        return 123456 + int(model.snapshot.t * 100)

    def pdu(spec: PduSpec) -> Callable[[], str]:
        build = BUILDERS[spec.vendor]
        return lambda: build(
            model.snapshot.pdus[spec.name], name=spec.name, width=LIVE_WIDTH, uptime=uptime()
        )

    def cooler(name: str) -> Callable[[], str]:
        return lambda: apc_inrow(model.snapshot.coolers[name], name=name, width=LIVE_WIDTH, uptime=uptime())

    devices = {spec.name: pdu(spec) for spec in model.layout.pdus}
    devices.update({spec.name: cooler(spec.name) for spec in model.layout.coolers})
    return devices


async def _rewrite_every_second(sim: Snmpsim, devices: Mapping[str, Callable[[], str]]) -> None:
    import asyncio
    import logging

    from powerplane.exporters.runtime import log

    def rewrite() -> None:
        for name, build in devices.items():
            sim.replace(name, build())

    while True:
        # On the second: snmpsim tells versions apart by their whole-second modification time.
        await asyncio.sleep(1.0 - time.time() % 1.0)
        try:
            await asyncio.to_thread(rewrite)
        except OSError as exc:  # a full disk, say: keep serving the last readings
            log(
                logging.getLogger("powerplane.demo"),
                logging.WARNING,
                "SNMP recordings not rewritten",
                cause=str(exc),
            )


async def snmp_component(ctx: DemoContext) -> None:
    """``powerplane demo``: the racks' A/B-feed PDUs (Raritan, Sentry4, Vertiv) and in-row coolers,
    played by snmpsim from recordings rewritten every second from the lab's model, and the SNMP
    exporter probing them."""
    import asyncio
    import contextlib
    import logging

    import yaml

    from powerplane.exporters.runtime import log
    from powerplane.exporters.snmp.config import KIND
    from powerplane.exporters.snmp.exporter import make_server

    model = ctx.cluster()
    devices = live_recordings(model)
    try:
        sim = Snmpsim(
            ctx.workdir / "snmp", {name: build() for name, build in devices.items()}, port=ctx.port()
        )
        await asyncio.to_thread(sim.start)
    except (FileNotFoundError, RuntimeError, TimeoutError) as exc:
        log(logging.getLogger("powerplane.demo"), logging.WARNING, "SNMP lab not started", cause=str(exc))
        return
    ctx.stack.callback(sim.stop)
    rewriter = asyncio.ensure_future(_rewrite_every_second(sim, devices))

    async def stop_rewriting() -> None:
        rewriter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await rewriter

    ctx.stack.push_async_callback(stop_rewriting)
    secrets = ctx.workdir / "snmp" / "secrets"
    secrets.mkdir(parents=True, exist_ok=True)
    auths = {}
    for name in devices:
        (secrets / name).write_text(name)
        auths[name] = {"version": 2, "community": {"file": str(secrets / name)}}
    config = KIND.load_text(yaml.safe_dump({"auths": auths, "allow": ["127.0.0.1/32:*"], "timeout": 10}))
    address = await ctx.serve(make_server(config), "SNMP exporter (PDUs, in-row coolers)")
    agent = f"127.0.0.1:{sim.port}"
    ctx.shared["pdu_addresses"] = {spec.name: agent for spec in model.layout.pdus}
    ctx.shared["cooler_addresses"] = {spec.name: agent for spec in model.layout.coolers}
    ctx.shared["snmp_auths"] = {name: name for name in devices}
    for job, role, names in (
        ("powerplane-snmp-pdu", "pdu", [spec.name for spec in model.layout.pdus]),
        ("powerplane-snmp-cooler", "cooler", [spec.name for spec in model.layout.coolers]),
    ):
        ctx.scrape_configs.append(
            {
                "job_name": job,
                "metrics_path": "/probe",
                "scrape_timeout": "4s",
                # One agent plays every device; the community (auth) picks the device.
                "static_configs": [
                    {"targets": [agent], "labels": {role: name, "__param_auth": name}} for name in names
                ],
                "relabel_configs": [
                    {"source_labels": ["__address__"], "target_label": "__param_target"},
                    {"source_labels": ["__param_auth"], "target_label": "instance"},
                    {"target_label": "__address__", "replacement": address},
                ],
            }
        )

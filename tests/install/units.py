"""Reading the shipped systemd units the way systemd does, for the install tests."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SYSTEMD = ROOT / "deploy" / "systemd"


@dataclass(frozen=True)
class Unit:
    path: Path
    #: section → [(key, value)], in file order (systemd keys repeat: SystemCallFilter=, ...).
    sections: dict[str, list[tuple[str, str]]]

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def instance_name(self) -> str:
        """The unit as started: a template's default instance."""
        return self.name.replace("@.", "@default.")

    def values(self, key: str, section: str = "Service") -> list[str]:
        return [v for k, v in self.sections.get(section, []) if k == key]

    def value(self, key: str, section: str = "Service") -> str | None:
        found = self.values(key, section)
        return found[-1] if found else None

    def environment(self) -> dict[str, str]:
        env: dict[str, str] = {}
        for assignment in self.values("Environment"):
            for word in shlex.split(assignment):
                key, _, value = word.partition("=")
                env[key] = value
        return env

    def command(self, key: str = "ExecStart", node: str = "node-1") -> list[str]:
        """The command line with its defaults filled in, as systemd would run it."""
        (line,) = self.values(key)
        line = line.lstrip("-+!@:")
        env = self.environment()
        line = line.replace("%i", "default").replace("%l", node)
        words = []
        for word in shlex.split(line):
            if word.startswith("$") and not word.startswith("${"):
                words += env.get(word[1:], "").split()  # $VAR: split into words, may vanish
                continue
            words.append(re.sub(r"\$\{(\w+)\}", lambda m: env.get(m.group(1), ""), word))
        return words


def parse(path: Path) -> Unit:
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    text = re.sub(r"\\\n\s*", " ", path.read_text())  # continuation lines
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        assert current is not None, f"{path.name}: {line!r} outside a section"
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not key=value: {line!r}"
        current.append((key.strip(), value.strip()))
    return Unit(path, sections)


def units() -> list[Unit]:
    return [parse(p) for p in sorted(SYSTEMD.glob("*.service")) + sorted(SYSTEMD.glob("*.path"))]


def services() -> list[Unit]:
    return [u for u in units() if u.name.endswith(".service")]

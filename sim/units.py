"""systemd unit files as a simulated VPS reads them: the `[Unit]`/`[Service]` keys it acts on."""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field

#: systemd's defaults (`man systemd.service`, `man systemd.unit`).
DEFAULT_RESTART_SEC = 0.1
DEFAULT_START_LIMIT_INTERVAL = 10.0
DEFAULT_START_LIMIT_BURST = 5
_TIME_UNITS = {"": 1.0, "s": 1.0, "sec": 1.0, "ms": 0.001, "min": 60.0, "m": 60.0, "h": 3600.0}
_SPAN = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]*)")


def parse_timespan(text: str, default: float) -> float:
    """`10`, `10s`, `500ms`, `2min 5s` -> seconds; anything else gives `default`."""
    total, matched = 0.0, False
    for number, unit in _SPAN.findall(text.strip().lower()):
        if unit not in _TIME_UNITS:
            return default
        total += float(number) * _TIME_UNITS[unit]
        matched = True
    return total if matched else default


def _environment(value: str) -> dict[str, str]:
    # `Environment="A=1" B=2`: quoted words, each one assignment.
    try:
        words = shlex.split(value)
    except ValueError:
        return {}
    pairs = (word.partition("=") for word in words)
    return {key: val for key, sep, val in pairs if sep and key}


@dataclass
class UnitFile:
    """What a service unit says.

    Attributes:
        path: where it was found.
        exec_start: ExecStart's argv (its `-@:+!` prefixes dropped).
        user: `User=`, None for root.
        working_directory: `WorkingDirectory=`.
        environment: `Environment=` assignments.
        environment_files: `EnvironmentFile=` paths, with whether they are optional (`-`).
    """

    path: str
    description: str = ""
    exec_start: list[str] = field(default_factory=list)
    user: str | None = None
    working_directory: str | None = None
    environment: dict[str, str] = field(default_factory=dict)
    environment_files: list[tuple[str, bool]] = field(default_factory=list)
    restart: str = "no"
    restart_sec: float = DEFAULT_RESTART_SEC
    start_limit_interval: float = DEFAULT_START_LIMIT_INTERVAL
    start_limit_burst: int = DEFAULT_START_LIMIT_BURST

    @property
    def exec_line(self) -> str:
        """ExecStart as `systemctl status` shows it."""
        return " ".join(self.exec_start)


def _exec_start(unit: UnitFile, value: str) -> None:
    # `-@:+!` prefixes change how systemd runs it, not what it runs.
    try:
        unit.exec_start = shlex.split(value.lstrip("-@:+!"))
    except ValueError:
        unit.exec_start = [value]


def _set_burst(unit: UnitFile, value: str) -> None:
    if value.isdigit():
        unit.start_limit_burst = int(value)


def _set_limit_interval(unit: UnitFile, value: str) -> None:
    unit.start_limit_interval = parse_timespan(value, DEFAULT_START_LIMIT_INTERVAL)


_KEYS: dict[str, Callable[[UnitFile, str], None]] = {
    "Description": lambda unit, value: setattr(unit, "description", value),
    "ExecStart": _exec_start,
    "User": lambda unit, value: setattr(unit, "user", value or None),
    "WorkingDirectory": lambda unit, value: setattr(unit, "working_directory", value or None),
    "Environment": lambda unit, value: unit.environment.update(_environment(value)),
    "EnvironmentFile": lambda unit, value: unit.environment_files.append(
        (value.lstrip("-"), value.startswith("-"))
    ),
    "Restart": lambda unit, value: setattr(unit, "restart", value),
    "RestartSec": lambda unit, value: setattr(
        unit, "restart_sec", parse_timespan(value, DEFAULT_RESTART_SEC)
    ),
    "StartLimitIntervalSec": _set_limit_interval,
    "StartLimitInterval": _set_limit_interval,
    "StartLimitBurst": _set_burst,
}


def parse_unit(path: str, text: str) -> UnitFile:
    """Read the keys the simulator acts on; unknown keys and sections are ignored."""
    unit = UnitFile(path)
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, sep, value = line.partition("=")
        apply = _KEYS.get(key.strip())
        if sep and apply is not None and value.strip():
            apply(unit, value.strip())
    return unit

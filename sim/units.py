"""systemd unit files as a simulated VPS reads them: the keys it acts on, section by section.

A key counts only in its own section (`[Unit]`, `[Service]`, `[Timer]`,
`[Install]`), as systemd reads it; anything else is ignored. Time spans
follow `systemd.time(7)` (`30`, `30s`, `1min`, `2min 5s`, `500ms`, `1h`): a
value systemd cannot parse is ignored with its warning, kept in
`UnitFile.warnings` for the journal.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field

#: systemd's defaults (`man systemd.service`, `man systemd.unit`, `man systemd.timer`).
DEFAULT_RESTART_SEC = 0.1
DEFAULT_START_LIMIT_INTERVAL = 10.0
DEFAULT_START_LIMIT_BURST = 5
DEFAULT_ACCURACY_SEC = 60.0
#: `systemd.time(7)`: each unit's length in seconds (a bare number is seconds).
_SPAN_UNITS: dict[str, float] = {
    **dict.fromkeys(("us", "usec", "µs"), 1e-6),
    **dict.fromkeys(("ms", "msec"), 1e-3),
    **dict.fromkeys(("", "s", "sec", "second", "seconds"), 1.0),
    **dict.fromkeys(("m", "min", "minute", "minutes"), 60.0),
    **dict.fromkeys(("h", "hr", "hour", "hours"), 3600.0),
    **dict.fromkeys(("d", "day", "days"), 86400.0),
    **dict.fromkeys(("w", "week", "weeks"), 604800.0),
    **dict.fromkeys(("M", "month", "months"), 2629800.0),
    **dict.fromkeys(("y", "year", "years"), 31557600.0),
}
_SPAN_PART = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-zµ]*)")
#: Timer settings and the starting point each counts from (`man systemd.timer`).
TIMER_BASES = {
    "OnActiveSec": "active",
    "OnBootSec": "boot",
    "OnStartupSec": "startup",
    "OnUnitActiveSec": "unit_active",
    "OnUnitInactiveSec": "unit_inactive",
}


def parse_span(text: str) -> float | None:
    """A systemd time span in seconds, or None when systemd would refuse it."""
    text = text.strip()
    if not text:
        return None
    total, position = 0.0, 0
    while position < len(text):
        part = _SPAN_PART.match(text, position)
        if part is None or part.end() == position or part[2] not in _SPAN_UNITS:
            return None
        total += float(part[1]) * _SPAN_UNITS[part[2]]
        position = part.end()
        while position < len(text) and text[position].isspace():
            position += 1
    return total


def parse_timespan(text: str, default: float) -> float:
    """`10`, `10s`, `500ms`, `2min 5s` -> seconds; anything else gives `default`."""
    seconds = parse_span(text)
    return default if seconds is None else seconds


def span_text(seconds: float) -> str:
    """systemd's way of printing a span (`30s`, `1min`, `1min 30s`, `100ms`)."""
    if seconds == 0:
        return "0"
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    minutes, rest = divmod(seconds, 60)
    if not minutes:
        return f"{rest:g}s"
    hours, minutes = divmod(int(minutes), 60)
    parts = [f"{hours}h"] if hours else []
    parts += [f"{minutes}min"] if minutes else []
    parts += [f"{rest:g}s"] if rest else []
    return " ".join(parts)


def _environment(value: str) -> dict[str, str]:
    # `Environment="A=1" B=2`: quoted words, each one assignment.
    try:
        words = shlex.split(value)
    except ValueError:
        return {}
    pairs = (word.partition("=") for word in words)
    return {key: val for key, sep, val in pairs if sep and key}


@dataclass
class TimerSpec:
    """What a `[Timer]` section says.

    Attributes:
        values: (base, seconds) pairs, base one of `TIMER_BASES`' values.
        accuracy: `AccuracySec=` (systemd coalesces wake-ups within it; 1 min by default).
        unit: `Unit=`, the unit it activates (default: the same name, `.service`).
        calendar: `OnCalendar=` expressions (not simulated: they never elapse here).
    """

    values: list[tuple[str, float]] = field(default_factory=list)
    accuracy: float = DEFAULT_ACCURACY_SEC
    unit: str | None = None
    calendar: list[str] = field(default_factory=list)


@dataclass
class UnitFile:
    """What a unit file says.

    Attributes:
        path: where it was found.
        type: the service's `Type=` (`simple`, `oneshot`...).
        exec_start: ExecStart's argv (its `-@:+!` prefixes dropped).
        user: `User=`, None for root.
        working_directory: `WorkingDirectory=`.
        environment: `Environment=` assignments.
        environment_files: `EnvironmentFile=` paths, with whether they are optional (`-`).
        timer: the `[Timer]` section of a timer unit.
        wanted_by: `[Install]`'s `WantedBy=`/`RequiredBy=` targets (none: it cannot be enabled).
        warnings: what systemd would log about values it ignored.
    """

    path: str
    description: str = ""
    type: str = "simple"
    exec_start: list[str] = field(default_factory=list)
    user: str | None = None
    working_directory: str | None = None
    environment: dict[str, str] = field(default_factory=dict)
    environment_files: list[tuple[str, bool]] = field(default_factory=list)
    restart: str = "no"
    restart_sec: float = DEFAULT_RESTART_SEC
    remain_after_exit: bool = False
    start_limit_interval: float = DEFAULT_START_LIMIT_INTERVAL
    start_limit_burst: int = DEFAULT_START_LIMIT_BURST
    timer: TimerSpec | None = None
    wanted_by: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The unit's name (`rachel8.service`)."""
        return posixpath.basename(self.path)

    @property
    def exec_line(self) -> str:
        """ExecStart as `systemctl status` shows it."""
        return " ".join(self.exec_start)

    @property
    def triggers(self) -> str:
        """The unit a timer activates: `Unit=`, else its own name with `.service`."""
        spec = self.timer or TimerSpec()
        return spec.unit or self.name.rsplit(".", 1)[0] + ".service"


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


def _timer(unit: UnitFile) -> TimerSpec:
    if unit.timer is None:
        unit.timer = TimerSpec()
    return unit.timer


def _timer_value(key: str) -> Callable[[UnitFile, str], None]:
    def apply(unit: UnitFile, value: str) -> None:
        seconds = parse_span(value)
        if seconds is None:
            unit.warnings.append(f"Failed to parse timer value, ignoring: {value}")
            return
        _timer(unit).values.append((TIMER_BASES[key], seconds))

    return apply


def _accuracy(unit: UnitFile, value: str) -> None:
    seconds = parse_span(value)
    if seconds is None:
        unit.warnings.append(f"Failed to parse accuracy, ignoring: {value}")
        return
    _timer(unit).accuracy = seconds


def _timer_unit(unit: UnitFile, value: str) -> None:
    if value.endswith(".timer") or "." not in value:
        unit.warnings.append(f"Unit type not valid, ignoring: {value}")
        return
    _timer(unit).unit = value


def _set(name: str) -> Callable[[UnitFile, str], None]:
    return lambda unit, value: setattr(unit, name, value)


_UNIT_KEYS: dict[str, Callable[[UnitFile, str], None]] = {
    "Description": _set("description"),
    "StartLimitIntervalSec": _set_limit_interval,
    "StartLimitInterval": _set_limit_interval,
    "StartLimitBurst": _set_burst,
}
_SERVICE_KEYS: dict[str, Callable[[UnitFile, str], None]] = {
    "Type": _set("type"),
    "ExecStart": _exec_start,
    "User": lambda unit, value: setattr(unit, "user", value or None),
    "WorkingDirectory": lambda unit, value: setattr(unit, "working_directory", value or None),
    "Environment": lambda unit, value: unit.environment.update(_environment(value)),
    "EnvironmentFile": lambda unit, value: unit.environment_files.append(
        (value.lstrip("-"), value.startswith("-"))
    ),
    "Restart": _set("restart"),
    "RestartSec": lambda unit, value: setattr(
        unit, "restart_sec", parse_timespan(value, DEFAULT_RESTART_SEC)
    ),
    "RemainAfterExit": lambda unit, value: setattr(
        unit, "remain_after_exit", value.lower() in ("yes", "true", "on", "1")
    ),
    # Accepted in [Service] too, as older units have them there.
    "StartLimitInterval": _set_limit_interval,
    "StartLimitBurst": _set_burst,
}
_TIMER_KEYS: dict[str, Callable[[UnitFile, str], None]] = {
    **{key: _timer_value(key) for key in TIMER_BASES},
    "AccuracySec": _accuracy,
    "Unit": _timer_unit,
    "OnCalendar": lambda unit, value: _timer(unit).calendar.append(value),
}
_INSTALL_KEYS: dict[str, Callable[[UnitFile, str], None]] = {
    "WantedBy": lambda unit, value: unit.wanted_by.extend(value.split()),
    "RequiredBy": lambda unit, value: unit.wanted_by.extend(value.split()),
}
#: The sections each kind of unit has; another kind's section is ignored, as systemd does.
_SECTIONS = {
    "service": {"Unit": _UNIT_KEYS, "Service": _SERVICE_KEYS, "Install": _INSTALL_KEYS},
    "timer": {"Unit": _UNIT_KEYS, "Timer": _TIMER_KEYS, "Install": _INSTALL_KEYS},
}


def parse_unit(path: str, text: str) -> UnitFile:
    """Read the keys the simulator acts on, each in its own section; the rest is ignored."""
    unit = UnitFile(path)
    kind = "timer" if path.endswith(".timer") else "service"
    if kind == "timer":
        unit.timer = TimerSpec()
    keys: dict[str, Callable[[UnitFile, str], None]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            keys = _SECTIONS[kind].get(line[1:-1].strip(), {})
            continue
        key, sep, value = line.partition("=")
        apply = keys.get(key.strip())
        if sep and apply is not None and value.strip():
            apply(unit, value.strip())
    return unit

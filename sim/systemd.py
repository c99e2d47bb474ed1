"""The slice of systemd a simulated VPS emulates: units the control plane restarts.

`restart` succeeds only when the unit file exists and every non-optional
`EnvironmentFile=` it names exists, which is what makes a real restart of
Rachel8 fail when the secrets file was not written. Exit codes and messages
follow systemctl's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sim.rootfs import PathEscape, RootFs

UNIT_DIRS = ("/etc/systemd/system", "/lib/systemd/system", "/usr/lib/systemd/system")
_ACTIONS = ("start", "restart", "try-restart", "reload-or-restart")


@dataclass
class Result:
    """What a command printed and its exit status."""

    exit_status: int = 0
    stdout: str = ""
    stderr: str = ""


def unit_name(name: str) -> str:
    """`rachel8` -> `rachel8.service`; names with a unit suffix are kept."""
    return name if "." in name else f"{name}.service"


@dataclass
class Systemd:
    """Unit states of one VPS.

    Attributes:
        states: unit -> `active`, `failed` or `inactive`.
        enabled: units enabled with `systemctl enable`.
    """

    fs: RootFs
    states: dict[str, str] = field(default_factory=dict)
    enabled: set[str] = field(default_factory=set)

    def _unit_file(self, unit: str) -> str | None:
        for directory in UNIT_DIRS:
            path = f"{directory}/{unit}"
            try:
                if self.fs.real(path, "/").is_file():
                    return path
            except PathEscape:
                return None
        return None

    def _missing_environment_files(self, unit_path: str) -> list[str]:
        missing = []
        text = self.fs.real(unit_path, "/").read_text(errors="replace")
        for line in text.splitlines():
            key, sep, value = line.strip().partition("=")
            if not sep or key.strip() != "EnvironmentFile":
                continue
            value = value.strip()
            # A leading "-" makes the file optional, as in systemd.
            if not value or value.startswith("-"):
                continue
            try:
                exists = self.fs.real(value, "/").is_file()
            except PathEscape:
                exists = False
            if not exists:
                missing.append(value)
        return missing

    def start(self, verb: str, name: str) -> Result:
        """`systemctl start|restart <unit>`."""
        unit = unit_name(name)
        path = self._unit_file(unit)
        if path is None:
            return Result(5, stderr=f"Failed to {verb} {unit}: Unit {unit} not found.\n")
        missing = self._missing_environment_files(path)
        if missing:
            self.states[unit] = "failed"
            return Result(
                1,
                stderr=(
                    f"Job for {unit} failed because the control process exited with error code.\n"
                    f'See "systemctl status {unit}" and "journalctl -xeu {unit}" for details.\n'
                    f"(simulated: failed to load environment files: {', '.join(missing)})\n"
                ),
            )
        self.states[unit] = "active"
        return Result(0)

    def stop(self, name: str) -> Result:
        """`systemctl stop <unit>`."""
        unit = unit_name(name)
        if self._unit_file(unit) is None and unit not in self.states:
            return Result(5, stderr=f"Failed to stop {unit}: Unit {unit} not loaded.\n")
        self.states[unit] = "inactive"
        return Result(0)

    def is_active(self, names: list[str]) -> Result:
        """`systemctl is-active <unit>...`: prints each state; 0 only if all are active."""
        states = [self.states.get(unit_name(n), "inactive") for n in names]
        ok = all(s == "active" for s in states)
        return Result(0 if ok else 3, stdout="".join(f"{s}\n" for s in states))

    def enable(self, names: list[str], now: bool) -> Result:
        """`systemctl enable [--now] <unit>...`."""
        for name in names:
            unit = unit_name(name)
            if self._unit_file(unit) is None:
                return Result(
                    1, stderr=f"Failed to enable unit: Unit file {unit} does not exist.\n"
                )
            self.enabled.add(unit)
            if now:
                started = self.start("start", unit)
                if started.exit_status:
                    return started
        return Result(0)

    def _each(self, units: list[str], run: Callable[[str], Result]) -> Result:
        for unit in units:
            result = run(unit)
            if result.exit_status:
                return result
        return Result(0)

    def _is_enabled(self, units: list[str]) -> Result:
        states = ["enabled" if unit_name(u) in self.enabled else "disabled" for u in units]
        ok = all(s == "enabled" for s in states)
        return Result(0 if ok else 1, stdout="".join(f"{s}\n" for s in states))

    def _status(self, units: list[str]) -> Result:
        unit = unit_name(units[0])
        state = self.states.get(unit, "inactive")
        return Result(0 if state == "active" else 3, stdout=f"{unit}\n   Active: {state}\n")

    def _disable(self, units: list[str]) -> Result:
        self.enabled.difference_update(unit_name(u) for u in units)
        return Result(0)

    def _starter(self, verb: str) -> Callable[[list[str]], Result]:
        return lambda units: self._each(units, lambda unit: self.start(verb, unit))

    def systemctl(self, args: list[str]) -> Result:
        """Run `systemctl` with `args` (options may come anywhere)."""
        flags = {a for a in args if a.startswith("-")}
        words = [a for a in args if not a.startswith("-")]
        if not words:
            return Result(1, stderr="systemctl: a command is required (simulated systemctl)\n")
        verb, units = words[0], words[1:]
        if verb == "daemon-reload":
            return Result(0)
        verbs: dict[str, Callable[[list[str]], Result]] = {
            "enable": lambda u: self.enable(u, "--now" in flags),
            "disable": self._disable,
            "stop": lambda u: self._each(u, self.stop),
            "is-active": self.is_active,
            "is-enabled": self._is_enabled,
            "status": self._status,
        }
        handler = verbs.get(verb)
        if verb in _ACTIONS:
            handler = self._starter(verb)
        if handler is None:
            return Result(1, stderr=f'Unknown command verb "{verb}" (simulated systemctl).\n')
        if not units:
            return Result(1, stderr=f"Too few arguments for {verb}.\n")
        return handler(units)

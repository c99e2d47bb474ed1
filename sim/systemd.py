"""The slice of systemd a simulated VPS emulates: `systemctl` and `journalctl` for its units.

Every unit is a `sim.service.Service` (Type=simple): a start forks and
returns 0 at once, whatever the process then does, so a crash is seen only
through `show`, `is-active` or the journal, as on a real box. What the main
process does is Rachel8's start (`sim.rachel8_service`) for Rachel8's
`bun run src/index.ts` unit, and "keeps running" for any other unit. Before
that, a non-optional `EnvironmentFile=` that is missing fails the start
(Result=resources), as systemd does. Exit codes and messages follow
systemctl's.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

from sim.rachel8_service import Rachel8Start, is_rachel8
from sim.rootfs import PathEscape, RootFs
from sim.service import Clock, Launch, Service
from sim.systemd_text import journal_lines, status_text
from sim.units import UnitFile, parse_unit

UNIT_DIRS = ("/etc/systemd/system", "/lib/systemd/system", "/usr/lib/systemd/system")
_ACTIONS = ("start", "restart", "try-restart", "reload-or-restart")
#: Options that take a value (`-p X`, `--property X`).
_VALUED = {"-p", "--property", "-n", "--lines", "-o", "--output", "-u", "--unit", "-t", "--type"}


@dataclass
class Result:
    """What a command printed and its exit status."""

    exit_status: int = 0
    stdout: str = ""
    stderr: str = ""


def unit_name(name: str) -> str:
    """`rachel8` -> `rachel8.service`; names with a unit suffix are kept."""
    return name if "." in name else f"{name}.service"


def split_args(args: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    """Words and options (`--name=value`, `--name value`, `-p value`, `-pvalue`, flags)."""
    words: list[str] = []
    options: dict[str, list[str]] = {}
    it = iter(args)
    for arg in it:
        if arg.startswith("--") and "=" in arg:
            name, _, value = arg.partition("=")
            options.setdefault(name, []).append(value)
        elif arg in _VALUED:
            options.setdefault(arg, []).append(next(it, ""))
        elif arg[:2] in _VALUED and len(arg) > 2 and not arg.startswith("--"):
            options.setdefault(arg[:2], []).append(arg[2:])
        elif arg.startswith("-") and arg != "-":
            options.setdefault(arg, [])
        else:
            words.append(arg)
    return words, options


class Systemd:
    """The units of one VPS.

    Attributes:
        services: unit name -> its runtime state, once loaded.
        enabled: units enabled with `systemctl enable`.
    """

    def __init__(
        self, fs: RootFs, *, hostname: str = "localhost", clock: Clock | None = None
    ) -> None:
        self.fs = fs
        self.hostname = hostname
        self.clock = clock or Clock()
        self.services: dict[str, Service] = {}
        self.enabled: set[str] = set()
        self._pids = itertools.count(1200)

    @property
    def states(self) -> dict[str, str]:
        """unit -> ActiveState (`active`, `activating`, `failed`, `inactive`)."""
        return {name: self.active_state(name) for name in self.services}

    def active_state(self, name: str) -> str:
        """The unit's ActiveState now."""
        service = self.services.get(unit_name(name))
        if service is None:
            return "inactive"
        service.advance()
        return service.active_state

    def _unit_file(self, unit: str) -> str | None:
        for directory in UNIT_DIRS:
            path = f"{directory}/{unit}"
            try:
                if self.fs.real(path, "/").is_file():
                    return path
            except PathEscape:
                return None
        return None

    def _load(self, unit: str) -> UnitFile | None:
        path = self._unit_file(unit)
        if path is None:
            return None
        return parse_unit(path, self.fs.real(path, "/").read_text(errors="replace"))

    def _launch(self, unit: UnitFile) -> Launch:
        if is_rachel8(unit):
            return Rachel8Start(self.fs)(unit)
        return Launch()

    def _service(self, name: str, unit: UnitFile) -> Service:
        service = self.services.get(name)
        if service is None:
            service = Service(name, unit, self.clock, self._launch, lambda: next(self._pids))
            self.services[name] = service
        return service

    def _missing_environment_files(self, unit: UnitFile) -> list[str]:
        missing = []
        for path, optional in unit.environment_files:
            try:
                exists = self.fs.real(path, "/").is_file()
            except PathEscape:
                exists = False
            if not exists and not optional:
                missing.append(path)
        return missing

    def start(self, verb: str, name: str) -> Result:
        """`systemctl start|restart <unit>`: 0 once the process is forked (Type=simple)."""
        unit = unit_name(name)
        loaded = self._load(unit)
        if loaded is None:
            return Result(5, stderr=f"Failed to {verb} {unit}: Unit {unit} not found.\n")
        service = self._service(unit, loaded)
        if verb == "try-restart" and service.active_state != "active":
            return Result(0)
        see = f'See "systemctl status {unit}" and "journalctl -xeu {unit}" for details.\n'
        missing = self._missing_environment_files(loaded)
        if missing:
            service.unit = loaded
            service.fail_resources(
                "Failed to load environment files: No such file or directory "
                f"({', '.join(missing)})"
            )
            return Result(
                1,
                stderr=(
                    f"Job for {unit} failed because of unavailable resources or another "
                    f"system error.\n{see}"
                    # Said in the journal on a real box; here too, for whoever reads stderr.
                    f"(simulated: failed to load environment files: {', '.join(missing)})\n"
                ),
            )
        if not service.start(loaded, restart=verb != "start"):
            return Result(
                1,
                stderr=(
                    f"Job for {unit} failed because start of the service was attempted too "
                    f'often.\n{see}To force a start use "systemctl reset-failed {unit}"\n'
                    f'followed by "systemctl start {unit}" again.\n'
                ),
            )
        return Result(0)

    def stop(self, name: str) -> Result:
        """`systemctl stop <unit>`."""
        unit = unit_name(name)
        if self._unit_file(unit) is None and unit not in self.services:
            return Result(5, stderr=f"Failed to stop {unit}: Unit {unit} not loaded.\n")
        if unit in self.services:
            self.services[unit].stop()
        return Result(0)

    def is_active(self, names: str | list[str], quiet: bool = False) -> Result:
        """`systemctl is-active <unit>...`: prints each state; 0 only if all are active."""
        states = [self.active_state(n) for n in ([names] if isinstance(names, str) else names)]
        ok = all(s == "active" for s in states)
        return Result(0 if ok else 3, "" if quiet else "".join(f"{s}\n" for s in states))

    def enable(self, names: list[str], now: bool) -> Result:
        """`systemctl enable [--now] <unit>...`."""
        out = []
        for name in names:
            unit = unit_name(name)
            path = self._unit_file(unit)
            if path is None:
                return Result(
                    1, stderr=f"Failed to enable unit: Unit file {unit} does not exist.\n"
                )
            if unit not in self.enabled:
                wants = f"/etc/systemd/system/multi-user.target.wants/{unit}"
                out.append(f"Created symlink {wants} → {path}.\n")
            self.enabled.add(unit)
            if now:
                started = self.start("start", unit)
                if started.exit_status:
                    return started
        return Result(0, stderr="".join(out))

    def properties(self, name: str) -> dict[str, str]:
        """`systemctl show <unit>`'s properties (LoadState=not-found for an unknown unit)."""
        unit = unit_name(name)
        service = self.services.get(unit)
        if service is None:
            loaded = self._load(unit)
            if loaded is None:
                return {
                    "Result": "success", "MainPID": "0", "NRestarts": "0", "ExecMainCode": "0",
                    "ExecMainStatus": "0", "Id": unit, "LoadState": "not-found",
                    "ActiveState": "inactive", "SubState": "dead", "UnitFileState": "",
                }  # fmt: skip
            service = self._service(unit, loaded)
        props = service.properties()
        props["UnitFileState"] = "enabled" if unit in self.enabled else "disabled"
        return props

    def show(self, units: list[str], options: dict[str, list[str]]) -> Result:
        """`systemctl show [-p A -p B | --property=A,B] [--value] <unit>...`."""
        wanted = [
            p
            for value in options.get("-p", []) + options.get("--property", [])
            for p in value.split(",")
            if p
        ]
        blocks = []
        for name in units:
            props = self.properties(name)
            # systemd prints in its own order, not the order asked for.
            chosen = [(k, v) for k, v in props.items() if not wanted or k in wanted]
            lines = [v if "--value" in options else f"{k}={v}" for k, v in chosen]
            blocks.append("".join(f"{line}\n" for line in lines))
        return Result(0, "\n".join(blocks))

    def _status(self, units: list[str]) -> Result:
        unit = unit_name(units[0])
        if unit not in self.services and self._unit_file(unit) is None:
            return Result(4, stderr=f"Unit {unit} could not be found.\n")
        props = self.properties(unit)
        service = self.services[unit]
        text = status_text(props, service, self.hostname, self.clock)
        return Result(0 if props["ActiveState"] == "active" else 3, text)

    def _reset_failed(self, units: list[str]) -> Result:
        for name in units or list(self.services):
            service = self.services.get(unit_name(name))
            if service is not None:
                service.reset_failed()
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

    def _disable(self, units: list[str]) -> Result:
        self.enabled.difference_update(unit_name(u) for u in units)
        return Result(0)

    def _starter(self, verb: str) -> Callable[[list[str]], Result]:
        return lambda units: self._each(units, lambda unit: self.start(verb, unit))

    def systemctl(self, args: list[str]) -> Result:
        """Run `systemctl` with `args` (options may come anywhere)."""
        words, options = split_args(args)
        if not words:
            return Result(1, stderr="systemctl: a command is required (simulated systemctl)\n")
        verb, units = words[0], words[1:]
        if verb == "daemon-reload":
            return Result(0)
        if verb == "reset-failed":
            return self._reset_failed(units)
        quiet = "-q" in options or "--quiet" in options
        verbs: dict[str, Callable[[list[str]], Result]] = {
            "enable": lambda u: self.enable(u, "--now" in options),
            "disable": self._disable,
            "stop": lambda u: self._each(u, self.stop),
            "is-active": lambda u: self.is_active(u, quiet),
            "is-enabled": self._is_enabled,
            "status": self._status,
            "show": lambda u: self.show(u, options),
        }
        handler = verbs.get(verb)
        if verb in _ACTIONS:
            handler = self._starter(verb)
        if handler is None:
            return Result(1, stderr=f'Unknown command verb "{verb}" (simulated systemctl).\n')
        if not units:
            return Result(1, stderr=f"Too few arguments for {verb}.\n")
        return handler(units)

    def journal(self, name: str, lines: int | None = None) -> list[str]:
        """The unit's journal as `journalctl -o cat` prints it (last `lines` lines)."""
        service = self.services.get(unit_name(name))
        if service is None:
            return []
        service.advance()
        messages = [entry.message for entry in service.journal]
        return messages[-lines:] if lines else messages

    def journalctl(self, args: list[str]) -> Result:
        """`journalctl -u <unit> [-n N] [-o cat|short] [--no-pager]`."""
        _words, options = split_args(args)
        units = options.get("-u", []) + options.get("--unit", [])
        count_text = (options.get("-n") or options.get("--lines") or [""])[-1]
        if count_text and not count_text.isdigit():
            return Result(1, stderr=f"Failed to parse lines '{count_text}'.\n")
        count = int(count_text) if count_text else None
        output = (options.get("-o") or options.get("--output") or ["short"])[-1]
        entries = [
            (entry, unit_name(u))
            for u in units
            if unit_name(u) in self.services
            for entry in self._advanced(unit_name(u)).journal
        ]
        entries.sort(key=lambda pair: pair[0].at)
        text = journal_lines([e for e, _ in entries], count, output, self.hostname, self.clock)
        return Result(0, text or "-- No entries --\n")

    def _advanced(self, unit: str) -> Service:
        service = self.services[unit]
        service.advance()
        return service

"""The slice of systemd a simulated VPS emulates: its services and timers, across boots.

Services (`sim.service.Service`): a `Type=simple` start forks and returns 0
at once, whatever the process then does, so a crash is seen only through
`show`, `is-active` or the journal, as on a real box; a `Type=oneshot`
start runs the process to its end. What the process does: Rachel8's start
(`sim.rachel8_service`) for its `bun run src/index.ts` unit, the health
agent (`sim.agent`, run asynchronously by the VPS) for `AGENT_SCRIPT_PATH`,
exit 0 for any other oneshot, and "keeps running" for any other unit.
systemd's checks before the exec (`sim.spawn`) apply to Rachel8, the agent
and oneshots; a non-optional `EnvironmentFile=` that is missing fails the
start (Result=resources).

Timers (`sim.timers`): started, stopped, enabled like services; when one
elapses (`fire_due`, called by the VPS's timer loop) it starts its unit.
`enable` needs an `[Install]` section (else the unit is "static", as
systemctl says). A boot (`boot`) starts the enabled units afresh: restart
counters, start limits and monotonic timestamps belong to a boot; the
journal is persistent.

The command lines (`systemctl`, `journalctl`) are `sim.systemctl`'s.
"""

from __future__ import annotations

import functools
import itertools
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from core.cloud import vps_contract
from sim import timer_units
from sim.hardware import Hardware
from sim.rachel8_service import Rachel8Start, is_rachel8
from sim.rachel8_telegram import Outside
from sim.rootfs import PathEscape, RootFs
from sim.service import Clock, Launch, ProcessRun, Service
from sim.spawn import spawn
from sim.systemctl import Result, journalctl, run_systemctl, see, unit_name
from sim.timers import Timer, perturbation
from sim.units import UnitFile, parse_unit

UNIT_DIRS = ("/etc/systemd/system", "/lib/systemd/system", "/usr/lib/systemd/system")
_STATIC = (
    "The unit files have no installation config (WantedBy=, RequiredBy=, UpheldBy=,\n"
    "Also=, or Alias= settings in the [Install] section, and DefaultInstance= for\n"
    "template units). This means they are not meant to be enabled or disabled using systemctl.\n"
)

__all__ = ["UNIT_DIRS", "Result", "Systemd", "is_agent", "unit_name"]


def is_agent(unit: UnitFile) -> bool:
    """Whether the unit runs the health agent (`AGENT_SCRIPT_PATH`)."""
    return bool(unit.exec_start) and unit.exec_start[0] == vps_contract.AGENT_SCRIPT_PATH


_F = TypeVar("_F", bound=Callable[..., Any])


def _locked(method: _F) -> _F:
    """Run under the box's lock: the loop's timers and a test's thread may both look."""

    @functools.wraps(method)
    def run(self: Systemd, *args: Any, **kwargs: Any) -> Any:
        with self.lock:
            return method(self, *args, **kwargs)

    return run  # type: ignore[return-value]


class Systemd:
    """The units of one VPS.

    Attributes:
        services: unit name -> its runtime state, once loaded.
        timers: timer unit name -> its runtime state, once loaded.
        enabled: units enabled with `systemctl enable`.
        outside: what Rachel8's process meets beyond the box (Telegram, faults).
        hardware: the server type's disk and memory.
        booted_at: when the current boot began (simulated seconds).
        powered: the machine is on.
        agent: the health agent's process (set by the VPS); None: it exits 0 at once.
        run_process: runs an asynchronous process (set by the VPS, which has a loop).
        on_change: called after anything that may move a timer (the VPS's timer loop).
    """

    def __init__(
        self,
        fs: RootFs,
        *,
        hostname: str = "localhost",
        clock: Clock | None = None,
        outside: Outside | None = None,
        hardware: Hardware | None = None,
    ) -> None:
        self.fs = fs
        self.hostname = hostname
        self.clock = clock or Clock()
        self.outside = outside or Outside()
        self.hardware = hardware or Hardware()
        self.services: dict[str, Service] = {}
        self.timers: dict[str, Timer] = {}
        self.enabled: set[str] = set()
        self.booted_at = 0.0
        self.boots = 1
        self.powered = True
        self.agent: ProcessRun | None = None
        self.run_process: Callable[[Service, int, ProcessRun], None] | None = None
        self.on_change: Callable[[], None] | None = None
        self._pids = itertools.count(1200)
        #: Held by every entry point (re-entrant): the loop and other threads share a box.
        self.lock = threading.RLock()

    def changed(self) -> None:
        """Tell the timer loop that a timer may elapse at another time now."""
        if self.on_change is not None:
            self.on_change()

    @property
    def states(self) -> dict[str, str]:
        """unit -> ActiveState (`active`, `activating`, `failed`, `inactive`)."""
        states = {name: self.active_state(name) for name in self.services}
        return states | {name: self.active_state(name) for name in self.timers}

    @_locked
    def active_state(self, name: str) -> str:
        """The unit's ActiveState now."""
        unit = unit_name(name)
        timer = self.timers.get(unit)
        if timer is not None:
            return timer.states(self.services.get(timer.unit.triggers), self.booted_at)[0]
        service = self.services.get(unit)
        if service is None:
            return "inactive"
        service.advance()
        return service.active_state

    # -- unit files -------------------------------------------------------------

    def unit_file(self, unit: str) -> str | None:
        """Where the unit's file is, if anywhere."""
        for directory in UNIT_DIRS:
            path = f"{directory}/{unit}"
            try:
                if self.fs.real(path, "/").is_file():
                    return path
            except PathEscape:
                return None
        return None

    def load(self, unit: str) -> UnitFile | None:
        """The unit's file, read now (None: not found)."""
        path = self.unit_file(unit)
        if path is None:
            return None
        return parse_unit(path, self.fs.real(path, "/").read_text(errors="replace"))

    def _launch(self, unit: UnitFile) -> Launch:
        if is_rachel8(unit):
            return Rachel8Start(self.fs, self.outside, self.hostname)(unit)
        if not (unit.type == "oneshot" or is_agent(unit)):
            return Launch()
        spawned = spawn(self.fs, unit, check_interpreter=is_agent(unit))
        if isinstance(spawned, Launch):
            return spawned
        if is_agent(unit) and self.agent is not None and self.run_process is not None:
            return Launch(run=self.agent)
        return Launch(exit_status=0)

    def service(self, name: str, unit: UnitFile) -> Service:
        """The runtime state of a service, made on first use."""
        service = self.services.get(name)
        if service is None:
            service = Service(name, unit, self.clock, self._launch, lambda: next(self._pids))
            service.on_spawn = lambda pid, launch: self._spawned(service, pid, launch)
            self.services[name] = service
        return service

    def _spawned(self, service: Service, pid: int, launch: Launch) -> None:
        if launch.run is not None and self.run_process is not None:
            self.run_process(service, pid, launch.run)

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

    # -- jobs -------------------------------------------------------------------

    @_locked
    def start(self, verb: str, name: str) -> Result:
        """`systemctl start|restart <unit>`: services and timers."""
        unit = unit_name(name)
        result = timer_units.start(self, verb, unit) if unit.endswith(".timer") else None
        result = result or self.start_service(verb, unit)
        self.changed()
        return result

    def start_service(self, verb: str, unit: str) -> Result:
        """A start job for a service unit."""
        loaded = self.load(unit)
        if loaded is None:
            return Result(5, stderr=f"Failed to {verb} {unit}: Unit {unit} not found.\n")
        service = self.service(unit, loaded)
        if verb == "try-restart" and service.active_state != "active":
            return Result(0)
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
                    f"system error.\n{see(unit)}"
                    # Said in the journal on a real box; here too, for whoever reads stderr.
                    f"(simulated: failed to load environment files: {', '.join(missing)})\n"
                ),
            )
        if not service.start(loaded, restart=verb != "start"):
            return Result(
                1,
                stderr=(
                    f"Job for {unit} failed because start of the service was attempted too "
                    f'often.\n{see(unit)}To force a start use "systemctl reset-failed {unit}"\n'
                    f'followed by "systemctl start {unit}" again.\n'
                ),
            )
        if service.oneshot and service.active_state == "failed":
            return Result(
                1,
                stderr=(
                    f"Job for {unit} failed because the control process exited with error "
                    f"code.\n{see(unit)}"
                ),
            )
        return Result(0)

    def timer(self, unit: str, loaded: UnitFile) -> Timer:
        """The runtime state of a timer, made on first use."""
        timer = self.timers.get(unit)
        if timer is None:
            timer = self.timers[unit] = Timer(unit, loaded)
        return timer

    @_locked
    def stop(self, name: str) -> Result:
        """`systemctl stop <unit>`."""
        unit = unit_name(name)
        known = unit in self.services or unit in self.timers
        if self.unit_file(unit) is None and not known:
            return Result(5, stderr=f"Failed to stop {unit}: Unit {unit} not loaded.\n")
        if unit in self.services:
            self.services[unit].stop()
        timer = self.timers.get(unit)
        if timer is not None and timer.active:
            timer.stop()
            timer.log(self.clock.now(), f"Stopped {timer.title}.")
        self.changed()
        return Result(0)

    @_locked
    def enable(self, names: list[str], now: bool) -> Result:
        """`systemctl enable [--now] <unit>...`."""
        out = []
        for name in names:
            unit = unit_name(name)
            loaded = self.load(unit)
            if loaded is None:
                return Result(
                    1, stderr=f"Failed to enable unit: Unit file {unit} does not exist.\n"
                )
            if not loaded.wanted_by:
                out.append(_STATIC)
            elif unit not in self.enabled:
                wants = f"/etc/systemd/system/{loaded.wanted_by[0]}.wants/{unit}"
                out.append(f"Created symlink {wants} → {loaded.path}.\n")
                self.enabled.add(unit)
            if now:
                started = self.start("start", unit)
                if started.exit_status:
                    return Result(started.exit_status, stderr="".join(out) + started.stderr)
        return Result(0, stderr="".join(out))

    @_locked
    def disable(self, names: list[str], now: bool) -> Result:
        """`systemctl disable [--now] <unit>...`."""
        out = []
        for name in names:
            unit = unit_name(name)
            loaded = self.load(unit)
            if unit in self.enabled and loaded is not None and loaded.wanted_by:
                out.append(f'Removed "/etc/systemd/system/{loaded.wanted_by[0]}.wants/{unit}".\n')
            self.enabled.discard(unit)
            if now:
                self.stop(unit)
        return Result(0, stderr="".join(out))

    @_locked
    def reset_failed(self, units: list[str]) -> Result:
        """`systemctl reset-failed [<unit>...]`."""
        names = [unit_name(u) for u in units] or [*self.services, *self.timers]
        for unit in names:
            if unit in self.services:
                self.services[unit].reset_failed()
            if unit in self.timers:
                self.timers[unit].result = "success"
        return Result(0)

    # -- what systemctl show reports -------------------------------------------

    @_locked
    def properties(self, name: str) -> dict[str, str]:
        """`systemctl show <unit>`'s properties (LoadState=not-found for an unknown unit)."""
        unit = unit_name(name)
        if unit.endswith(".timer") and (unit in self.timers or self.unit_file(unit)):
            return timer_units.properties(self, unit)
        service = self.services.get(unit)
        if service is None:
            loaded = self.load(unit)
            if loaded is None:
                return {
                    "Result": "success", "MainPID": "0", "NRestarts": "0", "ExecMainCode": "0",
                    "ExecMainStatus": "0", "Id": unit, "LoadState": "not-found",
                    "ActiveState": "inactive", "SubState": "dead", "UnitFileState": "",
                }  # fmt: skip
            service = self.service(unit, loaded)
        props = service.properties()
        props["UnitFileState"] = self.unit_file_state(unit)
        return props

    def unit_file_state(self, unit: str) -> str:
        """`enabled`, `disabled`, or `static` (no `[Install]` section)."""
        if unit in self.enabled:
            return "enabled"
        loaded = self.load(unit)
        return "static" if loaded is not None and not loaded.wanted_by else "disabled"

    # -- timers elapsing, boots -------------------------------------------------

    @property
    def perturb(self) -> float:
        """This boot's sd-event wake-up offset."""
        return perturbation(self.hostname, self.boots)

    @_locked
    def fire_due(self) -> float | None:
        """Start the units of the timers that elapsed; when the next one will (or None)."""
        return timer_units.fire_due(self)

    @_locked
    def power_off(self) -> None:
        """The machine stops: every process ends, no timer elapses."""
        self.powered = False
        for service in self.services.values():
            service.power_off()
        for timer in self.timers.values():
            timer.power_off()
        self.changed()

    @_locked
    def boot(self) -> None:
        """A new boot: the enabled units start (services, then timers), counters afresh."""
        for service in self.services.values():
            service.power_off()
        for timer in self.timers.values():
            timer.power_off()
        self.powered, self.booted_at = True, self.clock.now()
        self.boots += 1
        for unit in sorted(self.enabled, key=lambda u: (u.endswith(".timer"), u)):
            self.start("start", unit)
        self.changed()

    def uptime(self) -> float:
        """Simulated seconds since this boot began (`/proc/uptime`)."""
        return self.clock.now() - self.booted_at

    def memory(self) -> tuple[int, int]:
        """(available, total) memory bytes now: Rachel8 running takes its share."""
        return self.hardware.memory(self.active_state(vps_contract.SERVICE_UNIT) == "active")

    def meminfo(self) -> str:
        """`/proc/meminfo` now."""
        return self.hardware.meminfo(self.active_state(vps_contract.SERVICE_UNIT) == "active")

    # -- command lines ------------------------------------------------------------

    @_locked
    def systemctl(self, args: list[str]) -> Result:
        """Run `systemctl` with `args` (options may come anywhere)."""
        return run_systemctl(self, args)

    @_locked
    def journalctl(self, args: list[str]) -> Result:
        """`journalctl -u <unit> [-n N] [-o cat|short] [--no-pager]`."""
        return journalctl(self, args)

    @_locked
    def journal(self, name: str, lines: int | None = None) -> list[str]:
        """The unit's journal as `journalctl -o cat` prints it (last `lines` lines)."""
        unit = unit_name(name)
        service = self.services.get(unit)
        if service is not None:
            service.advance()
            entries = list(service.journal)
        else:
            entries = list(self.timers[unit].journal) if unit in self.timers else []
        messages = [entry.message for entry in entries]
        return messages[-lines:] if lines else messages

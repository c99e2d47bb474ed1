"""One systemd service of a simulated VPS, in time: start, exit, restart, start limit.

Timers are not scheduled: the state is brought up to date from a clock
whenever someone looks (`advance`), replaying what systemd would have done
in between (the process exiting, `RestartSec` passing, the start limit being
hit). The clock is scaled (`RACHEL_SIM_TIME_SCALE`), so a test sees ten
seconds of `RestartSec` pass in a tenth of a second.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from sim.units import UnitFile

#: Journal lines kept per unit (journald rotates; a unit restarting forever must not grow).
JOURNAL_LINES = 2000
#: `status=N/NAME` as systemd prints exit statuses it knows.
STATUS_NAMES = {0: "SUCCESS", 1: "FAILURE", 200: "CHDIR", 203: "EXEC", 217: "USER"}


class Clock:
    """Simulated seconds since the VPS booted; `scale` real seconds each.

    Attributes:
        scale: real seconds per simulated second.
        source: the real clock (monotonic seconds).
    """

    def __init__(self, scale: float = 1.0, source: Callable[[], float] = time.monotonic) -> None:
        self.scale = scale
        self.source = source
        self._started = source()
        self._wall = time.time()

    def now(self) -> float:
        """Simulated seconds elapsed."""
        return (self.source() - self._started) / self.scale

    def wall(self, at: float) -> float:
        """The simulated wall-clock time (epoch seconds) of `at`."""
        return self._wall + at


@dataclass(frozen=True)
class Launch:
    """What one start of the main process does.

    Attributes:
        output: what the process prints (to the journal).
        exit_status: its exit status, or None while it keeps running.
        systemd_output: systemd's own messages (a failure before the exec).
        runtime: simulated seconds from start to exit.
    """

    output: tuple[str, ...] = ()
    exit_status: int | None = None
    systemd_output: tuple[str, ...] = ()
    runtime: float = 0.0


@dataclass(frozen=True)
class JournalEntry:
    """One journal line: when, who (`systemd` or the process), pid and text."""

    at: float
    ident: str
    pid: int
    message: str


@dataclass
class Service:
    """The runtime state of one unit (systemd's `ActiveState`, `SubState`...).

    Attributes:
        name: the unit name (`rachel8.service`).
        unit: its unit file, re-read at every start.
        launch: what the main process does when started.
        journal: every line logged for this unit.
    """

    name: str
    unit: UnitFile
    clock: Clock
    launch: Callable[[UnitFile], Launch]
    next_pid: Callable[[], int]
    journal: deque[JournalEntry] = field(default_factory=lambda: deque(maxlen=JOURNAL_LINES))
    active_state: str = "inactive"
    sub_state: str = "dead"
    result: str = "success"
    exec_main_status: int = 0
    exec_main_code: int = 0
    main_pid: int = 0
    n_restarts: int = 0
    _exit_at: float | None = None
    _exit_status: int = 0
    _restart_at: float | None = None
    _starts: deque[float] = field(default_factory=deque)

    @property
    def title(self) -> str:
        """How systemd names it in messages: `rachel8.service - Description`."""
        return f"{self.name} - {self.unit.description}" if self.unit.description else self.name

    def _log(self, at: float, message: str, *, pid: int = 0, ident: str = "systemd") -> None:
        self.journal.append(JournalEntry(at, ident, pid or 1, message))

    def _set(self, active: str, sub: str) -> None:
        self.active_state, self.sub_state = active, sub

    # -- time passing ---------------------------------------------------------

    def advance(self) -> None:
        """Replay what happened up to now: exits, scheduled restarts, the start limit."""
        now = self.clock.now()
        while True:
            if self._exit_at is not None and self._exit_at <= now:
                at, self._exit_at = self._exit_at, None
                self._exited(at, self._exit_status)
            elif self._restart_at is not None and self._restart_at <= now:
                at, self._restart_at = self._restart_at, None
                self._auto_restart(at)
            else:
                return

    def _start_limited(self, at: float) -> bool:
        interval, burst = self.unit.start_limit_interval, self.unit.start_limit_burst
        if interval <= 0 or burst <= 0:
            return False
        while self._starts and self._starts[0] <= at - interval:
            self._starts.popleft()
        if len(self._starts) >= burst:
            return True
        self._starts.append(at)
        return False

    def _spawn(self, at: float) -> None:
        pid = self.next_pid()
        launch = self.launch(self.unit)
        self._set("active", "running")
        self.main_pid, self.exec_main_status, self.exec_main_code = pid, 0, 0
        self._log(at, f"Started {self.title}.")
        for line in launch.systemd_output:
            # systemd's forked child logs under `(name)` until the exec.
            self._log(at, f"{self.name}: {line}", pid=pid, ident=f"({self._ident()})")
        for line in launch.output:
            self._log(at + launch.runtime, line, pid=pid, ident=self._ident())
        if launch.exit_status is not None:
            self._exit_at, self._exit_status = at + launch.runtime, launch.exit_status

    def _ident(self) -> str:
        return self.unit.exec_start[0].rsplit("/", 1)[-1] if self.unit.exec_start else self.name

    def _exited(self, at: float, status: int) -> None:
        name = STATUS_NAMES.get(status, str(status))
        self._log(at, f"{self.name}: Main process exited, code=exited, status={status}/{name}")
        self.exec_main_status, self.exec_main_code, self.main_pid = status, 1, 0
        if status == 0:
            self._log(at, f"{self.name}: Deactivated successfully.")
            self._dead("success")
            if self.unit.restart == "always":
                self._schedule_restart(at)
            return
        self._log(at, f"{self.name}: Failed with result 'exit-code'.")
        if self.result == "success":
            self.result = "exit-code"
        if self.unit.restart in ("on-failure", "always"):
            self._schedule_restart(at)
        else:
            self._set("failed", "failed")

    def _schedule_restart(self, at: float) -> None:
        self._set("activating", "auto-restart")
        self._restart_at = at + self.unit.restart_sec

    def _dead(self, result: str) -> None:
        if self.result == "success":
            self.result = result
        if self.result == "success":
            self._set("inactive", "dead")
        else:
            self._set("failed", "failed")

    def _auto_restart(self, at: float) -> None:
        self.n_restarts += 1
        self._log(
            at, f"{self.name}: Scheduled restart job, restart counter is at {self.n_restarts}."
        )
        if self._start_limited(at):
            self._limit_hit(at)
            return
        self.result = "success"
        self._spawn(at)

    def _limit_hit(self, at: float) -> None:
        self._log(at, f"{self.name}: Start request repeated too quickly.")
        self._log(at, f"{self.name}: Failed with result 'start-limit-hit'.")
        self._log(at, f"Failed to start {self.title}.")
        self.result = "start-limit-hit"
        self._set("failed", "failed")
        self.main_pid = 0

    # -- what systemctl asks ------------------------------------------------

    def start(self, unit: UnitFile, *, restart: bool) -> bool:
        """A start or restart job, `unit` being the file as it is now.

        Returns:
            False when the start limit refused it.
        """
        self.advance()
        now = self.clock.now()
        if self.active_state == "active" and not restart:
            return True
        if self.active_state == "active":
            self._stop_process(now)
        self.unit = unit
        self._restart_at = None
        # A manual start begins a new series: systemd flushes the restart counter.
        self.n_restarts = 0
        if self._start_limited(now):
            self._limit_hit(now)
            return False
        self.result = "success"
        self._spawn(now)
        return True

    def _stop_process(self, at: float) -> None:
        self._log(at, f"Stopping {self.title}...")
        self._log(at, f"{self.name}: Deactivated successfully.")
        self._log(at, f"Stopped {self.title}.")
        self._exit_at, self.main_pid = None, 0
        self.exec_main_status, self.exec_main_code = 0, 1

    def stop(self) -> None:
        """A stop job: the process is stopped and no restart is pending."""
        self.advance()
        now = self.clock.now()
        if self.active_state == "active":
            self._stop_process(now)
        self._restart_at = None
        self._dead("success")

    def fail_resources(self, why: str) -> None:
        """A start refused before the exec (missing EnvironmentFile): Result=resources."""
        self.advance()
        now = self.clock.now()
        if self._start_limited(now):
            self._limit_hit(now)
            return
        self._log(now, f"{self.name}: {why}")
        self._log(now, f"{self.name}: Failed to run 'start' task: No such file or directory")
        self._log(now, f"{self.name}: Failed with result 'resources'.")
        self._log(now, f"Failed to start {self.title}.")
        self._exit_at = self._restart_at = None
        self.main_pid, self.result = 0, "resources"
        self._set("failed", "failed")

    def reset_failed(self) -> None:
        """`systemctl reset-failed`: forget the failure and the start limit's count."""
        self.advance()
        self._starts.clear()
        self.n_restarts = 0
        if self.active_state == "failed":
            self.result = "success"
            self._set("inactive", "dead")

    def properties(self) -> dict[str, str]:
        """`systemctl show` properties, brought up to date."""
        self.advance()
        return {
            "Id": self.name,
            "Description": self.unit.description or self.name,
            "LoadState": "loaded",
            "ActiveState": self.active_state,
            "SubState": self.sub_state,
            "Result": self.result,
            "NRestarts": str(self.n_restarts),
            "MainPID": str(self.main_pid),
            "ExecMainCode": str(self.exec_main_code),
            "ExecMainStatus": str(self.exec_main_status),
            "FragmentPath": self.unit.path,
            "User": self.unit.user or "",
            "WorkingDirectory": self.unit.working_directory or "",
            "Restart": self.unit.restart,
            "RestartUSec": _span(self.unit.restart_sec),
            "StartLimitBurst": str(self.unit.start_limit_burst),
            "StartLimitIntervalUSec": _span(self.unit.start_limit_interval),
        }


def _span(seconds: float) -> str:
    """systemd's timespan formatting, for the values units use (`10s`, `100ms`, `2min`)."""
    if seconds >= 60 and seconds % 60 == 0:
        return f"{int(seconds // 60)}min"
    if seconds >= 1 or seconds == 0:
        return f"{seconds:g}s"
    return f"{round(seconds * 1000)}ms"

"""One systemd service of a simulated VPS, in time: start, exit, restart, start limit.

Timers are not scheduled: the state is brought up to date from a clock
whenever someone looks (`advance`), replaying what systemd would have done
in between (the process printing, exiting, `RestartSec` passing, the start
limit being hit). The clock is scaled (`RACHEL_SIM_TIME_SCALE`), so a test
sees ten seconds of `RestartSec` pass in a tenth of a second.

`Type=simple` (and the other long-running types) is `active (running)` from
the fork; `Type=oneshot` is `activating (start)` until its process exits,
then `inactive (dead)` (or `active (exited)` with `RemainAfterExit=yes`), or
`failed` with `Result=exit-code`. A process whose outcome is not known in
advance (the health agent's HTTP calls) has a `Launch.run` coroutine: the
owner of the service runs it and reports its end with `exit_now`. Something
from outside (a fault, Telegram refusing the bot) ends a running process
with `exit_now` too.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from sim.units import UnitFile, span_text

#: Journal lines kept per unit (journald rotates; a unit restarting forever must not grow).
JOURNAL_LINES = 2000
#: `status=N/NAME` as systemd prints exit statuses it knows.
STATUS_NAMES = {0: "SUCCESS", 1: "FAILURE", 200: "CHDIR", 203: "EXEC", 217: "USER"}

#: An asynchronous main process: returns its exit status and what it printed.
ProcessRun = Callable[[], Awaitable[tuple[int, tuple[str, ...]]]]


class Clock:
    """Simulated seconds since the VPS was made; `scale` real seconds each.

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
        """The simulated wall-clock time (epoch seconds) of `at` (journal timestamps)."""
        return self._wall + at

    def epoch(self, at: float) -> float:
        """The real epoch time at which simulated instant `at` happens."""
        return self._wall + at * self.scale

    def instant(self, epoch: float) -> float:
        """The simulated instant of a real epoch time (the inverse of `epoch`)."""
        return (epoch - self._wall) / self.scale


@dataclass(frozen=True)
class Launch:
    """What one start of the main process does.

    Attributes:
        output: what the process prints (to the journal) just before it exits.
        exit_status: its exit status, or None while it keeps running.
        systemd_output: systemd's own messages (a failure before the exec).
        runtime: simulated seconds from start to exit.
        timed: lines printed at given simulated seconds after the start.
        run: an asynchronous process whose outcome comes later (see the module doc).
    """

    output: tuple[str, ...] = ()
    exit_status: int | None = None
    systemd_output: tuple[str, ...] = ()
    runtime: float = 0.0
    timed: tuple[tuple[float, str], ...] = ()
    run: ProcessRun | None = None


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
        journal: every line logged for this unit (up to now: call `advance` first).
        on_spawn: called with each new process's pid and launch (to run `Launch.run`).
        inactive_exit_at: when it last left the inactive state (timers count from it).
        inactive_enter_at: when it last became inactive or failed.
        exec_main_start_at: when its main process last started, this boot
            (`ExecMainStartTimestamp`; it outlives the process).
    """

    name: str
    unit: UnitFile
    clock: Clock
    launch: Callable[[UnitFile], Launch]
    next_pid: Callable[[], int]
    journal: deque[JournalEntry] = field(default_factory=lambda: deque(maxlen=JOURNAL_LINES))
    on_spawn: Callable[[int, Launch], None] | None = None
    active_state: str = "inactive"
    sub_state: str = "dead"
    result: str = "success"
    exec_main_status: int = 0
    exec_main_code: int = 0
    main_pid: int = 0
    n_restarts: int = 0
    inactive_exit_at: float | None = None
    inactive_enter_at: float | None = None
    exec_main_start_at: float | None = None
    _exit_at: float | None = None
    _exit_status: int = 0
    _restart_at: float | None = None
    _starts: deque[float] = field(default_factory=deque)
    _pending: list[JournalEntry] = field(default_factory=list)

    @property
    def title(self) -> str:
        """How systemd names it in messages: `rachel8.service - Description`."""
        return f"{self.name} - {self.unit.description}" if self.unit.description else self.name

    @property
    def oneshot(self) -> bool:
        """`Type=oneshot`: activating until the process exits."""
        return self.unit.type == "oneshot"

    def _log(self, at: float, message: str, *, pid: int = 0, ident: str = "systemd") -> None:
        self.journal.append(JournalEntry(at, ident, pid or 1, message))

    def _set(self, active: str, sub: str, at: float | None = None) -> None:
        was_inactive = self.active_state in ("inactive", "failed")
        self.active_state, self.sub_state = active, sub
        is_inactive = active in ("inactive", "failed")
        if at is not None and was_inactive and not is_inactive:
            self.inactive_exit_at = at
        elif at is not None and is_inactive and not was_inactive:
            self.inactive_enter_at = at

    # -- time passing ---------------------------------------------------------

    def advance(self) -> None:
        """Replay what happened up to now: output, exits, scheduled restarts, the start limit."""
        now = self.clock.now()
        while True:
            events = [t for t in (self._exit_at, self._restart_at) if t is not None]
            self._flush(min([now, *events]))
            if self._exit_at is not None and self._exit_at <= now:
                at, self._exit_at = self._exit_at, None
                self._exited(at, self._exit_status)
            elif self._restart_at is not None and self._restart_at <= now:
                at, self._restart_at = self._restart_at, None
                self._auto_restart(at)
            else:
                return

    def _flush(self, until: float) -> None:
        while self._pending and self._pending[0].at <= until:
            self.journal.append(self._pending.pop(0))

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
        if self.oneshot:
            self._set("activating", "start", at)
            self._log(at, f"Starting {self.title}...")
        else:
            self._set("active", "running", at)
            self._log(at, f"Started {self.title}.")
        self.main_pid, self.exec_main_status, self.exec_main_code = pid, 0, 0
        self.exec_main_start_at = at
        for line in launch.systemd_output:
            # systemd's forked child logs under `(name)` until the exec.
            self._log(at, f"{self.name}: {line}", pid=pid, ident=f"({self._ident()})")
        lines = [(at + offset, text) for offset, text in launch.timed]
        lines += [(at + launch.runtime, text) for text in launch.output]
        ident = self._ident()
        self._pending = sorted(
            (JournalEntry(when, ident, pid, text) for when, text in lines), key=lambda e: e.at
        )
        if launch.exit_status is not None:
            self._exit_at, self._exit_status = at + launch.runtime, launch.exit_status
        if launch.run is not None and self.on_spawn is not None:
            self.on_spawn(pid, launch)

    def _ident(self) -> str:
        return self.unit.exec_start[0].rsplit("/", 1)[-1] if self.unit.exec_start else self.name

    def _exited(self, at: float, status: int) -> None:
        self._pending.clear()  # a dead process prints nothing more
        name = STATUS_NAMES.get(status, str(status))
        self._log(at, f"{self.name}: Main process exited, code=exited, status={status}/{name}")
        self.exec_main_status, self.exec_main_code, self.main_pid = status, 1, 0
        if status == 0:
            if self.oneshot and self.unit.remain_after_exit:
                self._set("active", "exited", at)
                self._log(at, f"Finished {self.title}.")
                return
            self._log(at, f"{self.name}: Deactivated successfully.")
            if self.oneshot:
                self._log(at, f"Finished {self.title}.")
            self._dead("success", at)
            if self.unit.restart == "always":
                self._schedule_restart(at)
            return
        self._log(at, f"{self.name}: Failed with result 'exit-code'.")
        if self.result == "success":
            self.result = "exit-code"
        if self.unit.restart in ("on-failure", "always"):
            self._schedule_restart(at)
        else:
            self._set("failed", "failed", at)
            if self.oneshot:
                self._log(at, f"Failed to start {self.title}.")

    def _schedule_restart(self, at: float) -> None:
        self._set("activating", "auto-restart", at)
        self._restart_at = at + self.unit.restart_sec

    def _dead(self, result: str, at: float) -> None:
        if self.result == "success":
            self.result = result
        if self.result == "success":
            self._set("inactive", "dead", at)
        else:
            self._set("failed", "failed", at)

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
        self._set("failed", "failed", at)
        self.main_pid = 0

    # -- what systemctl asks ------------------------------------------------

    def start(self, unit: UnitFile, *, restart: bool) -> bool:
        """A start or restart job, `unit` being the file as it is now.

        Returns:
            False when the start limit refused it.
        """
        self.advance()
        now = self.clock.now()
        running = self.active_state == "active" or bool(self.oneshot and self.main_pid)
        if running and not restart:
            return True
        if running:
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
        self.advance()  # a process that fails at once (203/EXEC) has failed already
        return True

    def _stop_process(self, at: float) -> None:
        self._log(at, f"Stopping {self.title}...")
        self._log(at, f"{self.name}: Deactivated successfully.")
        self._log(at, f"Stopped {self.title}.")
        self._exit_at, self.main_pid = None, 0
        self._pending.clear()
        self.exec_main_status, self.exec_main_code = 0, 1
        self._set("inactive", "dead", at)

    def stop(self) -> None:
        """A stop job: the process is stopped and no restart is pending."""
        self.advance()
        now = self.clock.now()
        if self.main_pid or self.active_state == "active":
            self._stop_process(now)
        self._restart_at = None
        self._dead("success", now)

    def exit_now(self, status: int, lines: tuple[str, ...] = (), *, pid: int | None = None) -> bool:
        """The main process prints `lines` and exits with `status` now.

        Args:
            pid: only if this is still the process (an asynchronous run ending
                after a restart must not end its successor).

        Returns:
            Whether a process was running to exit.
        """
        self.advance()
        if not self.main_pid or (pid is not None and pid != self.main_pid):
            return False
        now = self.clock.now()
        self._flush(now)
        for line in lines:
            self._log(now, line, pid=self.main_pid, ident=self._ident())
        self._pending.clear()
        self._exit_at, self._exit_status = now, status
        self.advance()
        return True

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
        self._set("failed", "failed", now)

    def reset_failed(self) -> None:
        """`systemctl reset-failed`: forget the failure and the start limit's count."""
        self.advance()
        self._starts.clear()
        self.n_restarts = 0
        if self.active_state == "failed":
            self.result = "success"
            self._set("inactive", "dead")

    def power_off(self) -> None:
        """The machine stops: the process is gone, nothing of this boot is remembered
        but the journal (persistent, as on Ubuntu)."""
        self.advance()
        self._exit_at = self._restart_at = None
        self._pending.clear()
        self._starts.clear()
        self.main_pid = self.n_restarts = 0
        self.exec_main_status = self.exec_main_code = 0
        self.result = "success"
        self.active_state, self.sub_state = "inactive", "dead"
        # Monotonic timestamps belong to a boot: a new boot starts without them.
        self.inactive_exit_at = self.inactive_enter_at = self.exec_main_start_at = None

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
            "Type": self.unit.type,
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
    """systemd's timespan formatting for the values units use (`10s`, `100ms`, `2min`)."""
    return "0" if seconds == 0 else span_text(seconds)

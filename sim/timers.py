"""systemd timer units of a simulated VPS: when each elapses, as systemd computes it.

Only monotonic timers are simulated (`OnActiveSec=`, `OnBootSec=`,
`OnStartupSec=`, `OnUnitActiveSec=`, `OnUnitInactiveSec=`); `OnCalendar=`
never elapses here. The rules are systemd's own (`src/core/timer.c`):

- `OnUnitActiveSec=` counts from the later of the triggered unit's last
  activation and the timer's last trigger. While neither happened (the
  service never ran in this boot) the value is skipped: a timer with
  `OnUnitActiveSec=` alone is "elapsed" at once and never fires until
  something starts its service. `OnBootSec=` or `OnActiveSec=` beside it is
  what makes it periodic from the start.
- `OnActiveSec=`, `OnBootSec=`, `OnStartupSec=` fire once (per activation,
  per boot); one already in the past when the timer starts fires at once.
- The timer then elapses within `AccuracySec=` (1 min by default) of that
  time, at the point sd-event picks to coalesce wake-ups: the same second
  of every minute for the whole machine (a per-boot perturbation), else of
  every 10 s, 1 s or 250 ms, else the window's end (`sleep_between`). So
  `OnUnitActiveSec=30s` with the default accuracy fires every 60 s.
- A timer whose unit is still running when it elapses leaves it running.

Times are the VPS's simulated seconds (`sim.service.Clock`); `booted_at` is
when the current boot began.
"""

from __future__ import annotations

import zlib
from collections import deque
from dataclasses import dataclass, field

from sim.service import JOURNAL_LINES, JournalEntry, Service
from sim.units import UnitFile

#: sd-event's alignment steps, coarsest first (seconds).
_STEPS = (60.0, 10.0, 1.0, 0.25)


def perturbation(hostname: str, boot: int) -> float:
    """sd-event's per-boot wake-up offset within a minute (from the boot id; here, stable)."""
    return (zlib.crc32(f"{hostname}/{boot}".encode()) % 60_000_000) / 1e6


def sleep_between(a: float, b: float, perturb: float) -> float:
    """When sd-event wakes up for a timer due in [a, b] (monotonic seconds since boot)."""
    if a <= 0:
        return 0.0
    if b <= a:
        return a
    for step in _STEPS:
        c = (b // step) * step + perturb % step
        if c >= b:
            if c < step:
                return b
            c -= step
        if c >= a:
            return c
    return b


@dataclass
class Timer:
    """The runtime state of one timer unit.

    Attributes:
        name: the unit name (`rachel-cloud-agent.timer`).
        unit: its unit file (re-read at every start).
        active: started and not stopped.
        activated_at: when it was last started (`OnActiveSec=` counts from it).
        last_trigger: when it last activated its unit (this activation).
        triggered: it started its unit, which has not finished yet (`SubState=running`).
        disabled: the one-shot values that already fired (their indexes).
        journal: what systemd logged for it.
    """

    name: str
    unit: UnitFile
    journal: deque[JournalEntry] = field(default_factory=lambda: deque(maxlen=JOURNAL_LINES))
    active: bool = False
    result: str = "success"
    activated_at: float | None = None
    last_trigger: float | None = None
    triggered: bool = False
    disabled: set[int] = field(default_factory=set)

    @property
    def title(self) -> str:
        """How systemd names it in messages."""
        return f"{self.name} - {self.unit.description}" if self.unit.description else self.name

    def log(self, at: float, message: str) -> None:
        """A line of systemd's about this timer."""
        self.journal.append(JournalEntry(at, "systemd", 1, message))

    @property
    def bad_setting(self) -> bool:
        """No value systemd could use: it refuses to load the unit."""
        spec = self.unit.timer
        return spec is None or not (spec.values or spec.calendar)

    def start(self, unit: UnitFile, now: float) -> None:
        """`systemctl start`: waiting from now, counting `OnActiveSec=` again."""
        self.unit = unit
        self.active, self.result = True, "success"
        self.activated_at, self.last_trigger, self.triggered = now, None, False
        spec = unit.timer
        values = spec.values if spec else []
        self.disabled -= {i for i, (base, _) in enumerate(values) if base == "active"}

    def stop(self) -> None:
        """`systemctl stop`: no further elapse (the unit it started keeps running)."""
        self.active, self.triggered = False, False

    def power_off(self) -> None:
        """A new boot remembers nothing of this one's timestamps."""
        self.stop()
        self.activated_at = self.last_trigger = None
        self.disabled.clear()

    def next_elapse(self, service: Service | None, booted_at: float) -> float | None:
        """The earliest value due, before accuracy (None: nothing will elapse)."""
        if not self.active or self.unit.timer is None:
            return None
        found: list[float] = []
        for index, (base, seconds) in enumerate(self.unit.timer.values):
            if index in self.disabled:
                continue
            origin = self._origin(base, service, booted_at)
            if origin is None:
                continue
            elapse = origin + seconds
            one_shot = base in ("active", "boot", "startup")
            if one_shot and self.last_trigger is not None and elapse <= self.last_trigger:
                self.disabled.add(index)
                continue
            found.append(elapse)
        return min(found) if found else None

    def _origin(self, base: str, service: Service | None, booted_at: float) -> float | None:
        if base == "active":
            return self.activated_at
        if base in ("boot", "startup"):
            return booted_at
        unit_time = None
        if service is not None:
            active = base == "unit_active"
            unit_time = service.inactive_exit_at if active else service.inactive_enter_at
        stamps = [t for t in (unit_time, self.last_trigger) if t is not None]
        return max(stamps) if stamps else None

    def fire_at(self, service: Service | None, booted_at: float, perturb: float) -> float | None:
        """When the timer will elapse, accuracy included (None: never)."""
        due = self.next_elapse(service, booted_at)
        if due is None or self.unit.timer is None:
            return None
        since_boot = due - booted_at
        return booted_at + sleep_between(since_boot, since_boot + self.unit.timer.accuracy, perturb)

    def states(self, service: Service | None, booted_at: float) -> tuple[str, str]:
        """(ActiveState, SubState): dead, waiting, running, elapsed, or failed."""
        if not self.active:
            return ("failed", "failed") if self.result != "success" else ("inactive", "dead")
        running = service is not None and service.active_state in ("active", "activating")
        if self.triggered and running:
            return "active", "running"
        self.triggered = False
        if self.next_elapse(service, booted_at) is None:
            return "active", "elapsed"
        return "active", "waiting"

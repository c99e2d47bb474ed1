"""What systemctl does with timer units (`sim.timers` holds when each elapses).

- `start`: a timer whose file is missing is "not found" (as a service); one
  with no value systemd can use has a "bad unit file setting" (load state
  `bad-setting`); one whose unit to trigger is not loaded refuses to start
  ("Job for X.timer failed."); otherwise it waits from now.
- `properties`: `systemctl show X.timer` (`ActiveState`, `SubState`,
  `Unit`, `NextElapseUSecMonotonic`, `LastTriggerUSecMonotonic`...).
- `fire_due`: the timers that elapsed start their unit (a unit already
  running is left running); a unit gone since fails the timer
  (`Result=resources`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sim.systemctl import Result, see
from sim.timers import Timer
from sim.units import span_text

if TYPE_CHECKING:
    from sim.systemd import Systemd

#: How `systemctl show` names each kind of timer value.
_TIMER_PROPERTY = {
    "active": "OnActiveUSec",
    "boot": "OnBootUSec",
    "startup": "OnStartupUSec",
    "unit_active": "OnUnitActiveUSec",
    "unit_inactive": "OnUnitInactiveUSec",
}


def start(systemd: Systemd, verb: str, unit: str) -> Result | None:
    """`systemctl start|restart X.timer` (None: no such file, which the caller words)."""
    loaded = systemd.load(unit)
    if loaded is None:
        return None
    timer = systemd.timer(unit, loaded)
    now = systemd.clock.now()
    if verb == "try-restart" and not timer.active:
        return Result(0)
    timer.unit = loaded
    for warning in loaded.warnings:
        timer.log(now, f"{loaded.path}: {warning}")
    if timer.bad_setting:
        timer.log(now, f"{unit}: Timer unit lacks value setting. Refusing.")
        return Result(
            1,
            stderr=(
                f"Failed to {verb} {unit}: Unit {unit} has a bad unit file setting.\n"
                f"See system logs and 'systemctl status {unit}' for details.\n"
            ),
        )
    trigger = loaded.triggers
    if systemd.load(trigger) is None:
        timer.log(now, f"{unit}: Refusing to start, unit {trigger} to trigger not loaded.")
        timer.log(now, f"Failed to start {timer.title}.")
        return Result(1, stderr=f"Job for {unit} failed.\n{see(unit)}")
    if timer.active and verb == "start":
        return Result(0)
    if timer.active:
        timer.log(now, f"Stopped {timer.title}.")
    timer.start(loaded, now)
    timer.log(now, f"Started {timer.title}.")
    return Result(0)


def properties(systemd: Systemd, unit: str) -> dict[str, str]:
    """`systemctl show X.timer`'s properties."""
    timer = systemd.timers.get(unit)
    if timer is None:
        loaded = systemd.load(unit)
        assert loaded is not None
        timer = systemd.timer(unit, loaded)
    booted_at = systemd.booted_at
    service = systemd.services.get(timer.unit.triggers)
    active, sub = timer.states(service, booted_at)
    fire = timer.fire_at(service, booted_at, systemd.perturb)
    spec = timer.unit.timer
    values = [] if spec is None else spec.values
    last = timer.last_trigger
    return {
        "Id": unit,
        "Description": timer.unit.description or unit,
        "LoadState": "bad-setting" if timer.bad_setting else "loaded",
        "ActiveState": active,
        "SubState": sub,
        "Result": timer.result,
        "Unit": timer.unit.triggers,
        "TimersMonotonic": " ".join(
            f"{{ {_TIMER_PROPERTY[base]}={span_text(seconds)} }}" for base, seconds in values
        ),
        "NextElapseUSecMonotonic": (
            "infinity" if fire is None else span_text(max(0.0, fire - booted_at))
        ),
        "LastTriggerUSecMonotonic": "0" if last is None else span_text(last - booted_at),
        "AccuracyUSec": span_text(spec.accuracy if spec else 60.0),
        "FragmentPath": timer.unit.path,
        "UnitFileState": systemd.unit_file_state(unit),
    }


def fire_due(systemd: Systemd) -> float | None:
    """Start the units of the timers that elapsed; when the next one will (or None)."""
    if not systemd.powered:
        return None
    now = systemd.clock.now()
    earliest: float | None = None
    for timer in list(systemd.timers.values()):
        trigger = timer.unit.triggers
        when = timer.fire_at(systemd.services.get(trigger), systemd.booted_at, systemd.perturb)
        if when is not None and when <= now:
            _trigger(systemd, timer, now)
            when = timer.fire_at(systemd.services.get(trigger), systemd.booted_at, systemd.perturb)
        if when is not None and (earliest is None or when < earliest):
            earliest = when
    return earliest


def _trigger(systemd: Systemd, timer: Timer, now: float) -> None:
    timer.last_trigger, timer.triggered = now, True
    started = systemd.start_service("start", timer.unit.triggers)
    if started.exit_status == 5:
        timer.log(now, f"{timer.name}: Failed to queue unit startup job: Unit not found.")
        timer.log(now, f"{timer.name}: Failed with result 'resources'.")
        timer.stop()
        timer.result = "resources"

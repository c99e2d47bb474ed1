"""When a timer elapses, as systemd computes it (`sim.timers`), and systemctl on timers."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from core.cloud import vps_contract as contract
from sim.rootfs import RootFs
from sim.service import Clock
from sim.systemd import Systemd
from sim.timers import Timer, sleep_between
from sim.units import parse_unit

AGENT = contract.AGENT_SERVICE_UNIT
TIMER = contract.AGENT_TIMER_UNIT


class ManualTime:
    """A real-clock source the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_wake_ups_coalesce_on_the_same_second_of_every_minute() -> None:
    # A 1-minute window holds exactly one "minute + perturbation" point.
    assert sleep_between(130.0, 190.0, 17.0) == 137.0
    assert sleep_between(100.0, 160.0, 17.0) == 137.0
    # A 1-second window: the point of every 250 ms step, else the window's end.
    assert sleep_between(100.0, 101.0, 17.3) == pytest.approx(100.3)
    assert sleep_between(100.0, 100.0, 17.0) == 100.0
    assert sleep_between(0.0, 60.0, 17.0) == 0.0


def timer(schedule: str) -> Timer:
    unit = parse_unit("/etc/systemd/system/a.timer", f"[Timer]\n{schedule}")
    return Timer("a.timer", unit)


def test_on_unit_active_sec_alone_waits_for_the_unit_to_have_run() -> None:
    alone = timer("OnUnitActiveSec=30s\nAccuracySec=1s\n")
    alone.start(alone.unit, now=100.0)
    assert alone.next_elapse(None, booted_at=0.0) is None
    assert alone.states(None, booted_at=0.0) == ("active", "elapsed")
    alone.last_trigger = 110.0  # it fired (or its unit ran): from then on, periodic
    assert alone.next_elapse(None, booted_at=0.0) == 140.0


def test_one_shot_values_fire_once_and_in_the_past_fire_at_once() -> None:
    boot = timer("OnBootSec=10s\nOnUnitActiveSec=30s\nAccuracySec=1s\n")
    boot.start(boot.unit, now=100.0)  # the boot value is 90 s in the past: due now
    assert boot.fire_at(None, booted_at=0.0, perturb=0.0) == pytest.approx(10.0, abs=1)
    boot.last_trigger = 100.0
    assert boot.next_elapse(None, booted_at=0.0) == 130.0  # OnBootSec= is spent
    active = timer("OnActiveSec=5s\nAccuracySec=1s\n")
    active.start(active.unit, now=20.0)
    assert active.next_elapse(None, booted_at=0.0) == 25.0
    active.last_trigger = 25.0
    assert active.next_elapse(None, booted_at=0.0) is None
    active.start(active.unit, now=50.0)  # a new activation counts again
    assert active.next_elapse(None, booted_at=0.0) == 55.0


UNITS = {
    "a.service": "[Service]\nType=oneshot\nExecStart=/usr/local/sbin/a\n",
    "a.timer": "[Timer]\nOnActiveSec=1s\nOnUnitActiveSec=30s\nAccuracySec=1s\n"
    "[Install]\nWantedBy=timers.target\n",
    "static.timer": "[Timer]\nOnActiveSec=1s\nUnit=a.service\n",
    "empty.timer": "[Timer]\nOnUnitActiveSec=soon\n[Install]\nWantedBy=timers.target\n",
    "orphan.timer": "[Timer]\nOnActiveSec=1s\n",
}


@pytest.fixture
def box(tmp_path: Path) -> tuple[Systemd, ManualTime]:
    fs = RootFs(tmp_path)
    for name, text in UNITS.items():
        fs.write(f"/etc/systemd/system/{name}", text.encode(), 0o644)
    fs.write("/usr/local/sbin/a", b"#!/bin/sh\n", 0o755)
    time = ManualTime()
    return Systemd(fs, hostname="rc-1", clock=Clock(1.0, time)), time


def props(systemd: Systemd, unit: str, *names: str) -> dict[str, str]:
    shown = systemd.systemctl(["show", unit, "-p", ",".join(names)])
    return dict(line.split("=", 1) for line in shown.stdout.splitlines())


def test_a_timer_enabled_now_fires_its_oneshot_every_period(
    box: tuple[Systemd, ManualTime],
) -> None:
    systemd, time = box
    enabled = systemd.systemctl(["enable", "--now", "a.timer"])
    assert enabled.exit_status == 0
    assert enabled.stderr == (
        "Created symlink /etc/systemd/system/timers.target.wants/a.timer → "
        "/etc/systemd/system/a.timer.\n"
    )
    assert systemd.systemctl(["is-active", "a.timer"]).stdout == "active\n"
    assert props(systemd, "a.timer", "SubState", "NextElapseUSecMonotonic") == {
        # Due at 1 s, within AccuracySec=1s; in the first minute of a boot sd-event takes
        # the window's end.
        "SubState": "waiting", "NextElapseUSecMonotonic": "2s",
    }  # fmt: skip
    for tick in range(0, 1000):
        time.now = tick / 10
        systemd.fire_due()
        # A oneshot without an asynchronous process is over by the time one looks.
        assert props(systemd, "a.service", "ActiveState")["ActiveState"] == "inactive"
    assert props(systemd, "a.service", "Result", "ExecMainStatus") == {
        "Result": "success", "ExecMainStatus": "0",
    }  # fmt: skip
    assert systemd.journal("a.service")[-1] == "Finished a.service."
    journal = systemd.services["a.service"].journal
    starts = [entry.at for entry in journal if entry.message == "Starting a.service..."]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    # Every 30 s from the last run, within AccuracySec=1s (sd-event picks the point).
    assert starts[0] == 2.0 and len(starts) >= 3 and all(30 <= gap <= 31.1 for gap in gaps)


def test_a_missing_program_fails_the_service_not_the_timer(
    box: tuple[Systemd, ManualTime],
) -> None:
    systemd, time = box
    systemd.fs.real("/usr/local/sbin/a", "/").unlink()
    systemd.systemctl(["start", "a.timer"])
    time.now = 2.0
    systemd.fire_due()
    assert props(systemd, "a.service", "ActiveState", "Result", "ExecMainStatus") == {
        "ActiveState": "failed", "Result": "exit-code", "ExecMainStatus": "203",
    }  # fmt: skip
    assert systemd.systemctl(["is-active", "a.timer"]).stdout == "active\n"
    started = systemd.systemctl(["start", "a.service"])
    assert started.exit_status == 1 and "control process exited with error code" in started.stderr


@pytest.mark.parametrize(
    ("argv", "status", "stderr"),
    [
        (["start", "nope.timer"], 5, "Failed to start nope.timer: Unit nope.timer not found.\n"),
        (["enable", "nope.timer"], 1, "Unit file nope.timer does not exist"),
        (["start", "empty.timer"], 1, "Unit empty.timer has a bad unit file setting."),
        (["start", "orphan.timer"], 1, "Job for orphan.timer failed."),
        (["stop", "nope.timer"], 5, "Unit nope.timer not loaded."),
    ],
)
def test_what_systemctl_refuses(
    box: tuple[Systemd, ManualTime], argv: list[str], status: int, stderr: str
) -> None:
    systemd, _ = box
    result = systemd.systemctl(argv)
    assert result.exit_status == status and stderr in result.stderr


def test_refusals_leave_their_reason_in_the_journal(box: tuple[Systemd, ManualTime]) -> None:
    systemd, _ = box
    systemd.systemctl(["start", "orphan.timer"])
    systemd.systemctl(["start", "empty.timer"])
    assert "orphan.timer: Refusing to start, unit orphan.service to trigger not loaded." in (
        systemd.journal("orphan.timer")
    )
    assert (
        systemd.journal("empty.timer")[-1]
        == "empty.timer: Timer unit lacks value setting. Refusing."
    )
    assert props(systemd, "empty.timer", "LoadState") == {"LoadState": "bad-setting"}


def test_enable_disable_stop_restart_and_static_units(box: tuple[Systemd, ManualTime]) -> None:
    systemd, time = box
    static = systemd.systemctl(["enable", "--now", "static.timer"])
    assert static.exit_status == 0 and "no installation config" in static.stderr
    assert systemd.systemctl(["is-enabled", "static.timer"]).stdout == "static\n"
    assert systemd.systemctl(["is-active", "static.timer"]).stdout == "active\n"
    systemd.systemctl(["enable", "a.timer"])
    assert systemd.systemctl(["is-active", "a.timer"]).stdout == "inactive\n"
    assert systemd.systemctl(["restart", "a.timer"]).exit_status == 0
    assert systemd.systemctl(["stop", "a.timer"]).exit_status == 0
    assert props(systemd, "a.timer", "ActiveState", "SubState", "UnitFileState") == {
        "ActiveState": "inactive", "SubState": "dead", "UnitFileState": "enabled",
    }  # fmt: skip
    disabled = systemd.systemctl(["disable", "--now", "a.timer", "static.timer"])
    assert disabled.stderr == 'Removed "/etc/systemd/system/timers.target.wants/a.timer".\n'
    assert systemd.systemctl(["is-enabled", "a.timer"]).exit_status == 1
    assert systemd.systemctl(["reset-failed", "a.timer"]).exit_status == 0
    time.now = 5.0
    assert systemd.fire_due() is None  # nothing is active
    status = systemd.systemctl(["status", "a.timer"])
    assert status.exit_status == 3 and "Active: inactive (dead)" in status.stdout


def test_a_boot_starts_what_is_enabled_with_fresh_counters(
    box: tuple[Systemd, ManualTime],
) -> None:
    systemd, time = box
    systemd.systemctl(["enable", "--now", "a.timer"])
    time.now = 40.0
    systemd.fire_due()
    systemd.power_off()
    assert systemd.systemctl(["is-active", "a.timer"]).stdout == "inactive\n"
    assert systemd.fire_due() is None
    time.now = 50.0
    systemd.boot()
    assert systemd.uptime() == 0.0
    assert props(systemd, "a.timer", "ActiveState", "LastTriggerUSecMonotonic") == {
        "ActiveState": "active", "LastTriggerUSecMonotonic": "0",
    }  # fmt: skip
    assert systemd.fire_due() == 52.0  # OnActiveSec=1s from the boot, AccuracySec=1s

"""What a simulated box shows of its hardware: `df`, `/proc/meminfo`, `/proc/uptime`, journals."""

from __future__ import annotations

import re
from pathlib import Path

from sim.hardware import GIB, Hardware
from sim.rootfs import RootFs
from sim.service import Clock
from sim.shell import Shell
from sim.systemd import Systemd


class ManualTime:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def box(tmp_path: Path) -> tuple[Shell, ManualTime]:
    fs = RootFs(tmp_path)
    time = ManualTime()
    systemd = Systemd(fs, hostname="rc-1", clock=Clock(1.0, time), hardware=Hardware(80, 8))
    return Shell(fs, systemd), time


def test_df_reports_the_root_filesystem_as_coreutils_does(tmp_path: Path) -> None:
    shell, _ = box(tmp_path)
    result = shell.run("df -B1 --output=avail,size /")
    header, row = result.stdout.splitlines()
    assert result.exit_status == 0 and header.split() == ["Avail", "1B-blocks"]
    avail, size = (int(v) for v in row.split())
    assert size == 80 * GIB and 0 < avail < size
    plain = shell.run("df").stdout.splitlines()
    assert plain[0].split()[:2] == ["Filesystem", "1K-blocks"] and plain[1].endswith(" /")
    assert shell.run("df -h /").exit_status == 1
    assert shell.run("df --output=nonsense /").exit_status == 1


def test_proc_files_tell_memory_and_uptime(tmp_path: Path) -> None:
    shell, time = box(tmp_path)
    time.now = 12.5
    assert shell.run("cat /proc/uptime").stdout.split()[0] == "12.50"
    meminfo = shell.run("cat /proc/meminfo").stdout
    values = dict(re.findall(r"^(\w+):\s+(\d+) kB$", meminfo, re.MULTILINE))
    assert int(values["MemTotal"]) * 1024 == 8 * GIB
    assert 0 < int(values["MemAvailable"]) < int(values["MemTotal"])
    assert shell.run("cat /proc/cpuinfo").exit_status == 1  # no other kernel file


def test_journalctl_since_and_iso_timestamps(tmp_path: Path) -> None:
    shell, time = box(tmp_path)
    shell.fs.write("/etc/systemd/system/a.service", b"[Service]\nExecStart=/bin/a\n", 0o644)
    assert shell.run("systemctl start a.service").exit_status == 0
    time.now = 100.0
    shell.run("systemctl stop a.service")
    wall = shell.systemd.clock.wall(50.0)
    later = shell.run(f"journalctl -u a.service --since @{int(wall)} -o cat --no-pager")
    assert later.stdout.splitlines() == [
        "Stopping a.service...", "a.service: Deactivated successfully.", "Stopped a.service.",
    ]  # fmt: skip
    iso = shell.run("journalctl -u a.service -n 1 -o short-iso --no-pager").stdout
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+0000 rc-1 systemd\[1\]: Stopped a.service.\n", iso
    )
    assert shell.run("journalctl -u a.service --since yesterday").exit_status == 1
    assert shell.run("journalctl -u a.service -o json").exit_status == 1

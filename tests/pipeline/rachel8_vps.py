"""What a simulated VPS holds for Rachel8, read the way the tests check it."""

from __future__ import annotations

import stat
from dataclasses import dataclass

from core.cloud import vps_contract as vps
from sim.vps import Vps

LAYOUT = vps.Layout("rachel")


@dataclass(frozen=True)
class File:
    """A file on the VPS: its text, mode and (virtual) owner's uid and gid."""

    text: str
    mode: int
    uid: int
    gid: int


def read(machine: Vps, path: str) -> File:
    real = machine.fs.real(path, "/")
    owner = machine.fs.owners.get(path)
    return File(real.read_text(), stat.S_IMODE(real.stat().st_mode), owner[0], owner[1])


def env(machine: Vps) -> dict[str, str]:
    """Rachel8's `.env` as KEY -> value."""
    text = read(machine, LAYOUT.env_path).text
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def user_ids(machine: Vps) -> tuple[int, int]:
    account = machine.fs.accounts.get(LAYOUT.user)
    assert account is not None, "the install made no rachel user"
    return account.uid, account.gid


def service(machine: Vps) -> dict[str, str]:
    """The Rachel8 unit's properties, as `systemctl show` prints them."""
    return machine.systemd.properties(vps.SERVICE_UNIT)

"""What a simulated VPS holds for Rachel8, read the way the tests check it."""

from __future__ import annotations

import shutil
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


def journal(machine: Vps) -> list[str]:
    """Every line the Rachel8 unit logged, as `journalctl -u` prints them."""
    return machine.systemd.journal(vps.SERVICE_UNIT)


def write(machine: Vps, path: str, text: str, mode: int, owner: tuple[int, int]) -> None:
    """Put a file on the VPS as a program running there would (not through the control plane)."""
    machine.fs.write(path, text.encode(), mode, owner=owner)


def remove(machine: Vps, path: str) -> None:
    """`rm -rf path` on the VPS."""
    real = machine.fs.real(path, "/")
    if real.is_dir():
        shutil.rmtree(real)
    else:
        real.unlink()
    machine.fs.owners.drop(path)


def set_unit_environment(machine: Vps, name: str, value: str) -> None:
    """Add `Environment=NAME=value` to the Rachel8 unit, as an administrator's edit would.

    systemd passes it to the process, where it wins over `.env` (Bun keeps
    variables the environment already has).
    """
    real = machine.fs.real(vps.SERVICE_UNIT_PATH, "/")
    text = real.read_text().replace("[Service]\n", f"[Service]\nEnvironment={name}={value}\n", 1)
    real.write_text(text)

"""A copy of a simulated VPS's disk: what a snapshot image holds.

Hetzner's `create_image` copies the server's disk. Here that is every file
of the VPS's root directory (links kept as links, modes kept) and what the
simulator keeps beside the files for them: who owns each path
(`sim.owners`), the users (`/etc/passwd`), the units enabled (the
`*.wants` links) and the packages installed (dpkg's database). A server
made from the image starts with a copy of all of it (`Disk.restore`), and
then does what any new instance does (`sim.vps`): a new host key,
cloud-init with its own user data.

Copying is blocking I/O: callers run it in a worker thread.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from sim.accounts import Account
from sim.hardware import GIB, USED_DISK
from sim.owners import Owner
from sim.rootfs import RootFs
from sim.systemd import Systemd

#: Hetzner stores snapshots compressed: about this share of the disk in use.
COMPRESSION = 0.45


def image_size_gb() -> float:
    """The `image_size` of a snapshot: the disk in use, compressed (`sim.hardware`'s model)."""
    return round(USED_DISK / GIB * COMPRESSION, 2)


@dataclass(frozen=True)
class Disk:
    """A copy of one VPS's disk at the moment it was taken.

    Attributes:
        path: the real directory holding the copied files (`/` of the copy).
        owners: path -> (uid, gid), as `sim.owners.Owners` kept them.
        accounts: the users but root.
        enabled: the systemd units enabled.
        packages: the packages installed.
    """

    path: Path
    owners: dict[str, Owner]
    accounts: tuple[Account, ...]
    enabled: frozenset[str]
    packages: tuple[str, ...]

    @classmethod
    def capture(
        cls, fs: RootFs, systemd: Systemd, packages: list[str], parent: Path, label: str
    ) -> Disk:
        """Copy the disk of the VPS whose filesystem is `fs` into a new directory of `parent`."""
        path = Path(tempfile.mkdtemp(prefix=f"rachel-sim-image-{label}-", dir=parent))
        shutil.copytree(fs.root, path, symlinks=True, dirs_exist_ok=True)
        with systemd.lock:
            enabled = frozenset(systemd.enabled)
        return cls(
            path=path,
            owners=fs.owners.entries(),
            accounts=tuple(a for a in fs.accounts.all() if a.uid != 0),
            enabled=enabled,
            packages=tuple(packages),
        )

    def restore(self, fs: RootFs, systemd: Systemd) -> list[str]:
        """Lay the copy onto a new VPS's (empty) disk; returns the packages installed."""
        shutil.copytree(self.path, fs.root, symlinks=True, dirs_exist_ok=True)
        fs.owners.load(self.owners)
        fs.accounts.load(list(self.accounts))
        with systemd.lock:
            systemd.enabled = set(self.enabled)
        return list(self.packages)

    def remove(self) -> None:
        """Delete the copied files (the image is deleted)."""
        shutil.rmtree(self.path, ignore_errors=True)

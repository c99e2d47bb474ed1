"""Where the simulator keeps its VPSs' root directories.

A simulated VPS's `/` is a throwaway directory: the simulator makes it when
the server boots and removes it when the server is deleted. By default each
simulator makes one scratch directory of its own for them, on a RAM-backed
filesystem when the machine has one with room: creating a VPS writes about
a dozen directories and files, and on a journalled disk that cost a VPS
5.7 ms of CPU (4.4 of it in the kernel) against 1.3 ms on tmpfs (measured on
the 2-core benchmark machine), which at 50 servers a second is a fifth of a
core spent on a disk that, for a real VPS, is not on our machine at all.

A simulator that is killed cannot remove its scratch directory; the next one
to start removes those whose process is gone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import tempfile
from pathlib import Path

from core.supervisor import process_alive

log = logging.getLogger(__name__)

#: RAM-backed directories tried in order (Linux's POSIX shared memory mount).
RAM_DIRS: tuple[Path, ...] = (Path("/dev/shm"),)  # noqa: S108 - only a parent for mkdtemp
#: A RAM-backed directory with less room than this is passed over: a thousand
#: VPSs take ~40 MB there, and a container's /dev/shm is often only 64 MB.
MIN_FREE_BYTES = 1 << 30

_PREFIX = "rachel-sim-"
_OWNED = re.compile(rf"^{_PREFIX}(\d+)-")


def ram_backed_dir(
    candidates: tuple[Path, ...] = RAM_DIRS, min_free: int = MIN_FREE_BYTES
) -> Path | None:
    """The first candidate that exists, is writable and has `min_free` bytes free, else None."""
    for candidate in candidates:
        try:
            stats = os.statvfs(candidate)
        except OSError:
            continue
        if stats.f_bavail * stats.f_frsize >= min_free and os.access(candidate, os.W_OK | os.X_OK):
            return candidate
    return None


def sweep_stale(parent: Path) -> list[Path]:
    """Remove scratch directories in `parent` left by simulators that are gone.

    Only directories this user owns and whose simulator process no longer
    exists are removed.

    Returns:
        The directories removed.
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return removed
    for entry in entries:
        match = _OWNED.match(entry.name)
        if match is None or not entry.is_dir(follow_symlinks=False):
            continue
        with contextlib.suppress(OSError):
            if entry.stat(follow_symlinks=False).st_uid != os.getuid():
                continue
            pid = int(match.group(1))
            if pid == os.getpid() or process_alive(pid):
                continue
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(Path(entry.path))
    if removed:
        log.info("removed %d directories of stopped simulators in %s", len(removed), parent)
    return removed


def make_scratch(parent: Path | None = None) -> Path:
    """Make this simulator's scratch directory for VPS roots.

    Args:
        parent: where to make it; None picks a RAM-backed directory with
            room, else the system temp directory.

    Returns:
        The new, empty directory (0700). The caller removes it when done.
    """
    if parent is None:
        parent = ram_backed_dir() or Path(tempfile.gettempdir())
    else:
        parent.mkdir(parents=True, exist_ok=True)
    sweep_stale(parent)
    return Path(tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-", dir=parent))

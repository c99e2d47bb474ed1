"""What a simulated VPS's hardware shows: disk and memory figures, `/proc` files, `df`.

The figures are the server type's (Hetzner's GB are GiB), less what an
Ubuntu image with Rachel8 installed uses; Rachel8 and Claude Code take
memory while Rachel8 runs. The health agent (`sim.agent`) and the shell
(`cat /proc/meminfo`, `cat /proc/uptime`, `df`) read the same numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

GIB = 1024**3
#: What the image, Bun, Claude Code and Rachel8's dependencies take on disk.
USED_DISK = int(6.5 * GIB)
#: Shares of memory in use: the system alone, and with Rachel8 running.
IDLE_MEMORY, BUSY_MEMORY = 0.12, 0.28
#: `df --output` fields: (header, with -B1) and the value's name.
_DF_FIELDS = {
    "source": "Filesystem",
    "size": "{blocks}",
    "used": "Used",
    "avail": "Avail",
    "pcent": "Use%",
    "target": "Mounted on",
}


@dataclass(frozen=True)
class Hardware:
    """The server type's disk and memory, in GB (GiB, as Hetzner counts them)."""

    disk_gb: float = 40
    memory_gb: float = 4

    def disk(self) -> tuple[int, int]:
        """(free, total) bytes of the root filesystem (`statvfs("/")`)."""
        total = int(self.disk_gb * GIB)
        return max(0, total - USED_DISK), total

    def memory(self, busy: bool) -> tuple[int, int]:
        """(available, total) bytes (`MemAvailable`, `MemTotal`)."""
        total = int(self.memory_gb * GIB)
        return int(total * (1 - (BUSY_MEMORY if busy else IDLE_MEMORY))), total

    def meminfo(self, busy: bool) -> str:
        """`/proc/meminfo` (its first lines), in kB."""
        available, total = self.memory(busy)
        free = int(available * 0.6)
        lines = [("MemTotal", total), ("MemFree", free), ("MemAvailable", available)]
        lines += [("Buffers", 64 * 1024**2), ("Cached", available - free)]
        return "".join(f"{name + ':':<16}{value // 1024:>8} kB\n" for name, value in lines)

    def df(self, fields: list[str], block: int) -> str | None:
        """`df --output=FIELDS /` with `block`-byte blocks (None: an unknown field)."""
        if any(f not in _DF_FIELDS for f in fields):
            return None
        free, total = self.disk()
        used = total - free
        values = {
            "source": "/dev/sda1",
            "size": str(total // block),
            "used": str(used // block),
            "avail": str(free // block),
            "pcent": f"{-(-used * 100 // total)}%",
            "target": "/",
        }
        blocks = "1B-blocks" if block == 1 else f"{block // 1024}K-blocks"
        header = [_DF_FIELDS[f].format(blocks=blocks) for f in fields]
        row = [values[f] for f in fields]
        widths = [max(len(h), len(r)) for h, r in zip(header, row, strict=True)]
        return (
            "\n".join(
                " ".join(cell.rjust(width) for cell, width in zip(line, widths, strict=True))
                for line in (header, row)
            )
            + "\n"
        )


def uptime_text(uptime: float) -> str:
    """`/proc/uptime`: seconds since the boot, and the idle seconds of all CPUs."""
    return f"{uptime:.2f} {uptime * 1.8:.2f}\n"

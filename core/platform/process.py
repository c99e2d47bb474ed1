"""Whether a process still runs: the liveness check behind pid-holding locks and registries.

Workers, scheduled-task locks and the simulator's scratch directories record
a pid; a record whose process is gone on this host is stale.
"""

from __future__ import annotations

import os


def process_alive(pid: int) -> bool:
    """True while a process with this pid exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: it exists
    return True

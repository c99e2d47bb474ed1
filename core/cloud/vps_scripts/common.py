"""What the VPS scripts share: `render` splices the block below into each.

The scripts run standalone on the VPS (nothing of ours is installed there), so
they cannot import this module; as modules here they do, which keeps them
checkable while the code is written once.
"""

from __future__ import annotations

# <shared>
import shlex


def read_env(path: str) -> dict[str, str]:
    """KEY=VALUE lines, shell-quoted as the renderer writes them (unreadable: empty)."""
    values: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                words = shlex.split(line, comments=True)
                if len(words) == 1 and "=" in words[0]:
                    key, _, value = words[0].partition("=")
                    values[key] = value
    except (OSError, ValueError):
        pass
    return values


# </shared>

"""The TUI's session and its shared connection state, as plain values (no Textual).

The app owns both: `Session` is fixed for the run, `Connections` is the value of
the app's reactive `connections`, replaced (never changed in place) so that
Textual's reactive comparison sees every change.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from tui.backend import Backend

#: The connections the TUI depends on, as `Connections` and `backend.classify` name them.
KINDS = ("database", "redis")


@dataclass(frozen=True)
class Session:
    """What the screens work with for the whole run.

    Attributes:
        backend: the blocking reads and actions (called from thread workers only).
        readonly: actions are disabled (shown greyed out, refused when asked for).
        refresh_seconds: how often the fleet is read in full (the live updates' safety net).
        summary_seconds: how often the summary bar is read.
        tick_seconds: how often the time columns advance.
    """

    backend: Backend
    readonly: bool = False
    refresh_seconds: float = 30.0
    summary_seconds: float = 5.0
    tick_seconds: float = 1.0


@dataclass(frozen=True)
class Connections:
    """Which connections are lost, and why; empty while everything answers."""

    lost: Mapping[str, str] = field(default_factory=dict)

    def update(self, kind: str, ok: bool, reason: str = "") -> Connections:
        """The state after learning that `kind` answers (`ok`) or not (`reason`)."""
        lost = dict(self.lost)
        if ok:
            lost.pop(kind, None)
        else:
            lost[kind] = reason or "lost"
        return Connections(lost)

    def recovered_since(self, before: Connections) -> bool:
        """Whether a connection lost in `before` answers now (what was missed needs reading)."""
        return any(kind not in self.lost for kind in before.lost)

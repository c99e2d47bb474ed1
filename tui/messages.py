"""The messages between the app and its screens.

Screens tell the app what they found or want (`ConnectionReport`, `ActionRequested`:
posted on the screen, they bubble up to the app); the app tells every screen on
its stack what changed (`ConnectionChanged`, `ServersChanged`, `ActionsFinished`:
posted to each screen, they do not bubble back).
"""

from __future__ import annotations

from collections.abc import Iterable

from textual.message import Message

from tui.cells import Row
from tui.state import Connections


class ConnectionReport(Message):
    """A read found `kind` ("database" or "redis") answering (`ok`) or not (`reason`).

    Safe to post from a worker thread.
    """

    def __init__(self, kind: str, ok: bool, reason: str = "") -> None:
        super().__init__()
        self.kind = kind
        self.ok = ok
        self.reason = reason


class ConnectionChanged(Message, bubble=False):
    """The app's connection state changed; `recovered`: a lost connection is back."""

    def __init__(self, connections: Connections, *, recovered: bool) -> None:
        super().__init__()
        self.connections = connections
        self.recovered = recovered


class ServersChanged(Message, bubble=False):
    """These servers changed (live events, or the operator's actions)."""

    def __init__(self, ids: Iterable[int]) -> None:
        super().__init__()
        self.ids = frozenset(ids)


class ActionRequested(Message):
    """The operator asked for `action` ("retry", "reinject", "deprovision") on `rows`."""

    def __init__(self, action: str, rows: Iterable[Row]) -> None:
        super().__init__()
        self.action = action
        self.rows = tuple(rows)


class ActionsFinished(Message, bubble=False):
    """The operator's `action` ran on servers `ids` (the outcome is already notified)."""

    def __init__(self, action: str, ids: Iterable[int]) -> None:
        super().__init__()
        self.action = action
        self.ids = frozenset(ids)

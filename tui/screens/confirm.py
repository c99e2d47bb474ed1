"""Confirmation of an operator's action.

Force deprovisioning destroys: the operator types what they destroy. Retry and
re-inject change running servers (a re-inject restarts the customer's bot), and
the rollout's pause, resume, abort and roll back change the fleet: the operator
reads what happens to how many servers and presses `y` (`ConfirmChoice`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Label, Static

from tui.cells import Row

#: Servers listed by name in a bulk confirmation (the rest are counted).
LISTED = 10


def confirmation_word(rows: Sequence[Row]) -> str:
    """What must be typed: the server's name for one server, the count for several."""
    if len(rows) == 1:
        server = rows[0].server
        return server.name or str(server.id)
    return str(len(rows))


def describe(rows: Sequence[Row]) -> str:
    """What will be destroyed, one line per server."""
    lines = []
    for row in rows[:LISTED]:
        s = row.server
        lines.append(
            f"  • {s.name or '(unnamed)'}  id {s.id}  customer {s.customer}  "
            f"{s.status}  {s.ipv4 or 'no address'}  {s.location}"
            + (f"  hetzner #{s.provider_id}" if s.provider_id else "")
        )
    if len(rows) > LISTED:
        lines.append(f"  ... and {len(rows) - LISTED} more")
    return "\n".join(lines)


#: Action name -> (title verb, what happens to each server), for `ConfirmAction`.
CONSEQUENCES: dict[str, tuple[str, str]] = {
    "retry": (
        "Retry",
        "Each failed server is provisioned again from the phase that failed "
        "(servers that are not failed are refused).",
    ),
    "reinject": (
        "Re-inject secrets into",
        "Each server gets its customer's current secrets again and its Rachel8 bot "
        "is RESTARTED: the customer's bot is offline while it restarts.",
    ),
}


class ConfirmChoice(ModalScreen[bool]):
    """Asks `question`, saying what happens (`body`); dismisses with True only on `y`."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "confirm", "Yes, do it"),
        Binding("n", "cancel", "No"),
        Binding("escape", "cancel", "Cancel"),
    ]

    def __init__(self, question: str, body: str) -> None:
        super().__init__()
        self.question = question
        self.body = body

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box"):
            yield Label(self.question, id="confirm-title")
            yield Static(self.body, id="confirm-what")
            yield Label("Press y to confirm, n or escape to cancel", id="confirm-prompt")

    def action_confirm(self) -> None:
        self.dismiss(True)

    def action_cancel(self) -> None:
        self.dismiss(False)


class ConfirmAction(ConfirmChoice):
    """Asks before a retry or re-inject of servers."""

    def __init__(self, action: str, rows: Sequence[Row]) -> None:
        """Ask about `action` (a key of `CONSEQUENCES`) on `rows`."""
        n = len(rows)
        what = f"server {rows[0].server.name or rows[0].server.id}" if n == 1 else None
        super().__init__(
            f"{CONSEQUENCES[action][0]} {what or f'these {n} servers'}?",
            CONSEQUENCES[action][1] + "\n" + describe(rows),
        )
        self.action = action
        self.rows = list(rows)


class ConfirmDestroy(ModalScreen[bool]):
    """Asks before force-deprovisioning; dismisses with True only on the exact word."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, rows: Sequence[Row]) -> None:
        super().__init__()
        self.rows = list(rows)
        self.word = confirmation_word(self.rows)

    def compose(self) -> ComposeResult:
        n = len(self.rows)
        what = "this server" if n == 1 else f"these {n} servers"
        with Vertical(id="confirm-box"):
            yield Label(f"Force deprovision {what}?", id="confirm-title")
            yield Static(
                f"This stops any provisioning and DELETES the Hetzner VPS of {what}, "
                "with everything on it:\n" + describe(self.rows),
                id="confirm-what",
            )
            prompt = (
                f"Type the server's name ({self.word}) to confirm"
                if n == 1
                else f"Type the number of servers ({self.word}) to confirm"
            )
            yield Label(prompt, id="confirm-prompt")
            yield Input(id="confirm-input")
            yield Label("", id="confirm-error")

    def on_mount(self) -> None:
        self.query_one(Input).focus()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        if event.value.strip() == self.word:
            self.dismiss(True)
        else:
            self.query_one("#confirm-error", Label).update(
                f"'{event.value}' does not match; type {self.word} or press escape"
            )

    def action_cancel(self) -> None:
        self.dismiss(False)

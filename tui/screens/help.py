"""`?`: the keys of the screen it was opened from."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Label, Static


def key_table(screen: Screen[object]) -> Table:
    """The active bindings of `screen` (its own, its focused widget's and the app's)."""
    table = Table(box=None, show_header=False, padding=(0, 2))
    table.add_column("key", style="bold cyan", no_wrap=True)
    table.add_column("what")
    seen: set[str] = set()
    # The screen's own keys first, then the app's, then the focused widget's.
    rank = {screen: 0, screen.app: 1}
    ordered = sorted(screen.active_bindings.items(), key=lambda kv: rank.get(kv[1].node, 2))
    for key, active in ordered:
        binding = active.binding
        if not binding.description or binding.action in seen:
            continue
        seen.add(binding.action)
        shown = binding.key_display or screen.app.get_key_display(binding)
        suffix = "" if active.enabled else "  (disabled)"
        table.add_row(shown or key, binding.description + suffix)
    return table


class HelpScreen(ModalScreen[None]):
    """Lists the keys of the screen below it; any of escape, q or ? closes it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close"),
        Binding("q", "close", "Close", show=False),
        Binding("question_mark", "close", "Close", show=False),
    ]

    def __init__(self, under: Screen[object]) -> None:
        super().__init__()
        self.under = under

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box"):
            yield Label(f"Keys: {type(self.under).__name__.removesuffix('Screen').lower()}")
            yield Static(key_table(self.under), id="help-keys")
            yield Label("ctrl+p: command palette (every action)", classes="dim")

    def action_close(self) -> None:
        self.dismiss()

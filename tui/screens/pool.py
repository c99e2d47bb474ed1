"""The warm pool and the snapshot images: each place's target, the pool servers, the images.

At the top whether the pool is on (its places summed) or off (it drains),
and what idle capacity costs (the billed pool servers, RACHEL_PRICES; the
images' storage, RACHEL_SNAPSHOT_PRICE); then each place the pool holds (warm,
being made, its target and bounds), the pool servers not deleted and the
images not deleted (`*`: the one new servers start from). `r` runs a refill
pass now, after asking: what `rachel-cloud pool refill` runs
(`jobs.pool.refill_now`, through `Operations`).
"""

from __future__ import annotations

from typing import ClassVar

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Static

from tui.cells import Cell
from tui.messages import ServersChanged
from tui.pool_reads import PoolData
from tui.pool_view import (
    IMAGE_COLUMNS,
    PLACE_COLUMNS,
    SERVER_COLUMNS,
    head_text,
    image_cells,
    place_cells,
    refill_confirmation,
    server_cells,
)
from tui.screens.base import LoadingScreen, PaletteCommand
from tui.widgets import add_columns, fill_table, titled_table

#: How often the screen reads the pool again (a refill publishes no live message).
REFRESH_SECONDS = 2.0

Rows = list[tuple[str, list[Cell]]]


class PoolScreen(LoadingScreen[PoolData]):
    """The warm pool's places and servers, the images, and what they cost."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
        Binding("r", "refill", "Refill now"),
        Binding("ctrl+r", "reload", "Reload"),
    ]

    WRITE_ACTIONS = frozenset({"refill"})
    RELOAD_SECONDS = REFRESH_SECONDS

    def __init__(self) -> None:
        super().__init__()
        self.data: PoolData | None = None
        self._shown: dict[str, Rows] = {}  # each table's rows as last drawn

    def compose_body(self) -> ComposeResult:
        yield Static("pool: loading…", id="pool-head")
        yield from titled_table(
            "Places (target: what the refill keeps, warm or being made)", "pool-places"
        )
        yield from titled_table("Pool servers, newest first", "pool-servers", rows=True)
        yield from titled_table("Images (* new servers start from it), newest first", "pool-images")

    def on_mount(self) -> None:
        add_columns(self.query_one("#pool-places", DataTable), *PLACE_COLUMNS)
        servers = self.query_one("#pool-servers", DataTable)
        add_columns(servers, *SERVER_COLUMNS)
        add_columns(self.query_one("#pool-images", DataTable), *IMAGE_COLUMNS)
        servers.focus()

    # -- loading and showing -----------------------------------------------------

    def load(self) -> PoolData:
        return self.backend.load_pool()

    @on(ServersChanged)
    def _servers_changed(self) -> None:
        self.reload()  # a deploy may have claimed a pool server

    def show(self, data: PoolData) -> None:
        self.report_connection("database", True)
        self.data = data
        self.query_one("#pool-head", Static).update(head_text(data))
        now = self.backend.now()
        places = [(f"{p.location}/{p.server_type}", place_cells(p)) for p in data.places or ()]
        off = data.places is None
        self._fill("#pool-places", places, "no place: the pool is off" if off else "no place")
        servers = [(str(s.id), server_cells(s, now)) for s in data.servers]
        self._fill("#pool-servers", servers, "no pool server")
        images = [(str(i.id), image_cells(i)) for i in data.images]
        self._fill("#pool-images", images, "no image: new servers install on the stock image")

    def _fill(self, selector: str, rows: Rows, empty: str) -> None:
        """Redraw a table whose rows changed since it was last drawn (ages move, ids do not)."""
        if self._shown.get(selector) != rows:
            self._shown[selector] = rows
            fill_table(self.query_one(selector, DataTable), rows, empty)

    # -- the refill ----------------------------------------------------------------

    def action_refill(self) -> None:
        """Confirm a refill pass with the operator, then run it."""
        if self.data is None:
            self.notify("the pool is not loaded yet", severity="warning")
            return
        question, body = refill_confirmation(self.data)
        self.ask_first(question, body, "refill", self._refill)

    @work(thread=True, group="pool-refill", exit_on_error=False)
    def _refill(self) -> None:
        """Run the CLI's refill pass; report what it did, or why it was refused."""
        self.report_outcome("refill", self.backend.run_pool_refill)

    def palette_commands(self) -> list[PaletteCommand]:
        return [
            PaletteCommand("Refill the pool now", "r, asks first", self.action_refill, True),
            PaletteCommand("Reload the pool", "ctrl+r", self.action_reload, False),
            PaletteCommand("Back to the fleet", "escape", self.action_back, False),
        ]

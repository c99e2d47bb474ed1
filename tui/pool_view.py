"""What the pool screen shows, as plain values: the rows, the head, the refill's question. Pure.

The screen (`tui.screens.pool`) only draws these; every rule of the pool (each
place's target, what a refill recycles and creates) stays in
`core.domain.pool` and `jobs.pool`, whose results the reads carry.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

from rich.text import Text

from core.domain.images import ImageState
from core.domain.pool import IN_POOL, PlaceStatus, PoolState
from core.domain.pool_metrics import PoolSnapshot
from core.domain.releases import short
from tui.cells import Cell, duration, timestamp
from tui.pool_reads import ImageInfo, PoolData, PoolServerInfo

POOL_STYLE: Mapping[str, str] = {
    PoolState.CREATING: "cyan",
    PoolState.BOOTING: "blue",
    PoolState.WARM: "bold green",
    PoolState.CLAIMED: "magenta",
    PoolState.RECYCLING: "yellow",
}
IMAGE_STYLE: Mapping[str, str] = {
    ImageState.BUILDING: "cyan",
    ImageState.AVAILABLE: "green",
    ImageState.FAILED: "bold red",
}
#: The longest reason shown in a cell (the rest is cut; the CLI lists it whole).
REASON_CHARS = 200
#: Each table's columns (label, width), in the order of its cells below.
PLACE_COLUMNS = (("PLACE", 16), ("WARM", 5), ("BEING MADE", 10), ("TARGET", 6), ("BOUNDS", 8))
SERVER_COLUMNS = (("ID", 5), ("STATE", 9), ("PLACE", 16), ("HETZNER", 9), ("COMMIT", 12),
                  ("CLAIMED BY", 10), ("AGE", 7), ("REASON", 60))  # fmt: skip
IMAGE_COLUMNS = ((" ", 1), ("ID", 5), ("STATE", 9), ("COMMIT", 12), ("SIZE GB", 7),
                 ("CREATED", 19), ("REASON", 60))  # fmt: skip


def _reason(text: str | None, style: str = "") -> Cell:
    line = (text or "").replace("\n", " ")[:REASON_CHARS]
    return Cell(line or "-", style if line else "dim")


def _count(n: int, style: str = "") -> Cell:
    return Cell(str(n), style if n else "dim")


def short_of_target(place: PlaceStatus) -> int:
    """Servers the place lacks of its target, counting those being made."""
    return max(0, place.target - place.warm - place.making)


def place_cells(place: PlaceStatus) -> list[Cell]:
    """A row of the places table: place, warm, being made, target, bounds."""
    short_now = short_of_target(place)
    return [
        Cell(f"{place.location}/{place.server_type}", "bold"),
        _count(place.warm, "bold green" if place.warm >= place.target else "yellow"),
        _count(place.making, "cyan"),
        Cell(str(place.target), "yellow" if short_now else ""),
        Cell(f"{place.size.minimum}..{place.size.maximum}", "dim"),
    ]


def server_cells(server: PoolServerInfo, now: datetime) -> list[Cell]:
    """A row of the pool servers table (its age at `now`)."""
    return [
        Cell(str(server.id), ""),
        Cell(server.state, POOL_STYLE.get(server.state, "")),
        Cell(f"{server.location}/{server.server_type}", ""),
        Cell(str(server.provider_id or "-"), "" if server.provider_id else "dim"),
        Cell(short(server.commit), ""),
        Cell(str(server.server_id or "-"), "magenta" if server.server_id else "dim"),
        Cell(duration((now - server.created_at).total_seconds()), ""),
        _reason(server.reason, "yellow"),
    ]


def image_cells(image: ImageInfo) -> list[Cell]:
    """A row of the images table (`*`: the image new servers start from)."""
    size = "-" if image.size_gb is None else f"{image.size_gb:.1f}"
    return [
        Cell("*" if image.current else " ", "bold green"),
        Cell(str(image.id), ""),
        Cell(image.state, IMAGE_STYLE.get(image.state, "")),
        Cell(short(image.commit), "bold" if image.current else ""),
        Cell(size, "" if image.size_gb is not None else "dim"),
        Cell(timestamp(image.created_at), ""),
        _reason(image.reason, "red"),
    ]


def pool_line(places: Sequence[PlaceStatus] | None) -> Text:
    """The pool as a whole: on (its places summed) or off (it drains)."""
    if places is None:
        return Text(
            "the pool is off (RACHEL_POOL=false): it drains, every pool server is "
            "recycled and its VPS deleted at the refill's next pass",
            style="bold yellow",
        )
    text = Text("pool on", style="bold green")
    warm = sum(p.warm for p in places)
    making = sum(p.making for p in places)
    target = sum(p.target for p in places)
    text.append(f"  {len(places)} place(s): {warm} warm, {making} being made; target {target}")
    short_now = sum(short_of_target(p) for p in places)
    if short_now:
        text.append(f"  ({short_now} short: the next refill creates them)", style="yellow")
    return text


def cost_line(costs: PoolSnapshot) -> Text:
    """What idle capacity costs: the billed pool servers (RACHEL_PRICES), the images' storage."""
    idle = costs.idle
    text = Text("idle ", style="bold")
    text.append(
        f"{idle.servers} billed pool server(s): €{idle.per_hour:.3f}/h, "
        f"€{idle.per_month:.2f}/month (RACHEL_PRICES)"
    )
    if idle.unpriced:
        text.append(f"  {idle.unpriced} unpriced: see RACHEL_PRICES", style="yellow")
    text.append("  | ", style="dim")
    text.append("images ", style="bold")
    text.append(
        f"{costs.snapshot_gb:.1f} GB stored: €{costs.snapshot_eur_month:.2f}/month "
        "(RACHEL_SNAPSHOT_PRICE)"
    )
    return text


def head_text(data: PoolData) -> Text:
    """The screen's head: the pool on or off, then what it and the images cost."""
    text = pool_line(data.places)
    text.append("\n")
    text.append_text(cost_line(data.costs))
    return text


def refill_confirmation(data: PoolData) -> tuple[str, str]:
    """The question and the consequences the operator confirms before a refill pass."""
    if data.places is None:
        owned = sum(s.state in IN_POOL for s in data.servers)
        return (
            "Run a pool refill pass now (the pool is off)?",
            f"The pool drains: each of its {owned} server(s) being made or warm is recycled "
            "and its VPS DELETED on Hetzner. Nothing is created.",
        )
    short_now = sum(short_of_target(p) for p in data.places)
    return (
        "Run a pool refill pass now?",
        "Pool servers of an older release, surplus and stuck ones are recycled (their VPS "
        f"deleted); then each place gets what it lacks of its target ({short_now} server(s) "
        "now), each created on Hetzner and billed like a customer's. The same pass as "
        "`rachel-cloud pool refill`.",
    )

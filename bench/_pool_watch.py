"""What `bench/pool.py` watches: the pool over time, who made which API calls, what is left.

- `PoolWatch`: a thread sampling the pool every simulated second as the
  refill sees it (`jobs.pool.read`: each place's adaptive target, its servers
  by state) and what the billed ones cost (`core.domain.costs.pool_idle_cost`).
- `attribute`: a phase's Hetzner API calls (the simulator's counters) split
  into the deploys' own and the others' of the same window (image builds,
  pool refills and recycling, the pool's and the reconciler's listings),
  counted from the rows those others wrote.
- `audit`: every server and snapshot on the simulator classified against the
  database (a customer's, the pool's, a running build's, or an orphan), and
  the reconciler's own diff.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from core.domain.costs import pool_idle_cost
from core.domain.images import ImageState
from core.domain.pool import OWNS_VPS, Place, PoolState
from core.errors import RachelError
from core.store.db import connection
from core.store.models import Image, PoolServer, Server
from jobs import pool as pool_jobs
from jobs import reconcile
from jobs.context import JobContext

#: Operations only an image build makes (its power actions, snapshot and waits).
BUILD_OPS = (
    "shutdown_server",
    "power_off_server",
    "create_image_from_server",
    "get_image",
    "delete_image",
    "get_action",
    "get_server_action",
    "get_action_for_server",
)
#: Listings: the pool's before deleting recycled servers, the reconciler's pass.
LISTING_OPS = ("list_servers", "list_images")


def epoch(when: datetime | None) -> float | None:
    """A stored naive-UTC time as epoch seconds (None stays None)."""
    return None if when is None else when.replace(tzinfo=UTC).timestamp()


@dataclass(frozen=True)
class Sample:
    """The pool at one place at one instant (epoch seconds; counts of its rows)."""

    at: float
    target: int
    warm: int
    making: int  # creating or booting
    recycling: int
    commit: str  # the fleet's release
    old_release: int  # rows owning a VPS (recycling too) of another release than the fleet's
    idle_eur_hour: float  # every place's billed pool servers


class PoolWatch(threading.Thread):
    """Samples the pool every `period` seconds until stopped (a daemon thread)."""

    def __init__(self, ctx: JobContext, place: Place, period: float) -> None:
        super().__init__(name="pool-watch", daemon=True)
        self.ctx, self.place, self.period = ctx, place, period
        self.samples: list[Sample] = []
        self.errors = 0
        self._stop_event = threading.Event()

    def sample(self) -> Sample:
        """Read the pool once (as the refill reads it)."""
        seen = pool_jobs.read(self.ctx)
        owned = [s for s in seen.servers if s.state in [x.value for x in OWNS_VPS]]
        here = Counter(s.state for s in owned if s.place == self.place)
        idle = pool_idle_cost(seen.servers, self.ctx.settings.server_prices)
        return Sample(
            at=time.time(),
            target=seen.targets.get(self.place, 0),
            warm=here[PoolState.WARM.value],
            making=here[PoolState.CREATING.value] + here[PoolState.BOOTING.value],
            recycling=here[PoolState.RECYCLING.value],
            commit=seen.commit,
            old_release=sum(1 for s in owned if s.commit != seen.commit),
            idle_eur_hour=idle.per_hour,
        )

    def run(self) -> None:
        while not self._stop_event.wait(self.period):
            try:
                self.samples.append(self.sample())
            except (RachelError, OSError):
                self.errors += 1

    def stop(self) -> None:
        """Stop sampling and wait for the thread."""
        self._stop_event.set()
        self.join(timeout=30)

    def between(self, start: float, end: float) -> list[Sample]:
        """The samples taken from `start` to `end` (epoch seconds)."""
        return [s for s in self.samples if start <= s.at <= end]

    def series(self, step: float) -> list[dict[str, Any]]:
        """The samples thinned to one per `step` seconds (for the JSON)."""
        kept: list[dict[str, Any]] = []
        last = 0.0
        for s in self.samples:
            if s.at - last >= step:
                kept.append(asdict(s))
                last = s.at
        return kept


def others_in(start: float, end: float) -> dict[str, int]:
    """What else made or deleted servers between `start` and `end` (epoch seconds)."""

    def within(when: datetime | None) -> bool:
        at = epoch(when)
        return at is not None and start <= at <= end

    with connection():
        pool = list(PoolServer.select())
        images = list(Image.select())
    return {
        "pool_created": sum(1 for p in pool if within(p.created_at) and p.provider_id),
        "pool_deleted": sum(1 for p in pool if within(p.finished_at) and p.provider_id),
        "builds_started": sum(1 for i in images if within(i.created_at) and i.builder_provider_id),
        # A builder is deleted when its build ends (available or failed).
        "builds_ended": sum(
            1
            for i in images
            if within(i.available_at or i.finished_at) and i.builder_provider_id is not None
        ),
    }


def attribute(calls: dict[str, int], others: dict[str, int]) -> dict[str, int]:
    """The deploys' own share of a phase's calls: the others' creates, deletes, builds'
    operations and listings taken out (never below 0)."""
    own = {op: n for op, n in calls.items() if op not in BUILD_OPS + LISTING_OPS}
    taken = {
        "create_server": others["pool_created"] + others["builds_started"],
        "delete_server": others["pool_deleted"] + others["builds_ended"],
    }
    for op, n in taken.items():
        if op in own:
            own[op] = max(0, own[op] - n)
    return {op: n for op, n in own.items() if n}


def _every(settings: Any, path: str, key: str, **params: str) -> list[dict[str, Any]]:
    """Every item of a paginated list of the simulator's Hetzner API."""
    base = settings.effective_hcloud_endpoint.rstrip("/")
    headers = {"authorization": f"Bearer {settings.effective_hcloud_token}"}
    found: list[dict[str, Any]] = []
    page: int | None = 1
    with httpx.Client(headers=headers, timeout=30) as http:
        while page:
            answer = http.get(f"{base}{path}", params={**params, "page": page, "per_page": 50})
            answer.raise_for_status()
            body = answer.json()
            found += body[key]
            page = body.get("meta", {}).get("pagination", {}).get("next_page")
    return found


def _settled_servers(settings: Any, timeout: float) -> list[dict[str, Any]]:
    """Every server on the simulator, once none is still being deleted (or at the timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        servers = _every(settings, "/servers", "servers")
        if time.monotonic() > deadline or all(s["status"] != "deleting" for s in servers):
            return servers
        time.sleep(1)


def classify(servers: list[dict[str, Any]]) -> dict[str, Any]:
    """Each server on Hetzner as the database accounts for it; the rest are orphans."""
    with connection():
        live = {
            s.provider_id: s.status
            for s in Server.select().where(
                (Server.status != "deleted") & Server.provider_id.is_null(False)
            )
        }
        owned = [s.value for s in OWNS_VPS]
        pool = {
            p.provider_id: p.state
            for p in PoolServer.select().where(
                PoolServer.state.in_(owned) & PoolServer.provider_id.is_null(False)
            )
        }
        building = {
            i.builder_provider_id
            for i in Image.select().where(
                (Image.state == ImageState.BUILDING.value)
                & Image.builder_provider_id.is_null(False)
            )
        }
    kinds: Counter[str] = Counter()
    orphans = []
    for server in servers:
        provider_id = server["id"]
        if server["status"] == "deleting":
            kinds["being deleted"] += 1
        elif provider_id in live:
            kinds[f"customer ({live[provider_id]})"] += 1
        elif provider_id in pool:
            kinds[f"pool ({pool[provider_id]})"] += 1
        elif provider_id in building:
            kinds["builder of a running build"] += 1
        else:
            orphans.append({k: server.get(k) for k in ("id", "name", "status", "labels")})
    return {"servers": len(servers), "kinds": dict(kinds), "orphans": orphans}


def images(settings: Any, on_hetzner_now: set[int]) -> dict[str, Any]:
    """The snapshots on Hetzner against the Image rows; is every builder gone from
    `on_hetzner_now` (the servers Hetzner lists)?"""
    snapshots = _every(settings, "/images", "images", type="snapshot")
    with connection():
        rows = list(Image.select().order_by(Image.id))
    available = {r.provider_image_id for r in rows if r.state == ImageState.AVAILABLE.value}
    on_hetzner = {s["id"] for s in snapshots}
    builders = [r.builder_provider_id for r in rows if r.builder_provider_id is not None]
    return {
        "rows": [
            {
                "id": r.id,
                "state": r.state,
                "commit": r.commit[:12],
                "snapshot": r.provider_image_id,
                "size_gb": r.image_size,
                "build_seconds": _span(r.created_at, r.available_at),
                "reason": r.reason,
            }
            for r in rows
        ],
        "snapshots_on_hetzner": sorted(on_hetzner),
        "available_rows": sorted(x for x in available if x is not None),
        "unknown_snapshots": sorted(on_hetzner - available),
        "missing_snapshots": sorted(x for x in available - on_hetzner if x is not None),
        "builders": len(builders),
        "builders_deleted": sum(1 for b in builders if b not in on_hetzner_now),
    }


def _span(start: datetime | None, end: datetime | None) -> float | None:
    a, b = epoch(start), epoch(end)
    return None if a is None or b is None else b - a


def audit(ctx: JobContext, settle: float) -> dict[str, Any]:
    """The end state: servers classified, snapshots, the reconciler's findings.

    Call it after the run's last counters were read: it makes API calls of its own.
    """
    servers = _settled_servers(ctx.settings, settle)
    report = reconcile.snapshot(ctx)
    return classify(servers) | {
        "images": images(ctx.settings, {s["id"] for s in servers}),
        "reconcile_findings": [f.as_dict() for f in report.findings],
    }

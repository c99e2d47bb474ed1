"""The creating job's create call, with the capacity fallback of `core.domain.placement`.

On `resource_unavailable` or `placement_error` the server moves to the next
(location, server type) of its plan: the refusal, the pairs skipped and the
pair tried next are one `capacity` Event, written with the server row's new
location and type in one transaction before the next create goes out. A
run of the job that stops half-way (a transient error, a killed worker)
reads those Events back and goes on from there. When every pair refuses,
the row gets its first pair back and a permanent `CapacityError` naming
every pair fails the server; a refused create makes nothing on Hetzner.

Each create is one Hetzner call and waits for the project's rate budget
like the first one. After a refusal, the API's availability of the type
about to be tried is read once per run (and remembered for every worker,
`core.cloud.availability`), so pairs it advertises unavailable are skipped
without a create; it is never trusted blindly: a pair it shows available
that refuses is handled like any refusal.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

from core.cloud import availability
from core.cloud.provider import CapacityError, CreateSpec, HetznerError, ProviderServer
from core.domain import placement
from core.domain.lifecycle import Status, record_event
from core.domain.placement import Attempt, Exhausted, Pair, Refusal
from core.platform.logs import ServerLogger, server_logger
from core.store.db import current
from core.store.models import Event, Server
from jobs.context import JobContext

log = logging.getLogger(__name__)


def create_placed(
    ctx: JobContext,
    server: Server,
    spec: CreateSpec,
    project_objects: tuple[int, int],
    refresh: Callable[[], tuple[int, int]],
) -> tuple[ProviderServer, bool] | None:
    """Create (or adopt) the server's VPS at the first place of its plan that has room.

    Args:
        ctx: the job's context.
        server: the server, in creating; its location and type follow the pair tried.
        spec: the create, at the server's current pair.
        project_objects: the firewall and fleet key ids the create names.
        refresh: looks them up again (`HetznerAdapter.create_server`).

    Returns:
        (the VPS, whether it was adopted), or None when the server left creating.

    Raises:
        HetznerError: a transient error (the caller retries the job, which
            resumes the plan) or a permanent one; `CapacityError` when every
            pair of the plan refused or is advertised unavailable.
    """
    slog = server_logger(log, server.id, "creating", attempt=server.attempt)
    settings, hetzner = ctx.settings, ctx.hetzner
    here = Pair(server.location, server.server_type)
    # A first run of the attempt has no refusals yet: no query on the usual path.
    refused = _refusals(server.id) if spec.maybe_exists else []
    origin = placement.origin_of(here, refused)
    candidates = placement.plan(origin, settings.locations, settings.server_types)
    known = availability.recall(ctx.redis, {p.server_type for p in candidates})
    fresh: set[str] = set()
    latest: Refusal | None = None
    maybe_exists, spent = spec.maybe_exists, 0
    while True:
        decision = placement.next_pair(candidates, refused, known)
        stale = _to_refresh(decision, refused, fresh)
        if stale:
            for server_type in stale:
                _refresh_availability(ctx, server_type, known, fresh, slog)
            continue
        if latest is not None or decision.skipped or isinstance(decision, Exhausted):
            target = decision.pair if isinstance(decision, Attempt) else origin
            message = placement.refusal_event(latest, decision)
            if not _move(ctx, server, target, message):
                return None
            slog.warning("%s", message)
        if isinstance(decision, Exhausted):
            raise placement.exhausted_error(decision)
        if spent:
            hetzner.require_budget(settings.rate_limit_reserve)
        try:
            spent += 1
            return hetzner.create_server(
                replace(
                    spec,
                    location=decision.pair.location,
                    server_type=decision.pair.server_type,
                    maybe_exists=maybe_exists,
                ),
                *project_objects,
                refresh=refresh,
            )
        except CapacityError as exc:
            latest = placement.refusal(decision.pair, exc)
            refused.append(latest)
            maybe_exists = False  # refused: nothing was made there


def _to_refresh(decision: placement.Decision, refused: list[Refusal], fresh: set[str]) -> list[str]:
    """The types whose availability to read before acting on `decision` (once per run).

    Before a create, only once something refused in this attempt: the usual
    create spends no call on it. Before giving up, every type a skip relied on
    is read afresh (what other workers remembered may be a minute old).
    """
    if isinstance(decision, Exhausted):
        wanted = [pair.server_type for pair in decision.skipped]
    elif refused:
        wanted = [decision.pair.server_type]
    else:
        return []
    return [t for t in dict.fromkeys(wanted) if t not in fresh]


def _refresh_availability(
    ctx: JobContext,
    server_type: str,
    known: dict[str, dict[str, bool]],
    fresh: set[str],
    slog: ServerLogger,
) -> None:
    """Read `server_type`'s availability from the API (best effort: it only saves calls)."""
    fresh.add(server_type)
    try:
        ctx.hetzner.require_budget(ctx.settings.rate_limit_reserve)
        where = ctx.hetzner.server_type_availability(server_type)
    except HetznerError as exc:
        known.pop(server_type, None)  # unknown: its pairs are tried, not skipped
        slog.info("availability of %s unknown (%s); trying its pairs in turn", server_type, exc)
        return
    known[server_type] = where
    availability.remember(ctx.redis, server_type, where)


def _move(ctx: JobContext, server: Server, pair: Pair, message: str) -> bool:
    """Record a placement decision and set the server's pair; False if it left creating."""
    with current().atomic():
        moved = (
            Server.update(
                location=pair.location, server_type=pair.server_type, updated_at=ctx.clock.now()
            )
            .where((Server.id == server.id) & (Server.status == Status.CREATING.value))
            .execute()
        )
        if not moved:
            return False
        record_event(server.id, placement.EVENT_KIND, message, clock=ctx.clock)
    server.location, server.server_type = pair.location, pair.server_type
    return True


def _refusals(server_id: int) -> list[Refusal]:
    """The refusals recorded since the server last entered creating (this attempt's)."""
    entered = (
        Event.select(Event.id)
        .where((Event.server == server_id) & (Event.to_status == Status.CREATING.value))
        .order_by(Event.id.desc())
        .limit(1)
    )
    events = (
        Event.select(Event.message)
        .where(
            (Event.server == server_id)
            & (Event.kind == placement.EVENT_KIND)
            & (Event.id > entered)
        )
        .order_by(Event.id)
    )
    found = (placement.parse_refusal(e.message) for e in events)
    return [r for r in found if r is not None]

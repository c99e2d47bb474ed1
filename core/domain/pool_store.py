"""The warm pool in the database: the rows' transitions, their callback, the claim.

Every change is a compare-and-set on the row's state (two processes cannot
both move one pool server) and a fleet Event (no server) of kind `pool`, in
one transaction. A pool server's callback is authenticated like a server's
(`core.domain.callbacks`): a one-time bearer token, stored hashed, valid
until its boot deadline, only from its own address; it pins the host key and
makes the server `warm` (or, when its install failed, `recycling`).

The claim (`claim`) hands a warm server's VPS to a deploy's Server row in
one transaction: the pool row `warm -> claimed` (a compare-and-set on its
state, so two deploys never get one server), the Server `creating ->
cloud_init -> injecting_secrets` with the VPS's address, host key and SSH
key (re-sealed: a ciphertext is bound to its row). A Server that left
`creating` meanwhile (a deprovision) rolls it all back: the pool keeps it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from core.domain.callbacks import (
    ArmedToken,
    parse_host_key,
    refuse_unless_valid,
    spend_token,
)
from core.domain.install_outcome import InstallOutcome, failure_reason
from core.domain.lifecycle import Publisher, Status, transition
from core.domain.pool import IN_POOL, PoolServerView, PoolState
from core.errors import RachelError
from core.platform.clock import SYSTEM_CLOCK, Clock, ManualClock
from core.security.crypto import KeyRing
from core.store.db import connection, write_transaction
from core.store.models import Event, PoolServer, Server
from core.store.vault import binding_for, reveal

log = logging.getLogger(__name__)

#: The Event kind of pool changes (fleet Events, no server).
EVENT_KIND = "pool"
#: How many warm servers a claim tries before it gives up (each lost to a concurrent claim).
CLAIM_TRIES = 5


def view(row: PoolServer) -> PoolServerView:
    """What the decisions need of a row."""
    return PoolServerView(
        id=row.id,
        state=row.state,
        location=row.location,
        server_type=row.server_type,
        commit=row.commit,
        created_at=row.created_at,
        deadline_at=row.deadline_at,
        warm_at=row.warm_at,
        provider_id=row.provider_id,
        server_id=row.server_id,
    )


def live_views() -> list[PoolServerView]:
    """Every pool server not deleted (inside `connection()`)."""
    query = PoolServer.select().where(PoolServer.state != PoolState.DELETED.value)
    return [view(row) for row in query.order_by(PoolServer.id)]


def views_of(ids: Iterable[int]) -> list[PoolServerView]:
    """The pool rows of `ids`, whatever their state (inside `connection()`)."""
    return [view(row) for row in PoolServer.select().where(PoolServer.id.in_(list(ids)))]


def recent_views(since: datetime) -> list[PoolServerView]:
    """Pool servers made warm since `since` (inside `connection()`): their refill times."""
    query = PoolServer.select().where(PoolServer.warm_at >= since)
    return [view(row) for row in query.order_by(PoolServer.id)]


def record(message: str, actor: str, clock: Clock = SYSTEM_CLOCK) -> None:
    """A fleet Event of kind `pool`, in the caller's transaction if any."""
    Event.create(server=None, at=clock.now(), kind=EVENT_KIND, message=message, actor=actor)


def _update(pool_id: int, states: tuple[PoolState, ...], changes: dict[str, object]) -> bool:
    changes = {**changes, "updated_at": changes.get("updated_at") or SYSTEM_CLOCK.now()}
    return bool(
        PoolServer.update(**changes)
        .where((PoolServer.id == pool_id) & PoolServer.state.in_([s.value for s in states]))
        .execute()
    )


def start(
    *,
    location: str,
    server_type: str,
    image: str,
    commit: str,
    name_prefix: str,
    timeout: float,
    why: str,
    clock: Clock = SYSTEM_CLOCK,
) -> PoolServer:
    """A `creating` row (named after its id), its deadline `timeout` seconds from now."""
    now = clock.now()
    with connection() as db, write_transaction(db):
        # The name needs the id: a unique placeholder first, in the same transaction.
        row: PoolServer = PoolServer.create(
            state=PoolState.CREATING.value, location=location, server_type=server_type,
            image=image, commit=commit, name=f"{name_prefix}-pool-new-{now.timestamp()}",
            created_at=now, updated_at=now, deadline_at=now + timedelta(seconds=timeout),
        )  # fmt: skip
        row.name = f"{name_prefix}-pool-{row.id}"
        row.save(only=[PoolServer.name])
        record(f"pool server {row.id}: creating a {server_type} in {location} from image "
               f"{image} (Rachel8 {commit[:12]}): {why}", "cron", clock)  # fmt: skip
    return row


def record_vps(pool_id: int, provider_id: int, ipv4: str | None, ipv6: str | None) -> bool:
    """creating -> booting: its VPS exists (remembered at once, so nothing can lose it)."""
    with connection() as db, write_transaction(db):
        moved = _update(
            pool_id,
            (PoolState.CREATING,),
            {"state": PoolState.BOOTING.value, "provider_id": provider_id,
             "ipv4": ipv4, "ipv6": ipv6},
        )  # fmt: skip
        if moved:
            record(f"pool server {pool_id}: Hetzner server {provider_id} ({ipv4}) created; "
                   "waiting for its callback", "system")  # fmt: skip
    return moved


def mark_recycling(pool_id: int, reason: str, actor: str, clock: Clock = SYSTEM_CLOCK) -> bool:
    """creating | booting | warm -> recycling: its VPS is to be deleted, with the reason."""
    with connection() as db, write_transaction(db):
        moved = _update(
            pool_id,
            IN_POOL,
            {"state": PoolState.RECYCLING.value, "reason": reason, "callback_token_hash": None},
        )
        if moved:
            record(f"pool server {pool_id}: recycling: {reason}", actor, clock)
    return moved


def mark_deleted(pool_id: int, actor: str, clock: Clock = SYSTEM_CLOCK) -> bool:
    """recycling -> deleted: its VPS is gone from Hetzner."""
    now = clock.now()
    with connection() as db, write_transaction(db):
        moved = _update(
            pool_id,
            (PoolState.RECYCLING,),
            {"state": PoolState.DELETED.value, "finished_at": now, "ssh_private_key": None},
        )
        if moved:
            record(f"pool server {pool_id}: its VPS deleted", actor, clock)
    return moved


def accept_pool_callback(
    pool_id: int,
    token: str,
    host_key: str,
    source_ip: str | None,
    *,
    install: InstallOutcome,
    check_source: bool = True,
    clock: Clock = SYSTEM_CLOCK,
) -> PoolServer:
    """Verify a pool server's callback: booting -> warm with its host key pinned, or
    recycling when its install failed (or checked out another commit than its row's).

    Raises:
        CallbackRejected: `unauthorized` unknown pool server, or wrong, used, expired
            or foreign token (one message for all); `invalid_host_key`.
    """
    now = clock.now()
    row, armed = refuse_unless_valid(
        f"pool server {pool_id}",
        token,
        PoolServer.get_or_none(PoolServer.id == pool_id),
        lambda r: ArmedToken(
            r.callback_token_hash,
            r.callback_token_expires_at,
            spent=r.state != PoolState.BOOTING,
            address=r.ipv4,
        ),
        now,
        source_ip=source_ip,
        check_source=check_source,
    )
    pinned = parse_host_key(host_key)
    reason = failure_reason(install, row.commit)
    changes: dict[str, object] = {"updated_at": now}
    if reason is None:
        changes.update(state=PoolState.WARM.value, host_key=pinned, warm_at=now)
        message = f"pool server {pool_id}: called back, host key pinned; warm"
    else:
        changes.update(state=PoolState.RECYCLING.value, reason=f"install failed: {reason}")
        message = f"pool server {pool_id}: install failed ({reason}); recycling"
    with connection() as db, write_transaction(db):
        spend_token(
            PoolServer,
            pool_id,
            state=PoolState.BOOTING.value,
            stored=armed.stored_hash,
            changes=changes,
        )
        record(message, "system", clock)
    log.info("%s", message)
    found: PoolServer = PoolServer.get_by_id(pool_id)
    return found


class ClaimAbandoned(RachelError):
    """The claiming Server left `creating` meanwhile: the claim is rolled back."""

    code = "claim_abandoned"


@dataclass(frozen=True)
class Claimed:
    """The pool server a deploy's Server row took over."""

    pool_id: int
    provider_id: int
    ipv4: str | None
    waited_seconds: float  # how long it was warm before this claim


def _take_one(location: str, server_type: str, commit: str, server_id: int, now: datetime) -> int:
    """The id of a warm pool server this call claimed for `server_id`; 0 when none is left.

    The compare-and-set is on the row's state: of two concurrent claims of one
    row, the second's UPDATE matches nothing (PostgreSQL re-checks the WHERE
    after the first commits; SQLite serialises writers) and it tries the next.
    """
    for _ in range(CLAIM_TRIES):
        candidate = (
            PoolServer.select(PoolServer.id)
            .where(
                (PoolServer.state == PoolState.WARM.value)
                & (PoolServer.location == location)
                & (PoolServer.server_type == server_type)
                & (PoolServer.commit == commit)
            )
            .order_by(PoolServer.warm_at, PoolServer.id)
            .first()
        )
        if candidate is None:
            return 0
        taken = _update(
            candidate.id,
            (PoolState.WARM,),
            {"state": PoolState.CLAIMED.value, "server_id": server_id, "claimed_at": now},
        )
        if taken:
            return int(candidate.id)
    return 0


def claim(
    server: Server,
    ring: KeyRing,
    *,
    commit: str,
    clock: Clock = SYSTEM_CLOCK,
    publish: Publisher | None = None,
    next_job: Callable[[Server, datetime], str | None] | None = None,
) -> Claimed | None:
    """Hand a warm pool server of `server`'s place and release to `server` (`creating`).

    Returns:
        What it took over, the Server now in `injecting_secrets` (`server` as
        written; the caller queues the injection under the id `next_job` gave
        for it, recorded by the transition); None when the pool has none (a miss: the image
        path) or `server` left `creating` meanwhile (nothing is claimed).
    """
    now = clock.now()
    try:
        with connection() as db, write_transaction(db):
            pool_id = _take_one(server.location, server.server_type, commit, server.id, now)
            if not pool_id:
                return None
            vps: PoolServer = PoolServer.get_by_id(pool_id)
            _take_over(server, vps, ring=ring, now=now, publish=publish, next_job=next_job)
            record(f"pool server {pool_id}: claimed by server {server.id}", "system", clock)
    except ClaimAbandoned:
        log.info("server %s: left creating while claiming from the warm pool; the pool "
                 "keeps its server", server.id)  # fmt: skip
        return None
    waited = (now - vps.warm_at).total_seconds() if vps.warm_at else 0.0
    return Claimed(pool_id, vps.provider_id or 0, vps.ipv4, waited)


def _take_over(
    server: Server,
    vps: PoolServer,
    *,
    ring: KeyRing,
    now: datetime,
    publish: Publisher | None,
    next_job: Callable[[Server, datetime], str | None] | None,
) -> None:
    """The Server's two transitions, with the VPS; raises ClaimAbandoned to roll back."""
    private_key = reveal(ring, vps, "ssh_private_key") or ""
    # Sealed for the Server's row but not assigned to it: the transition writes it, and
    # only if it happens (a claim rolled back must leave no pool key on the Server).
    sealed = ring.seal(private_key, binding_for(server, "ssh_private_key"))
    booted = transition(
        server.id,
        Status.CREATING,
        Status.CLOUD_INIT,
        message=f"claimed Hetzner server {vps.provider_id} ({vps.ipv4}) from the warm pool "
        f"(pool server {vps.id}, booted from image {vps.image}); no create, no boot wait",
        changes={
            "provider_id": vps.provider_id,
            "ipv4": vps.ipv4,
            "ipv6": vps.ipv6,
            "name": vps.name,
            "image": vps.image,
            "rachel8_commit": vps.commit,
            "ssh_private_key": sealed,
            "ssh_public_key": vps.ssh_public_key,
            "callback_token_hash": None,
            "deadline_at": None,
            "retries": 0,
            "last_error": None,
        },
        clock=ManualClock(now),
        publish=publish,
        row=server,
    )
    if not booted:
        raise ClaimAbandoned(f"server {server.id} is no longer creating")
    transition(
        server.id,
        Status.CLOUD_INIT,
        Status.INJECTING_SECRETS,
        message="from the warm pool: cloud-init had finished; host key pinned",
        changes={
            "host_key": vps.host_key,
            "callback_token_used_at": now,
            "job_id": next_job(server, now) if next_job is not None else None,
        },
        clock=ManualClock(now),
        publish=publish,
        row=server,
    )

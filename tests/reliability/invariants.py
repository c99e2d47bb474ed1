"""The invariants operators rely on, as functions that list what is wrong.

Shared by the chaos run (tests/chaos) and the lifecycle state machine
(tests/reliability/test_lifecycle_machine.py). Each returns a list of problems,
empty when the invariant holds, so a failure names every offender at once.

- `timeline_problems`: every server's transition Events form one unbroken,
  allowed chain from `None -> pending` to its current status.
- `row_problems`: a ready server has its VPS, address and pinned host key; a
  failed one records its reason and phase; at most one live server per customer.
- `provider_problems`: no two VPSs for one server (duplicates); with
  `settled`, no VPS without a live row that recorded it (orphans: money
  leaking), and no ready server whose VPS is gone (forgotten). A warm pool
  server is its pool row's while that row owns it, and its Server's once
  claimed (it carries no server label: the claim is in the database).
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from core.cloud.provider import LABEL_SERVER
from core.domain.images import ImageState, image_of_builder
from core.domain.lifecycle import LIVE, Status, allowed
from core.domain.pool import OWNS_VPS, PoolState, pool_row_of
from core.store.models import Event, Image, PoolServer, Server
from sim.server import SimulatorServer


@dataclass(frozen=True)
class Vps:
    """A server on the simulator: its Hetzner id, our server id (label), status."""

    provider_id: int
    server_id: int | None
    status: str
    builder_of: int | None = None  # the image an image builder is building
    pool_of: int | None = None  # the pool row of a pool server


def sim_servers(sim: SimulatorServer) -> list[Vps]:
    """Every server the simulator holds, read from its state (no API call, no faults)."""
    with sim.simulator.lock:
        servers = list(sim.simulator.store.servers.values())
    found = []
    for server in servers:
        label = server.labels.get(LABEL_SERVER)
        found.append(
            Vps(
                server.id,
                int(label) if label and label.isdigit() else None,
                server.status,
                image_of_builder(dict(server.labels)),
                pool_row_of(dict(server.labels)),
            )
        )
    return found


def _claimed_by(vpss: list[Vps]) -> dict[int, int]:
    """{provider id: server id} of the pool servers a deploy claimed."""
    pooled = [v.pool_of for v in vpss if v.pool_of is not None]
    rows = PoolServer.select().where(
        PoolServer.id.in_(pooled) & (PoolServer.state == PoolState.CLAIMED.value)
    )
    return {row.provider_id: row.server_id for row in rows if row.server_id is not None}


def _pool_problems(vps: Vps) -> list[str]:
    """A pool server stands while its pool row owns it (not yet claimed)."""
    row = PoolServer.get_or_none(PoolServer.id == vps.pool_of)
    if row is not None and row.state in OWNS_VPS and row.provider_id in (None, vps.provider_id):
        return []
    state = row.state if row is not None else "missing"
    return [f"VPS {vps.provider_id} ({vps.status}): pool server {vps.pool_of} ({state}): orphan"]


def _builder_problems(vps: Vps) -> list[str]:
    """An image builder stands while its build does; once the build ended it is an orphan.

    (A build a killed worker abandoned ends at its deadline: the image check fails it
    and deletes its builder; until then the builder is its build's.)
    """
    if vps.status == "deleting":
        return []
    image = Image.get_or_none(Image.id == vps.builder_of)
    if image is not None and image.state == ImageState.BUILDING:
        return []
    state = image.state if image is not None else "missing"
    return [f"VPS {vps.provider_id} ({vps.status}): builder of image {vps.builder_of} ({state})"]


def timeline_problems(server_ids: Iterable[int] | None = None) -> list[str]:
    """Servers whose transition Events do not chain from creation to their status."""
    query = Server.select(Server.id, Server.status)
    if server_ids is not None:
        query = query.where(Server.id.in_(list(server_ids)))
    current = {row.id: row.status for row in query}
    steps: dict[int, list[tuple[str | None, str]]] = {sid: [] for sid in current}
    events = (
        Event.select(Event.server, Event.from_status, Event.to_status)
        .where((Event.kind == "transition") & Event.server.in_(list(current)))
        .order_by(Event.id)
        .tuples()
    )
    for server_id, source, target in events:
        steps[server_id].append((source, target))
    problems = []
    for server_id, chain in steps.items():
        if not chain or chain[0] != (None, Status.PENDING.value):
            problems.append(
                f"server {server_id}: timeline does not start with pending: {chain[:2]}"
            )
            continue
        for (_, before), (source, target) in itertools.pairwise(chain):
            if source != before or not allowed(source or "", target):
                problems.append(f"server {server_id}: broken step {before} / {source}->{target}")
                break
        if chain[-1][1] != current[server_id]:
            problems.append(
                f"server {server_id}: timeline ends at {chain[-1][1]}, row is {current[server_id]}"
            )
    return problems


def row_problems() -> list[str]:
    """Rows whose columns contradict their status; customers with two live servers."""
    problems = []
    live = [s.value for s in LIVE]
    for row in Server.select():
        if row.status == Status.READY and not (row.provider_id and row.ipv4 and row.host_key):
            problems.append(f"server {row.id}: ready without a VPS, address or host key")
        if row.status == Status.FAILED and not (row.last_error and row.failed_phase):
            problems.append(f"server {row.id}: failed without a recorded reason and phase")
    per_customer = Counter(
        c for (c,) in Server.select(Server.customer).where(Server.status.in_(live)).tuples()
    )
    problems += [f"customer {c}: {n} live servers" for c, n in per_customer.items() if n > 1]
    return problems


def provider_problems(vpss: list[Vps], *, settled: bool) -> list[str]:
    """Duplicates always; orphans and forgotten servers once the system has settled."""
    problems = []
    claimed = _claimed_by(vpss)
    vpss = [
        Vps(v.provider_id, claimed[v.provider_id], v.status, v.builder_of)
        if v.provider_id in claimed
        else v
        for v in vpss
    ]
    standing = [v for v in vpss if v.status != "deleting"]
    counts = Counter(v.server_id for v in standing if v.server_id is not None)
    problems += [f"server {sid}: {n} VPSs (duplicate)" for sid, n in counts.items() if n > 1]
    if not settled:
        return problems
    rows = {row.id: row for row in Server.select()}
    for vps in vpss:
        if vps.builder_of is not None:
            problems += _builder_problems(vps)
            continue
        if vps.pool_of is not None:
            problems += _pool_problems(vps) if vps.status != "deleting" else []
            continue
        row = rows.get(vps.server_id or -1)
        if row is None or row.status == Status.DELETED or row.provider_id != vps.provider_id:
            problems.append(
                f"VPS {vps.provider_id} ({vps.status}) of server {vps.server_id}: orphan "
                f"(row {'missing' if row is None else row.status})"
            )
    on_sim = {v.provider_id for v in standing}
    for row in rows.values():
        if row.status == Status.READY and row.provider_id not in on_sim:
            problems.append(f"server {row.id}: ready, but its VPS {row.provider_id} is gone")
    return problems

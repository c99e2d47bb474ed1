"""The warm pool end to end on the simulator: refill, a deploy served from the pool
(no create, no cloud-init wait), recycling on a new release, draining, no orphans.

The pool's servers install on the stock image here (RACHEL_IMAGES=false): the
image path is `test_images`'s; what matters is what a claim skips.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

import pytest

from core.domain import releases
from core.domain.deploys import request_deploy
from core.domain.images import ImageState
from core.domain.lifecycle import Status
from core.domain.pool import LABEL_POOL, PoolState
from core.domain.pool_metrics import collect_pool
from core.platform.runs import RunSummary
from core.store.models import Event, Image, PoolServer, Server
from jobs import operator, reconcile
from jobs.context import JobContext, use_context
from jobs.enqueue import POOL_REFILL_FLAG, request_refill, start_provisioning
from jobs.image_build import run_build
from jobs.images import request_build
from jobs.pool import refill, refill_pool
from jobs.reconcile import snapshot
from sim.rachel8 import NEWER_COMMIT as NEW_COMMIT
from tests import factories
from tests.pipeline.harness import Stack


@pytest.fixture
def stack(timed_stack: Callable[..., Stack]) -> Stack:
    return timed_stack(
        RACHEL_BOOT_TIMEOUT="20s", RACHEL_IMAGES="false", RACHEL_POOL="true",
        RACHEL_POOL_MIN="1", RACHEL_POOL_MAX="1", RACHEL_LOCATION="fsn1",
    )  # fmt: skip


@pytest.fixture
def placed_stack(timed_stack: Callable[..., Stack]) -> Stack:
    return timed_stack(
        RACHEL_BOOT_TIMEOUT="20s", RACHEL_IMAGES="false", RACHEL_POOL="true",
        RACHEL_LOCATION="fsn1,nbg1,hel1", RACHEL_POOL_PLACES="fsn1/cx23=0..0,nbg1/cx23=2..2",
    )  # fmt: skip


def _refill(ctx: JobContext) -> RunSummary:
    summary = RunSummary("pool")
    refill(ctx, summary)
    return summary


def _states() -> list[str]:
    return [row.state for row in PoolServer.select().order_by(PoolServer.id)]


def _until(what: str, check: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        rows = [(r.id, r.state, r.reason) for r in PoolServer.select()]
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {rows}"
        time.sleep(0.05)


def _managed(stack: Stack) -> list[int]:
    """The managed servers on Hetzner, once the deletes asked for have run."""
    _until("deletes", lambda: all(s.status != "deleting" for s in stack.ctx.hetzner.list_managed()))
    return sorted(stack.provider_servers())


def test_refill_claim_recycle_and_drain_leave_nothing_behind(stack: Stack) -> None:
    # Refill: one pool server, labelled as the pool's (no customer), warm once it called back.
    assert _refill(stack.ctx).acted["create"] == 1
    _until("a warm pool server", lambda: _states() == [PoolState.WARM])
    pooled = PoolServer.get(PoolServer.state == PoolState.WARM.value)
    (vps,) = stack.ctx.hetzner.list_managed()
    assert vps.id == pooled.provider_id and vps.labels[LABEL_POOL] == str(pooled.id)
    assert vps.server_id is None and pooled.host_key
    assert _refill(stack.ctx).acted["create"] == 0  # full
    idle = collect_pool({"cx23": 7.3}, 0.01).idle  # what /metrics shows of it
    assert (idle.servers, idle.unpriced, idle.per_month) == (1, 0, 7.3)

    # A deploy claims it: no create, no cloud-init wait; straight to injection.
    creates = stack.sim.stats()["requests"].get("create_server", 0)
    owner = factories.paying_customer(stack.ring)
    outcome = operator.deploy(stack.redis, stack.settings, owner.external_id, "operator:test")
    ready = stack.wait_status(outcome.server_id, Status.READY, timeout=30)
    assert ready.provider_id == pooled.provider_id and ready.host_key == pooled.host_key
    assert stack.sim.stats()["requests"].get("create_server", 0) == creates + 1  # the refill's
    messages = [e.message for e in Event.select().where(Event.server == ready.id)]
    assert any("from the warm pool" in m for m in messages)
    assert not any("waiting for cloud-init" in m for m in messages)
    claimed = PoolServer.get_by_id(pooled.id)
    assert (claimed.state, claimed.server_id) == (PoolState.CLAIMED, ready.id)
    # The claim queued a refill: a new pool server, warm soon.
    _until("the refill", lambda: _states().count(PoolState.WARM) == 1)
    assert not snapshot(stack.ctx).findings  # the claimed VPS is its server's: no drift

    # A new release: the warm server of the old one is recycled and replaced.
    releases.add_release(NEW_COMMIT, "under test", "operator:test")
    releases.set_current(releases.resolve(NEW_COMMIT), "operator:test", "a test")
    old = PoolServer.get(PoolServer.state == PoolState.WARM.value)
    summary = _refill(stack.ctx)
    assert (summary.found["recycle"], summary.acted["delete"], summary.acted["create"]) == (1, 1, 1)
    gone = PoolServer.get_by_id(old.id)
    assert gone.state == PoolState.DELETED and "release" in (gone.reason or "")
    _until("a warm server of the new release", lambda: PoolServer.select().where(
        (PoolServer.state == PoolState.WARM.value) & (PoolServer.commit == NEW_COMMIT)
    ).count() == 1)  # fmt: skip

    # Disabled, the pool drains: only the customer's server is left on Hetzner.
    drained = replace(stack.ctx, settings=replace(stack.settings, pool_enabled=False))
    assert _refill(drained).acted["delete"] == 1
    assert PoolState.WARM not in _states()
    assert _managed(stack) == [ready.provider_id]
    assert not snapshot(stack.ctx).findings
    assert Server.get_by_id(ready.id).status == Status.READY


def test_pool_servers_start_from_the_current_image(stack: Stack) -> None:
    images_on = replace(stack.ctx, settings=replace(stack.settings, images_enabled=True))
    row = request_build(images_on, actor="operator:test", why="a test")
    image = run_build(images_on, row.id, progress=lambda _line: None)
    assert _refill(images_on).acted["create"] == 1
    _until("a warm pool server", lambda: _states() == [PoolState.WARM])
    pooled = PoolServer.get(PoolServer.state == PoolState.WARM.value)
    assert pooled.image == str(image.provider_image_id)
    machine = stack.sim.vps(pooled.provider_id or 0)
    assert machine is not None and machine.from_image and machine.install_work() == 0


def test_each_place_is_pooled_to_its_own_size_and_other_places_miss(
    placed_stack: Stack,
) -> None:
    stack = placed_stack
    assert _refill(stack.ctx).acted["create"] == 2
    _until("two warm pool servers", lambda: _states() == [PoolState.WARM] * 2)
    assert {(r.location, r.server_type) for r in PoolServer.select()} == {("nbg1", "cx23")}

    def deploy(location: str) -> Server:
        owner = factories.paying_customer(stack.ring)
        server = request_deploy(owner, stack.settings, location=location, actor="operator:test")
        start_provisioning(stack.redis, stack.settings, server.server)
        return stack.wait_status(server.server.id, Status.READY, timeout=30)

    # nbg1 holds warm servers: a claim, then a refill to its size (asked for by the claim).
    creates = stack.sim.stats()["requests"].get("create_server", 0)
    hit = deploy("nbg1")
    assert PoolServer.get(PoolServer.server_id == hit.id).location == "nbg1"
    _until("the refill", lambda: _states().count(PoolState.WARM) == 2)
    assert stack.sim.stats()["requests"].get("create_server", 0) == creates + 1
    # fsn1 (the default placement, sized 0..0) and hel1 (not listed) hold none: creates.
    for location in ("fsn1", "hel1"):
        miss = deploy(location)
        assert PoolServer.get_or_none(PoolServer.server_id == miss.id) is None
        assert (miss.location, miss.status) == (location, Status.READY)
    assert stack.sim.stats()["requests"].get("create_server", 0) == creates + 3
    # The claim took the first one warm, whichever that was.
    assert sorted((r.location, r.state) for r in PoolServer.select()) == [
        ("nbg1", PoolState.CLAIMED), ("nbg1", PoolState.WARM), ("nbg1", PoolState.WARM)
    ]  # fmt: skip
    assert not snapshot(stack.ctx).findings


def test_a_claim_after_a_refill_began_asks_for_a_pass_of_its_own(stack: Stack) -> None:
    stack.redis.delete(POOL_REFILL_FLAG)
    assert request_refill(stack.redis) is not None
    assert request_refill(stack.redis) is None  # the queued pass serves this claim too
    use_context(stack.ctx)
    refill_pool()  # clears the flag before it reads the pool
    assert request_refill(stack.redis) is not None


def test_a_refill_refused_its_image_forgets_it_and_the_next_pass_uses_the_stock_one(
    stack: Stack,
) -> None:
    images_on = replace(stack.ctx, settings=replace(stack.settings, images_enabled=True))
    row = request_build(images_on, actor="operator:test", why="a test")
    image = run_build(images_on, row.id, progress=lambda _line: None)
    assert stack.ctx.hetzner.delete_image(image.provider_image_id or 0)  # by hand, say
    refused = _refill(images_on)
    assert (refused.errors, refused.acted["create"]) == (1, 0)
    assert Image.get_by_id(image.id).state == ImageState.DELETED
    assert _refill(images_on).acted["create"] == 1
    _until("a warm pool server", lambda: PoolState.WARM in _states())
    assert PoolServer.get(PoolServer.state == PoolState.WARM.value).image == stack.settings.image


def test_a_warm_server_whose_vps_vanished_is_recycled_by_the_reconciler(stack: Stack) -> None:
    assert _refill(stack.ctx).acted["create"] == 1
    _until("a warm pool server", lambda: _states() == [PoolState.WARM])
    pooled = PoolServer.get(PoolServer.state == PoolState.WARM.value)
    assert stack.ctx.hetzner.delete_server(pooled.provider_id or 0)  # by hand, say
    _managed(stack)  # its delete finished
    summary = RunSummary("reconcile")
    reconcile.run(stack.ctx, apply=True, summary=summary)
    assert (summary.found["pool_vanished"], summary.acted["recycle"]) == (1, 1)
    gone = PoolServer.get_by_id(pooled.id)
    assert gone.state == PoolState.RECYCLING and "gone from Hetzner" in (gone.reason or "")
    # No longer warm, so never claimed; the next refill deletes it (a no-op on Hetzner).
    assert _refill(stack.ctx).acted["delete"] == 1
    assert PoolServer.get_by_id(pooled.id).state == PoolState.DELETED

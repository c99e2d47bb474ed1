"""Snapshot images end to end on the simulator: build, servers from them, retention,
the stock fallback, and every failure of a build leaving no builder behind.

The simulator charges the stock install (RACHEL_SIM_INSTALL_TIME) only for work
not on the disk: a builder pays it, a server from the image does not.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

import pytest

from core.domain.images import LABEL_BUN, LABEL_CLAUDE_CODE, LABEL_COMMIT, ImageState
from core.domain.lifecycle import Status
from core.platform.runs import RunSummary
from core.store.models import Event, Image, Server
from jobs import operator
from jobs.image_build import ImageBuildError, run_build
from jobs.images import check, request_build
from tests import factories
from tests.pipeline import rachel8_vps
from tests.pipeline.harness import Stack


@pytest.fixture
def stack(timed_stack: Callable[..., Stack]) -> Stack:
    built = timed_stack(
        RACHEL_BOOT_TIMEOUT="20s", RACHEL_IMAGE_BUILD_TIMEOUT="20s", RACHEL_IMAGE_KEEP="1"
    )
    built.ctx.hetzner.action_poll = 0.05
    return built


def _build(stack: Stack) -> Image:
    row = request_build(stack.ctx, actor="operator:test", why="a test")
    return run_build(stack.ctx, row.id, progress=lambda _line: None)


def _deploy(stack: Stack) -> Server:
    owner = factories.paying_customer(stack.ring)
    outcome = operator.deploy(stack.redis, stack.settings, owner.external_id, "operator:test")
    return stack.wait_status(outcome.server_id, Status.READY, timeout=60)


def test_build_serve_from_the_image_and_keep_the_newest(stack: Stack) -> None:
    # No image yet: the stock path, whose cloud-init installs everything.
    stock = _deploy(stack)
    assert stock.image == stack.settings.image
    stock_vps = stack.sim.vps(stock.provider_id or 0)
    assert stock_vps is not None and not stock_vps.from_image

    image = _build(stack)
    commit = stack.settings.rachel8_commit
    assert (image.state, image.commit) == (ImageState.AVAILABLE, commit)
    assert image.provider_image_id and image.builder_provider_id
    snapshot = stack.ctx.hetzner.get_image(image.provider_image_id)
    assert snapshot is not None and snapshot.status == "available"
    assert snapshot.labels[LABEL_COMMIT] == commit
    assert snapshot.labels[LABEL_BUN] == stack.settings.rachel8_bun_version
    assert snapshot.labels[LABEL_CLAUDE_CODE] == stack.settings.rachel8_claude_code_version
    assert [s.id for s in stack.ctx.hetzner.list_managed()] == [stock.provider_id]  # no builder

    served = _deploy(stack)
    assert served.image == str(image.provider_image_id)
    assert served.rachel8_commit == commit
    machine = stack.sim.vps(served.provider_id or 0)
    assert machine is not None and machine.from_image
    assert machine.install_work() == 0  # only cloud-init's own time: no install
    # Its own install result, written by the check, not the builder's (removed).
    assert machine.install_result is not None and machine.install_result["ok"]
    assert machine.install_result["commit"] == commit
    keys = rachel8_vps.read(machine, "/root/.ssh/authorized_keys").text.splitlines()
    assert len(keys) == 2  # the fleet key and its own: not the builder's
    assert served.ssh_public_key and served.ssh_public_key.split()[1] in "\n".join(keys)
    assert rachel8_vps.service(machine)["ActiveState"] == "active"

    # A newer image; RACHEL_IMAGE_KEEP=1 deletes the older, once no create uses it.
    newer = _build(stack)
    summary = RunSummary("images")
    check(stack.ctx, summary)
    assert summary.acted["delete_image"] == 1 and summary.acted["build"] == 0
    old = Image.get_by_id(image.id)
    assert old.state == ImageState.DELETED and "RACHEL_IMAGE_KEEP" in (old.reason or "")
    assert stack.ctx.hetzner.get_image(image.provider_image_id) is None
    assert Image.get_by_id(newer.id).state == ImageState.AVAILABLE


def _servers_left(stack: Stack, timeout: float = 15.0) -> list[object]:
    """The managed servers still on Hetzner once the deletes asked for have run.

    A DELETE answers with an action: the server shows `deleting` until it ends.
    """
    deadline = time.monotonic() + timeout
    while (left := stack.ctx.hetzner.list_managed()) and time.monotonic() < deadline:
        assert all(s.status == "deleting" for s in left), left
        time.sleep(0.05)
    return list(left)


@pytest.mark.parametrize(
    ("faults", "expected"),
    [
        ({"install_fail": {"step": "dependencies", "names": ["test-builder-*"]}},
         "install failed at step 'dependencies'"),
        ({"no_callback": {"rate": 0, "names": ["test-builder-*"]}}, "did not call back"),
        ({"action_errors": {"create_image": 1.0}}, "create image"),
    ],
    ids=["install-fails", "no-callback", "snapshot-fails"],
)  # fmt: skip
def test_a_failed_build_leaves_no_builder(
    stack: Stack, faults: dict[str, object], expected: str
) -> None:
    stack.sim.set_faults(faults)
    row = request_build(stack.ctx, actor="operator:test", why="a test")
    with pytest.raises(ImageBuildError, match=expected):
        run_build(stack.ctx, row.id, progress=lambda _line: None)
    failed = Image.get_by_id(row.id)
    assert failed.state == ImageState.FAILED and expected in (failed.reason or "")
    assert failed.builder_provider_id is not None  # it was made, and then deleted
    assert _servers_left(stack) == []
    assert stack.ctx.hetzner.list_snapshots("rachel-cloud/managed=true") == []


def test_an_unknown_stock_image_fails_cleanly(stack: Stack) -> None:
    stack.ctx.settings = replace(stack.settings, image="no-such-image")
    row = request_build(stack.ctx, actor="operator:test", why="a test")
    with pytest.raises(ImageBuildError, match="image"):
        run_build(stack.ctx, row.id, progress=lambda _line: None)
    assert Image.get_by_id(row.id).state == ImageState.FAILED
    assert _servers_left(stack) == []


def test_the_check_builds_for_a_release_without_an_image(stack: Stack) -> None:
    summary = RunSummary("images")
    check(stack.ctx, summary)
    assert summary.acted["build"] == 1
    stack.drain(
        lambda: Image.select().where(Image.state == ImageState.AVAILABLE).exists(),
        60,
        "the queued build",
    )
    again = RunSummary("images")
    check(stack.ctx, again)
    assert again.acted["build"] == 0


def test_a_snapshot_deleted_behind_our_back_falls_back_to_the_stock_image(stack: Stack) -> None:
    image = _build(stack)
    assert stack.ctx.hetzner.delete_image(image.provider_image_id or 0)  # by hand, say
    served = _deploy(stack)  # the first create is refused; the retry takes the stock image
    assert served.image == stack.settings.image
    machine = stack.sim.vps(served.provider_id or 0)
    assert machine is not None and not machine.from_image
    gone = Image.get_by_id(image.id)
    assert gone.state == ImageState.DELETED and "refused" in (gone.reason or "")
    messages = [e.message for e in Event.select().where(Event.server == served.id)]
    assert any(f"Hetzner refused image {image.provider_image_id}" in m for m in messages)

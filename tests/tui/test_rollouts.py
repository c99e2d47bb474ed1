"""The rollouts screen: the live rollout, its waves and servers, and the operators' actions.

The rollout is planned by the real store (`rollout_store.start`) and moved by
the driver's own steps (`rollout_steps`); only what C's update job writes when
it switches a server (gating, `switched_at`, the server's commit) is written
here directly. The actions go through `jobs.rollout_operator`, as the CLI's do:
the database changes, and the driver's tick is queued in Redis.
"""

from __future__ import annotations

from datetime import timedelta

import peewee
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from rq import Queue

from core.domain import releases, rollout_steps
from core.domain.rollout_states import RolloutState, TargetState
from core.domain.rollout_store import RolloutOptions
from core.domain.rollout_store import start as start_rollout
from core.domain.rollout_waves import parse_waves
from core.platform.clock import ManualClock
from core.store.models import Event, Rollout, RolloutTarget, Server
from jobs.queues import FINISH
from jobs.rollout_operator import act
from tests.tui.conftest import OPERATOR, SIZE, make_server, open_screen, wait_for
from tests.tui.test_screens import help_text
from tui.app import RachelApp
from tui.screens.confirm import ConfirmChoice
from tui.screens.rollouts import RolloutsScreen
from tui.screens.server import ServerScreen

pytestmark = pytest.mark.anyio

OLD = "3f2a9c1d8e7b6a5f4e3d2c1b0a9f8e7d6c5b4a39"
NEW = "9b7e4d2c1a0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d"
NOTES = "fix: reconnect Telegram polling after a 409"
GATE_FAILED = "Rachel8 crash loop after the switch (3 restarts)"
SOAK_LEFT = 45


def switch(target: RolloutTarget, clock: ManualClock) -> RolloutTarget:
    """What the update job writes when it has switched the server (updating -> gating)."""
    RolloutTarget.update(state=TargetState.GATING.value, switched_at=clock.now()).where(
        RolloutTarget.id == target.id
    ).execute()
    Server.update(rachel8_commit=target.to_commit).where(Server.id == target.server_id).execute()
    fresh: RolloutTarget = RolloutTarget.get_by_id(target.id)
    return fresh


def wave_targets(rollout_id: int, wave: int) -> list[RolloutTarget]:
    query = RolloutTarget.select().where(
        (RolloutTarget.rollout == rollout_id) & (RolloutTarget.wave == wave)
    )
    return list(query.order_by(RolloutTarget.position))


def update(target: RolloutTarget, clock: ManualClock, *, fail: bool = False) -> None:
    """One server through its update and gate, by the driver's steps."""
    assert rollout_steps.start_update(target, clock)
    gating = switch(RolloutTarget.get_by_id(target.id), clock)
    if fail:
        assert rollout_steps.finish_gate(gating, TargetState.FAILED, GATE_FAILED, clock)
    else:
        assert rollout_steps.finish_gate(gating, TargetState.UPDATED, "healthy for 30s", clock)


def seed_rollout(clock: ManualClock) -> Rollout:
    """8 ready servers on OLD; a rollout of NEW soaking after wave 1 (one of its servers failed).

    Runs after the `fleet` fixture (two ready servers, seven that are not).
    """
    for n in range(11, 17):
        make_server(
            n, "ready", created=900, changed=600, ipv4=f"10.0.1.{n}", health="healthy",
            location="hel1" if n % 2 else "fsn1",
        )  # fmt: skip
    Server.update(rachel8_commit=OLD).where(Server.status == "ready").execute()
    releases.current(OLD, clock)
    release = releases.add_release(NEW, NOTES, "operator:bob", clock)
    options = RolloutOptions(
        waves=parse_waves("canary,50%,100%"),
        max_in_flight=2,
        soak_seconds=60,
        gate_seconds=30,
        halt_share=0.4,
    )
    rollout = start_rollout(release, options, "operator:bob", OLD, clock)
    loaded_ = rollout_steps.load(rollout.id)
    assert loaded_ is not None
    assert rollout_steps.change(loaded_, RolloutState.RUNNING, None, clock)
    (canary,) = wave_targets(rollout.id, 0)
    update(canary, clock)
    loaded_ = rollout_steps.load(rollout.id)
    assert loaded_ is not None
    assert rollout_steps.begin_soak(loaded_, clock.now(), clock)
    assert rollout_steps.enter_wave(loaded_, 1, clock)
    first, second, third = wave_targets(rollout.id, 1)
    update(first, clock)
    update(second, clock, fail=True)
    update(third, clock)
    loaded_ = rollout_steps.load(rollout.id)
    assert loaded_ is not None
    until = clock.now() + timedelta(seconds=SOAK_LEFT)
    assert rollout_steps.begin_soak(loaded_, until, clock)
    fresh: Rollout = Rollout.get_by_id(rollout.id)
    return fresh


@pytest.fixture
def rollout(fleet: dict[str, Server], clock: ManualClock) -> Rollout:
    return seed_rollout(clock)


def text(app: RachelApp, selector: str) -> str:
    return str(app.screen.query_one(selector).render())


def cells(app: RachelApp, selector: str) -> list[list[str]]:
    table = app.screen.query_one(selector)
    return [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]


def notices(app: RachelApp) -> list[str]:
    return [str(n.message) for n in app._notifications]


def state(rollout: Rollout) -> str:
    return str(Rollout.get_by_id(rollout.id).state)


def operator_steps(rollout: Rollout) -> list[str]:
    query = Event.select().where(
        Event.server.is_null() & (Event.actor == OPERATOR) & (Event.kind == "rollout")
    )
    return [e.message for e in query.order_by(Event.id)]


def ticks(conn: redis.Redis) -> list[int]:
    """The rollouts whose driver tick is queued."""
    return [job.meta["rollout_id"] for job in Queue(FINISH, connection=conn).jobs]


async def open_rollouts(pilot) -> RolloutsScreen:
    return await open_screen(pilot, "o", RolloutsScreen)


async def test_the_rollout_its_waves_servers_countdown_and_a_server(
    rollout, make_app, clock: ManualClock
) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_rollouts(pilot)
        head = text(app, "#rollout-head")
        assert f"rollout {rollout.id}  release {NEW[:12]}  {NOTES}" in head
        assert "waves canary,50%,100%; at most 2 in flight; gate 30s; soak 1m00s" in head
        assert "RUNNING  wave 1 of 3 wave(s)" in head
        assert f"wave 2 begins in {SOAK_LEFT}s" in head
        assert "8 server(s) planned: 4 pending, 0 in flight, 3 updated, 1 failed" in head
        assert "7 skipped" in head
        waves = cells(app, "#rollout-waves")
        assert [row[:4] for row in waves] == [
            ["canary", "1", "12%", "■■■■■■■■■■ 1/1"],
            ["wave 1 ◂", "3", "50%", "■■■■■■■■■■ 3/3"],
            ["wave 2", "4", "100%", "□□□□□□□□□□ 0/4"],
        ]
        assert waves[1][4:] == ["0", "0", "2", "1", "0", "0"]
        servers = cells(app, "#rollout-targets")
        assert len(servers) == 15  # 8 planned, 7 skipped when planned
        failed = next(row for row in servers if row[4] == "failed")
        assert failed[3] == "wave 1" and failed[5] == f"{OLD[:12]} → {NEW[:12]}"
        assert failed[6] == GATE_FAILED
        skipped = [row for row in servers if row[3] == "-"]
        assert len(skipped) == 7 and all(row[4] == "skipped" for row in skipped)
        assert "not ready (creating)" in " ".join(row[6] for row in skipped)
        assert "wave 1 begins: 3 server(s)" in text(app, "#rollout-steps")
        recent = cells(app, "#rollout-recent")
        assert [row[:3] for row in recent] == [[str(rollout.id), "running", NEW[:12]]]
        shown = cells(app, "#rollout-releases")
        assert [row[:3] for row in shown] == [[" ", NEW[:12], "4"], ["*", OLD[:12], "4"]]

        clock.advance(20)
        await wait_for(
            pilot, lambda: f"wave 2 begins in {SOAK_LEFT - 20}s" in text(app, "#rollout-head")
        )
        clock.advance(60)
        await wait_for(pilot, lambda: "soak over" in text(app, "#rollout-head"))

        # The failed server: its commit, and the rollout's steps on its timeline.
        table = app.screen.query_one("#rollout-targets")
        table.move_cursor(row=servers.index(failed))
        await pilot.press("enter")
        server = app.screen
        assert isinstance(server, ServerScreen) and server.server_id == int(failed[0])
        await wait_for(pilot, lambda: server.loads >= 1)
        assert f"Rachel8 {NEW[:12]}" in text(app, "#server-head")
        messages = [str(row[4]) for row in cells(app, "#server-events")]
        assert f"rollout {rollout.id}: gate failed: {GATE_FAILED}" in messages
        await pilot.press("escape", "escape")
        assert app.screen is app.fleet


async def test_pause_and_resume_ask_first(rollout, make_app, redis_client: redis.Redis) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_rollouts(pilot)
        await pilot.press("p")
        assert isinstance(app.screen, ConfirmChoice)
        assert app.screen.question == f"Pause rollout {rollout.id} (running, release {NEW[:12]})?"
        await pilot.press("n")
        await wait_for(pilot, lambda: "pause cancelled" in notices(app))
        assert state(rollout) == "running" and operator_steps(rollout) == []
        assert ticks(redis_client) == []

        await pilot.press("p", "y")
        await wait_for(pilot, lambda: state(rollout) == "paused")
        assert operator_steps(rollout) == [f"rollout {rollout.id}: paused by {OPERATOR}"]
        assert ticks(redis_client) == [rollout.id]
        await wait_for(pilot, lambda: f"rollout {rollout.id}: paused" in notices(app))
        await wait_for(pilot, lambda: "PAUSED" in text(app, "#rollout-head"))

        await pilot.press("r", "escape")
        await wait_for(pilot, lambda: "resume cancelled" in notices(app))
        assert state(rollout) == "paused"
        await pilot.press("r", "y")
        await wait_for(pilot, lambda: state(rollout) == "running")
        assert operator_steps(rollout)[-1] == f"rollout {rollout.id}: resumed by {OPERATOR}"
        assert app.screen is screen


async def test_abort_then_roll_back_ask_first(rollout, make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_rollouts(pilot)
        await pilot.press("A")
        assert isinstance(app.screen, ConfirmChoice)
        body = str(app.screen.query_one("#confirm-what").render())
        assert "its 4 pending server(s) are skipped" in body
        assert "The 4 server(s) already switched KEEP the release" in body
        await pilot.press("n")
        await wait_for(pilot, lambda: "abort cancelled" in notices(app))
        assert state(rollout) == "running"

        await pilot.press("A", "y")
        await wait_for(pilot, lambda: state(rollout) == "aborted")
        assert Rollout.get_by_id(rollout.id).reason == f"aborted by {OPERATOR}: from the TUI"
        pending = RolloutTarget.select().where(
            (RolloutTarget.rollout == rollout.id) & (RolloutTarget.state == "pending")
        )
        assert pending.count() == 0
        await wait_for(pilot, lambda: "ABORTED" in text(app, "#rollout-head"))

        await pilot.press("B")
        assert isinstance(app.screen, ConfirmChoice)
        assert "Every server it switched (4 now)" in str(
            app.screen.query_one("#confirm-what").render()
        )
        await pilot.press("escape")
        await wait_for(pilot, lambda: "roll back cancelled" in notices(app))
        assert state(rollout) == "aborted"
        await pilot.press("B", "y")
        await wait_for(pilot, lambda: state(rollout) == "rolling_back")
        assert operator_steps(rollout)[-1] == (
            f"rollout {rollout.id}: rolling back every server it switched by {OPERATOR}"
        )


async def test_a_refused_action_says_why_and_changes_nothing(rollout, make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await open_rollouts(pilot)
        await pilot.press("B", "y")  # running: must be paused or aborted first
        await wait_for(pilot, lambda: any("roll back refused" in n for n in notices(app)))
        assert any("pause or abort it first" in n for n in notices(app))
        assert state(rollout) == "running" and operator_steps(rollout) == []


async def test_no_rollout_yet_and_read_only(fleet, make_app) -> None:
    app = make_app(readonly=True)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_rollouts(pilot)
        assert "no rollout yet" in text(app, "#rollout-head")
        assert [row[0] for row in cells(app, "#rollout-targets")] == ["no rollout yet"]
        # Read-only: not offered (footer and help leave them out), refused if asked.
        await pilot.press("question_mark")
        keys = help_text(app.screen)
        assert "Back" in keys and "Reload" in keys
        assert not [k for k in ("Pause", "Resume", "Abort", "Roll back") if k in keys]
        await pilot.press("escape", "p")
        assert app.screen is screen
        assert Rollout.select().count() == 0
        await pilot.press("escape", "question_mark")
        assert "Rollouts" in help_text(app.screen)  # the fleet's key to this screen


def test_act_without_redis_still_acts_and_warns(
    rollout, tui_db: peewee.Database, redis_client: redis.Redis
) -> None:
    down = redis.Redis(host="127.0.0.1", port=1, retry=Retry(NoBackoff(), 0))
    outcome = act(down, "pause", OPERATOR)
    assert (outcome.rollout_id, outcome.state) == (rollout.id, "paused")
    assert outcome.warning is not None and "cron task will pick the change up" in outcome.warning
    assert state(rollout) == "paused"

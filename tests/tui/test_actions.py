"""Operator actions from the TUI, for real: the database changes and RQ jobs are queued."""

from __future__ import annotations

import pytest
import redis
from rq.job import Job

from core.store.models import Event, Server
from jobs.queues import DEPROVISION, FINISH, START
from tests.tui.conftest import OPERATOR, SIZE, burst, loaded, wait_for
from tui.app import RachelApp
from tui.screens.confirm import ConfirmAction, ConfirmDestroy
from tui.screens.help import HelpScreen, key_table
from tui.widgets import FleetTable

pytestmark = pytest.mark.anyio


def status(server: Server) -> str:
    return str(Server.get_by_id(server.id).status)


def operator_events(server: Server) -> list[Event]:
    return list(Event.select().where((Event.server == server.id) & (Event.actor == OPERATOR)))


def queued_job(conn: redis.Redis, server: Server, queue: str) -> Job:
    jid = Server.get_by_id(server.id).job_id
    assert jid is not None
    job = Job.fetch(jid, connection=conn)
    assert job.origin == queue
    assert job.meta["server_id"] == server.id
    return job


async def cursor_to(pilot, app: RachelApp, server: Server) -> None:
    t = app.fleet.query_one(FleetTable)
    t.move_cursor(row=t.get_row_index(str(server.id)))
    await pilot.pause()


def notices(app: RachelApp) -> list[str]:
    return [str(n.message) for n in app._notifications]


async def test_retry_failed_server(fleet, make_app, redis_client: redis.Redis) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await cursor_to(pilot, app, fleet["failed"])
        await pilot.press("r", "y")
        await wait_for(pilot, lambda: status(fleet["failed"]) == "creating")
        (event,) = operator_events(fleet["failed"])
        assert event.to_status == "creating" and "retry requested" in event.message
        assert queued_job(redis_client, fleet["failed"], START).meta["step"] == "creating"
        await wait_for(pilot, lambda: any("retrying from creating" in n for n in notices(app)))
        t = app.fleet.query_one(FleetTable)
        await wait_for(
            pilot, lambda: str(t.get_cell(str(fleet["failed"].id), "status")) == "creating"
        )


async def test_refused_action_is_reported_and_changes_nothing(fleet, make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await cursor_to(pilot, app, fleet["ready"])
        await pilot.press("r", "y")
        await wait_for(pilot, lambda: any("only failed servers" in n for n in notices(app)))
        assert status(fleet["ready"]) == "ready"
        assert operator_events(fleet["ready"]) == []


async def test_reinject_ready_server(fleet, make_app, redis_client: redis.Redis) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await cursor_to(pilot, app, fleet["ready"])
        await pilot.press("i", "y")
        await wait_for(pilot, lambda: status(fleet["ready"]) == "injecting_secrets")
        (event,) = operator_events(fleet["ready"])
        assert event.message == "re-injecting secrets"
        queued_job(redis_client, fleet["ready"], FINISH)


async def test_force_deprovision_needs_the_name_typed(
    fleet, make_app, redis_client: redis.Redis
) -> None:
    app = make_app()
    target = fleet["cloud_init"]
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await cursor_to(pilot, app, target)
        await pilot.press("D")
        assert isinstance(app.screen, ConfirmDestroy)
        shown = str(app.screen.query_one("#confirm-what").render())
        assert "rachel-4" in shown and "10.0.0.4" in shown and "hetzner #1004" in shown
        await pilot.press(*"rachel-", "enter")  # wrong: stays open
        assert isinstance(app.screen, ConfirmDestroy)
        assert "does not match" in str(app.screen.query_one("#confirm-error").render())
        await pilot.press("escape")
        assert not isinstance(app.screen, ConfirmDestroy)
        await wait_for(pilot, lambda: "deprovision cancelled" in notices(app))
        assert status(target) == "cloud_init"

        await pilot.press("D", *"rachel-4", "enter")
        await wait_for(pilot, lambda: status(target) == "deprovisioning")
        kinds = [(e.from_status, e.to_status) for e in operator_events(target)]
        assert kinds == [("cloud_init", "failed"), ("failed", "deprovisioning")]
        queued_job(redis_client, target, DEPROVISION)


async def test_bulk_actions_on_marked_servers(fleet, make_app, redis_client: redis.Redis) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await pilot.press("3")  # failed only: 10 and 6
        await pilot.press("space", "space")
        await pilot.press("r", "y")
        await wait_for(pilot, lambda: status(fleet["failed"]) == "creating")
        await wait_for(pilot, lambda: status(fleet["failed_inject"]) == "injecting_secrets")
        await wait_for(pilot, lambda: any("retry: 2 done, 0 refused" in n for n in notices(app)))
        queued_job(redis_client, fleet["failed_inject"], FINISH)
        assert app.fleet.model is not None and app.fleet.model.marked == set()

        await pilot.press("0")
        await pilot.press("down", "space", "space")  # 8 (deprovisioning) and 7 (pending)
        await pilot.press("D")
        assert isinstance(app.screen, ConfirmDestroy) and app.screen.word == "2"
        await pilot.press("2", "enter")
        await wait_for(pilot, lambda: status(fleet["pending"]) == "deprovisioning")
        await wait_for(pilot, lambda: any("force deprovision: 2 done" in n for n in notices(app)))


async def test_actions_from_the_command_palette(fleet, make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await cursor_to(pilot, app, fleet["failed"])
        await pilot.press("ctrl+p")
        await pilot.press(*"Retry failed")
        await pilot.pause(0.3)
        await pilot.press("enter", "y")
        await wait_for(pilot, lambda: status(fleet["failed"]) == "creating")


async def test_readonly_disables_every_action(fleet, make_app) -> None:
    app = make_app(readonly=True)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        assert "READ-ONLY" in app.sub_title
        bindings = app.screen.active_bindings
        assert not {"r", "i", "D"} & set(bindings)  # not offered: footer and help omit them
        await cursor_to(pilot, app, fleet["failed"])
        await pilot.press("r", "i", "D")
        assert not isinstance(app.screen, ConfirmDestroy)
        app.request_action("retry", app.fleet.targets())  # and not through a back door either
        await pilot.pause(0.3)
        assert any("read-only" in n for n in notices(app))
        assert status(fleet["failed"]) == "failed"
        assert Event.select().where(Event.actor == OPERATOR).count() == 0
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert "Open server" in titles and "Retry failed server(s)" not in titles


async def test_retry_and_reinject_ask_first_naming_how_many(fleet, make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await burst(pilot, "3", "space", "space", "r")  # both failed servers marked
        assert isinstance(app.screen, ConfirmAction)
        assert app.screen.question == "Retry these 2 servers?"
        shown = str(app.screen.query_one("#confirm-what").render())
        assert "rachel-6" in shown and "rachel-10" in shown
        await burst(pilot, "n")
        assert not isinstance(app.screen, ConfirmAction)
        await wait_for(pilot, lambda: "retry cancelled" in notices(app))
        assert status(fleet["failed"]) == status(fleet["failed_inject"]) == "failed"

        await burst(pilot, "0", "escape")
        await cursor_to(pilot, app, fleet["ready"])
        await burst(pilot, "i")
        assert isinstance(app.screen, ConfirmAction)
        assert app.screen.question == "Re-inject secrets into server rachel-1?"
        assert "RESTARTED" in str(app.screen.query_one("#confirm-what").render())
        await burst(pilot, "escape")
        assert Event.select().where(Event.actor == OPERATOR).count() == 0


async def test_readonly_offers_no_action_in_footer_or_help(fleet, make_app) -> None:
    app = make_app(readonly=True)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        footer = " ".join(str(k.render()) for k in app.screen.query("FooterKey"))
        assert "Jobs" in footer
        assert not any(word in footer for word in ("Retry", "Re-inject", "Deprovision"))
        await burst(pilot, "?")
        assert isinstance(app.screen, HelpScreen)
        keys = " ".join(str(cell) for cell in key_table(app.screen.under).columns[1].cells)
        assert "Jobs" in keys
        assert not any(word in keys for word in ("Retry", "Re-inject", "Deprovision"))

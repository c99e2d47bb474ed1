"""Keys sent without pauses, as a paste, a fast typist or tmux send-keys sends them."""

from __future__ import annotations

import pytest
from textual.widgets import Input

from core.store.models import Event
from tests.tui.conftest import OPERATOR, SIZE, burst, loaded
from tui.widgets import FleetTable

pytestmark = pytest.mark.anyio


async def test_keys_typed_right_after_slash_go_to_the_filter(fleet, make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        model = app.fleet.model
        assert model is not None
        await burst(pilot, "/", *"status:failed", "enter")
        await pilot.pause()
        assert app.fleet.query_one("#filter", Input).value == "status:failed"
        assert model.query == "status:failed"
        failed = sorted(str(fleet[k].id) for k in ("failed", "failed_inject"))
        assert sorted(model.visible) == failed
        assert (model.sort_column, model.sort_reverse, model.show_deleted) == ("id", True, False)
        assert Event.select().where(Event.actor == OPERATOR).count() == 0
        assert app.focused is app.fleet.query_one(FleetTable)


async def test_keys_pressed_as_the_app_opens_go_to_the_filter(fleet, make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await burst(pilot, "/", *"status:failed", "enter")  # before the first load
        await loaded(pilot)
        model = app.fleet.model
        assert model is not None and model.query == "status:failed"
        assert (model.sort_column, model.show_deleted) == ("id", False)
        assert Event.select().where(Event.actor == OPERATOR).count() == 0


async def test_no_binding_fires_while_the_filter_has_focus(fleet, make_app) -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        await burst(pilot, "/", *"a/rDis3 j", "ctrl+r")
        screen = app.fleet
        assert screen.query_one("#filter", Input).value == "a/rDis3 j"
        assert app.screen is screen and screen.model is not None
        assert not screen.model.show_deleted and screen.model.sort_column == "id"
        active = screen.active_bindings
        for key in ("r", "i", "D", "s", "a", "j", "space", "3"):
            assert key not in active or active[key].node is not screen
        assert Event.select().where(Event.actor == OPERATOR).count() == 0
        await burst(pilot, "escape")
        assert app.focused is screen.query_one(FleetTable)

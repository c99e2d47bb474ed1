"""The fleet screen shows the reconciler's findings: marker, filter, summary count (issue 21)."""

from __future__ import annotations

import pytest

from core.domain.reconcile import DbServer, diff
from core.platform.settings import Settings
from core.store.models import Server
from jobs.reconcile import record_drift
from tests.tui.conftest import NOW, SIZE, loaded, wait_for
from tests.tui.test_fleet import cell, ids
from tui.app import RachelApp

pytestmark = pytest.mark.anyio


async def test_a_lost_ready_server_is_marked_filterable_and_counted(
    fleet: dict[str, Server], make_app, tui_settings: Settings
) -> None:
    # Hetzner lists none of the fleet's VPSs: both ready servers are lost.
    rows = [DbServer.from_row(fleet[name]) for name in ("ready", "slow")]
    record_drift(list(diff([], rows, {}, NOW, tui_settings).findings))
    app: RachelApp = make_app(summary_seconds=0.2)
    async with app.run_test(size=SIZE) as pilot:
        await loaded(pilot)
        assert cell(app, 1, "status") == "ready !lost"
        assert cell(app, 4, "status") == "cloud_init"
        await pilot.press("slash", *"drift:lost", "enter")
        assert ids(app) == [2, 1]
        await pilot.press("escape")
        await pilot.press("slash", *"!drift:any", "enter")
        assert 1 not in ids(app) and 4 in ids(app)
        await wait_for(pilot, lambda: app.fleet.summary is not None)
        assert "!lost 2" in str(app.fleet.query_one("#summary").render())

"""A server whose VPS is gone is marked lost wherever the fleet is shown (issue 21, item 5)."""

from __future__ import annotations

import json

from litestar.testing import TestClient

from core.domain.fleet import drift_counts, fleet_rows
from core.platform.dev_secrets import generate_api_key
from core.store.models import Server
from jobs import reconcile
from jobs.work import RQWork
from tests import factories
from tests.conftest import make_settings
from tests.pipeline.harness import Stack
from tests.scheduler.test_reconcile import ours, plant_vps, run_cli
from webhook.app import create_app
from webhook.context import WebContext


def status_api(stack: Stack, redis_url: str, server_id: int) -> dict[str, object]:
    key = generate_api_key()
    settings = make_settings(stack.settings.data_dir, REDIS_URL=redis_url, RACHEL_API_KEYS=key)
    with TestClient(create_app(WebContext.build(settings, RQWork()))) as client:
        response = client.get(f"/api/servers/{server_id}", headers={"X-API-Key": key})
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


def test_a_ready_server_whose_vps_is_gone_shows_as_lost_until_it_is_back(
    stack: Stack, database_url: str, redis_server_url: str
) -> None:
    owner = factories.customer
    lost = factories.server(owner(), status="ready", provider_id=777001, name="test-gone")
    good = factories.server(owner(), status="ready", name="test-fine")
    good_vps = plant_vps(stack, "test-fine", ours(good.id))
    Server.update(provider_id=good_vps).where(Server.id == good.id).execute()

    reconcile.run(stack.ctx, apply=False)  # report only, as by default

    rows = {row.id: row for row in fleet_rows()}
    assert rows[lost.id].status == "ready" and rows[lost.id].drift == "lost"
    assert "777001" in (rows[lost.id].drift_reason or "")
    assert rows[good.id].drift is None
    assert drift_counts() == {"lost": 1}

    out = run_cli(stack, database_url, redis_server_url, "--json", command="fleet")
    assert out.returncode == 0, out.stderr
    listed = {item["id"]: item for item in map(json.loads, out.stdout.splitlines())}
    assert listed[lost.id]["drift"] == "lost" and listed[good.id]["drift"] is None
    Server.update(health="unhealthy", health_reason="VPS unreachable over SSH").where(
        Server.id == good.id
    ).execute()
    table = run_cli(stack, database_url, redis_server_url, command="fleet")
    assert any(str(lost.id) in line and "lost" in line for line in table.stdout.splitlines())
    # Health beside the status, and an unhealthy server's reason where an error would be.
    assert "HEALTH" in table.stdout.splitlines()[0]
    (line,) = [x for x in table.stdout.splitlines() if x.split()[0] == str(good.id)]
    assert "unhealthy" in line and "VPS unreachable over SSH" in line

    body = status_api(stack, redis_server_url, lost.id)
    assert body["status"] == "ready"
    assert body["drift"] == {"kind": "lost", "reason": rows[lost.id].drift_reason}
    assert status_api(stack, redis_server_url, good.id)["drift"] is None

    # The VPS turns out to be there after all: the next run clears the marker.
    back = plant_vps(stack, "test-gone", ours(lost.id))
    Server.update(provider_id=back).where(Server.id == lost.id).execute()
    reconcile.run(stack.ctx, apply=False)
    assert Server.get_by_id(lost.id).drift is None
    assert drift_counts() == {}


def test_a_status_change_clears_the_finding_and_stuck_servers_are_marked(stack: Stack) -> None:
    stuck = factories.server(factories.customer(), status="pending", name="test-stuck")
    Server.update(status_changed_at=stack.ctx.clock.now().replace(year=2000)).where(
        Server.id == stuck.id
    ).execute()
    reconcile.run(stack.ctx, apply=False)
    assert Server.get_by_id(stuck.id).drift == "stuck"
    # Fixed by the apply run: the re-enqueued server no longer drifts.
    reconcile.run(stack.ctx, apply=True)
    assert Server.get_by_id(stuck.id).drift is None

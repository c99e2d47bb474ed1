"""The customer API's health additions: health, uptime and last heartbeat in the status;
restart and logs refused with clear errors when the server cannot be asked (the VPS
side is in tests/pipeline/test_customer_api.py)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest
import redis
from litestar import Litestar
from litestar.testing import TestClient

from core.domain import heartbeats
from core.domain.heartbeats import HeartbeatStore
from core.platform.clock import utcnow
from core.store.models import Event, Server
from tests import factories
from tests.unit.core.domain.test_heartbeats import beat
from tests.webhook.conftest import API_KEY, Http


def _health_event(server: Server, at: datetime, state: str) -> None:
    Event.create(server=server, at=at, kind="health", message=state, actor="cron", to_status=state)


def test_a_new_server_has_unknown_health_and_nothing_measured(tc: Http) -> None:
    server = factories.server(status="creating")
    body = tc.api(f"/api/servers/{server.id}").json()
    assert body["health"] == {"state": "unknown", "reason": None, "since": None}
    assert body["uptime_30d_percent"] is None
    assert body["last_heartbeat_at"] is None


def test_status_shows_health_uptime_and_the_last_heartbeat(
    tc: Http, redis_client: redis.Redis
) -> None:
    now = utcnow()
    server = factories.server(
        status="ready",
        ipv4="198.51.100.7",
        health="unhealthy",
        health_reason="Rachel8 failed (exit-code, exit status 1, 5 automatic restarts)",
        health_changed_at=now - timedelta(hours=6),
    )
    # Healthy from 40 days ago, degraded for a day, unhealthy for the last 6 hours.
    _health_event(server, now - timedelta(days=40), "healthy")
    _health_event(server, now - timedelta(days=3), "degraded")
    _health_event(server, now - timedelta(days=2), "healthy")
    _health_event(server, now - timedelta(hours=6), "unhealthy")
    # Another server's changes and other kinds of events do not count.
    _health_event(factories.server(status="ready"), now - timedelta(days=1), "unhealthy")
    Event.create(server=server, at=now, kind="repair", message="restart", actor="cron")
    credential, digest = heartbeats.new_credential()
    heartbeats.register(redis_client, server.id, digest, "198.51.100.7")
    arrived = time.time()
    sent = beat(seq=3)
    HeartbeatStore(redis_client).record(
        server.id, credential, "198.51.100.7", sent, body=heartbeats.encode(sent), now=arrived
    )
    body = tc.api(f"/api/servers/{server.id}").json()
    assert body["health"]["state"] == "unhealthy"
    assert body["health"]["reason"].startswith("Rachel8 failed")
    since = datetime.fromisoformat(body["health"]["since"])
    assert abs(since - (now - timedelta(hours=6)).replace(tzinfo=UTC)) < timedelta(seconds=1)
    window = timedelta(days=30).total_seconds()
    expected = 100 * (window - 6 * 3600) / window
    assert body["uptime_30d_percent"] == pytest.approx(expected, abs=0.01)
    last = datetime.fromisoformat(body["last_heartbeat_at"])
    assert abs(last.timestamp() - arrived) < 0.01
    # The customer's view of their server says the same.
    mine = tc.api(f"/api/customers/{server.customer.external_id}/server").json()
    assert mine["health"] == body["health"]


def test_a_deprovisioned_servers_uptime_stops_when_it_left_ready(tc: Http) -> None:
    now = utcnow()
    server = factories.server(status="deleted", status_changed_at=now - timedelta(days=2))
    _health_event(server, now - timedelta(days=4), "unhealthy")
    _health_event(server, now - timedelta(days=3), "healthy")
    body = tc.api(f"/api/servers/{server.id}").json()
    assert body["uptime_30d_percent"] == pytest.approx(50.0, abs=0.01)


def test_restart_and_logs_need_the_api_key(client: TestClient[Litestar]) -> None:
    server = factories.server(status="ready")
    for response in (
        client.post(f"/api/servers/{server.id}/restart"),
        client.get(f"/api/servers/{server.id}/logs"),
        client.post(f"/api/servers/{server.id}/restart", headers={"X-API-Key": "nope"}),
    ):
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"
    assert not Event.select().where(Event.kind == "repair").exists()


def _restart(client: TestClient[Litestar], server_id: int) -> tuple[int, str]:
    response = client.post(f"/api/servers/{server_id}/restart", headers={"X-API-Key": API_KEY})
    return response.status_code, response.json()["error"]["code"]


def test_servers_that_cannot_be_asked_get_clear_errors(
    tc: Http, client: TestClient[Litestar]
) -> None:
    cases = {
        424242: (404, "not_found"),
        factories.server(status="creating").id: (409, "server_not_ready"),
        factories.server(status="deleted", ipv4="198.51.100.7").id: (409, "server_not_ready"),
        # Ready, but no address or pinned host key recorded: no safe way in.
        factories.server(status="ready").id: (409, "server_not_ready"),
    }
    for server_id, expected in cases.items():
        assert _restart(client, server_id) == expected, server_id
        logs = tc.api(f"/api/servers/{server_id}/logs", params={"lines": 5})
        assert (logs.status_code, logs.json()["error"]["code"]) == expected, server_id
    assert not Event.select().where(Event.kind == "repair").exists()


@pytest.mark.parametrize("lines", ["0", "501", "-1", "ten", "1.5"])
def test_log_line_counts_out_of_range_are_bad_requests(tc: Http, lines: str) -> None:
    server = factories.server(status="ready")
    response = tc.api(f"/api/servers/{server.id}/logs", params={"lines": lines})
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "validation_error"

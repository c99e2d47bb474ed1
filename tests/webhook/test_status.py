"""GET /api/servers/{id} and /api/customers/{id}/server: API key, timings, last error."""

from __future__ import annotations

from datetime import datetime, timedelta

from tests import factories
from tests.webhook.conftest import BOT_TOKEN, Http

T0 = datetime(2026, 1, 1, 12, 0, 0)


def test_status_shows_phase_timings_and_sla(tc: Http) -> None:
    server = factories.server(
        status="ready",
        created_at=T0,
        creating_at=T0 + timedelta(seconds=1),
        cloud_init_at=T0 + timedelta(seconds=31),
        injecting_secrets_at=T0 + timedelta(seconds=81),
        ready_at=T0 + timedelta(seconds=90),
        provisioning_seconds=90.0,
        ipv4="198.51.100.7",
    )
    response = tc.api(f"/api/servers/{server.id}")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ready"
    assert body["within_sla"] is True
    assert [(p["phase"], p["seconds"]) for p in body["phases"]] == [
        ("pending", 1.0),
        ("creating", 30.0),
        ("cloud_init", 50.0),
        ("injecting_secrets", 9.0),
    ]
    assert body["customer_id"] == server.customer.external_id


def test_last_error_is_shown_redacted(tc: Http) -> None:
    server = factories.server(
        status="failed", failed_phase="creating", last_error=f"boom with bearer {BOT_TOKEN}"
    )
    body = tc.api(f"/api/servers/{server.id}").json()
    assert body["failed_phase"] == "creating"
    assert body["last_error"].startswith("boom")
    assert BOT_TOKEN not in body["last_error"]


def test_customer_server_prefers_the_live_one(tc: Http) -> None:
    customer = factories.customer(external_id="cus_status")
    factories.server(customer, status="deleted")
    live = factories.server(customer, status="creating")
    factories.server(customer, status="deleted")
    body = tc.api("/api/customers/cus_status/server").json()
    assert body["id"] == live.id


def test_unknowns_are_404(tc: Http) -> None:
    factories.customer(external_id="cus_nothing")
    for path in (
        "/api/servers/424242",
        "/api/customers/cus_missing/server",
        "/api/customers/cus_nothing/server",
        "/api/servers/424242/events",
    ):
        response = tc.api(path)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "not_found"


def test_api_key_is_required(tc: Http) -> None:
    server = factories.server()
    for headers in ({}, {"X-API-Key": "wrong-key-wrong-key"}, {"Authorization": "Bearer x"}):
        response = tc.client.get(f"/api/servers/{server.id}", headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"
        assert "X-API-Key" in response.headers["www-authenticate"]
    assert tc.client.get(f"/api/servers/{server.id}/events").status_code == 401

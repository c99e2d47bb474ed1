"""POST /callbacks/cloud-init/{id}: the one-time token, and every way it can be wrong."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import redis
from litestar import Litestar
from rq import Queue

from core.domain.callbacks import issue_token
from core.platform.clock import utcnow
from core.security.crypto import generate_ssh_keypair
from core.store.models import Event, Server
from jobs.queues import FINISH
from tests import factories
from tests.webhook.conftest import Served

HOST_KEY = generate_ssh_keypair("host").public_openssh


@pytest.fixture
def web(app: Litestar) -> Iterator[httpx.Client]:
    """The served app: callbacks are bound to the client's address (127.0.0.1 here)."""
    with Served(app) as base, httpx.Client(base_url=base, timeout=10) as client:
        yield client


def _waiting(ipv4: str = "127.0.0.1", ttl: float = 600) -> tuple[Server, str]:
    server = factories.server(status="cloud_init", ipv4=ipv4)
    token = issue_token(server, ttl)
    server.save()
    return server, token


def _snapshot(server_id: int) -> dict[str, Any]:
    row = Server.select().where(Server.id == server_id).dicts().get()
    return {**row, "events": Event.select().where(Event.server == server_id).count()}


def _call(
    web: httpx.Client, server_id: int, token: str | None, host_key: str = HOST_KEY, **headers: str
) -> httpx.Response:
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return web.post(
        f"/callbacks/cloud-init/{server_id}", json={"host_key": host_key}, headers=headers
    )


def test_callback_pins_the_host_key_and_queues_injection(
    web: httpx.Client, redis_client: redis.Redis
) -> None:
    server, token = _waiting()
    response = _call(web, server.id, token)
    assert response.status_code == 200, response.text
    assert response.json() == {"server_id": server.id, "status": "injecting_secrets"}
    fresh = Server.get_by_id(server.id)
    assert fresh.status == "injecting_secrets"
    assert fresh.host_key == " ".join(HOST_KEY.split()[:2])
    assert fresh.callback_token_hash is None
    assert Queue(FINISH, connection=redis_client).job_ids == [fresh.job_id]


def _rejected(
    web: httpx.Client,
    server: Server,
    response: httpx.Response,
    status: int,
    code: str,
    before: dict[str, Any],
) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert _snapshot(server.id) == before


def test_reused_token_is_401(web: httpx.Client) -> None:
    server, token = _waiting()
    assert _call(web, server.id, token).status_code == 200
    before = _snapshot(server.id)
    _rejected(web, server, _call(web, server.id, token), 401, "unauthorized", before)


def test_wrong_token_is_401_and_changes_nothing(web: httpx.Client) -> None:
    server, _ = _waiting()
    before = _snapshot(server.id)
    _rejected(web, server, _call(web, server.id, "not-the-token"), 401, "unauthorized", before)


def test_missing_or_non_bearer_authorization_is_401(web: httpx.Client) -> None:
    server, token = _waiting()
    before = _snapshot(server.id)
    _rejected(web, server, _call(web, server.id, None), 401, "unauthorized", before)
    response = _call(web, server.id, None, Authorization=f"Basic {token}")
    _rejected(web, server, response, 401, "unauthorized", before)


def test_expired_token_is_401(web: httpx.Client) -> None:
    server, token = _waiting()
    Server.update(callback_token_expires_at=utcnow() - timedelta(seconds=1)).where(
        Server.id == server.id
    ).execute()
    before = _snapshot(server.id)
    _rejected(web, server, _call(web, server.id, token), 401, "unauthorized", before)


def test_foreign_token_is_401(web: httpx.Client) -> None:
    server, _ = _waiting()
    _, other_token = _waiting()
    before = _snapshot(server.id)
    _rejected(web, server, _call(web, server.id, other_token), 401, "unauthorized", before)


def test_token_from_another_address_is_401(web: httpx.Client) -> None:
    server, token = _waiting(ipv4="198.51.100.7")
    before = _snapshot(server.id)
    _rejected(web, server, _call(web, server.id, token), 401, "unauthorized", before)
    # X-Forwarded-For from an untrusted peer (127.0.0.1 is not a trusted proxy here) is ignored.
    response = _call(web, server.id, token, **{"X-Forwarded-For": "198.51.100.7"})
    _rejected(web, server, response, 401, "unauthorized", before)


def test_unknown_server_is_404(web: httpx.Client) -> None:
    _, token = _waiting()
    response = _call(web, 999_999, token)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_malformed_host_key_is_422_and_changes_nothing(web: httpx.Client) -> None:
    server, token = _waiting()
    before = _snapshot(server.id)
    response = _call(web, server.id, token, host_key="ssh-rsa AAAA nope")
    _rejected(web, server, response, 422, "invalid_host_key", before)
    assert _call(web, server.id, token).status_code == 200  # the token was not spent


def test_server_not_waiting_is_409(web: httpx.Client) -> None:
    server, token = _waiting()
    Server.update(status="creating").where(Server.id == server.id).execute()
    before = _snapshot(server.id)
    _rejected(web, server, _call(web, server.id, token), 409, "conflict", before)


def test_unknown_field_and_bad_id_are_400(web: httpx.Client) -> None:
    server, token = _waiting()
    response = web.post(
        f"/callbacks/cloud-init/{server.id}",
        json={"host_key": HOST_KEY, "extra": 1},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"
    assert web.post("/callbacks/cloud-init/0", json={"host_key": HOST_KEY}).status_code == 400
    assert web.post("/callbacks/cloud-init/abc", json={}).status_code == 404


def test_trusted_proxy_forwarded_address_is_used(
    web_settings: Any, ctx: Any, db: Any, redis_client: redis.Redis
) -> None:
    # A proxy at 127.0.0.2 (trusted in these settings) forwards for the VPS at 198.51.100.7.
    from webhook.app import create_app

    server, token = _waiting(ipv4="198.51.100.7")
    with Served(create_app(ctx)) as base:
        transport = httpx.HTTPTransport(local_address="127.0.0.2")
        with httpx.Client(base_url=base, transport=transport, timeout=10) as proxy:
            response = _call(
                proxy, server.id, token, **{"X-Forwarded-For": "203.0.113.9, 198.51.100.7"}
            )
    assert response.status_code == 200, response.text

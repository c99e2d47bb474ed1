"""POST /heartbeats/{id}: the agent's heartbeat, every bad input refused with nothing recorded.

The app is served by uvicorn (heartbeats are bound to the sender's address:
127.0.0.1 here) over the real test Redis and database.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
from litestar import Litestar

from core.domain import heartbeats
from core.domain.heartbeats import HeartbeatStore
from core.store.models import Server
from tests import factories
from tests.unit.core.domain.test_heartbeats import beat
from tests.webhook.conftest import Served
from webhook.context import WebContext
from webhook.heartbeat_asgi import fast_path

LOCAL = "127.0.0.1"


@pytest.fixture
def web(app: Litestar) -> Iterator[httpx.Client]:
    with Served(app) as base, httpx.Client(base_url=base, timeout=10) as client:
        yield client


def _armed(
    client: redis.Redis, status: str = "ready", ipv4: str = LOCAL, register: bool = True
) -> tuple[Server, str]:
    """A server whose agent holds a credential (the row keeps its hash, Redis arms it)."""
    credential, digest = heartbeats.new_credential()
    server = factories.server(status=status, ipv4=ipv4, heartbeat_credential_hash=digest)
    if register:
        heartbeats.register(client, server.id, digest, ipv4)
    return server, credential


def _post(
    web: httpx.Client,
    server_id: int | str,
    credential: str | None,
    body: bytes | None = None,
    **headers: str,
) -> httpx.Response:
    if credential is not None:
        headers["Authorization"] = f"Bearer {credential}"
    headers.setdefault("Content-Type", "application/json")
    content = heartbeats.encode(beat()) if body is None else body
    return web.post(f"/heartbeats/{server_id}", content=content, headers=headers)


def _recorded(client: redis.Redis) -> dict[str, Any]:
    """Everything the store keeps about heartbeats (not the answer counters)."""
    return {
        "latest": client.hgetall(heartbeats.LATEST_KEY),
        "seq": client.hgetall(heartbeats.SEQUENCE_KEY),
        "seen": client.zrange(heartbeats.SEEN_KEY, 0, -1, withscores=True),
    }


def _answer(response: httpx.Response) -> tuple[int, Any, str | None]:
    return response.status_code, response.json(), response.headers.get("www-authenticate")


def test_a_good_heartbeat_is_recorded(web: httpx.Client, redis_client: redis.Redis) -> None:
    server, credential = _armed(redis_client)
    sent = beat(seq=7, uptime_seconds=42.0)
    response = _post(web, server.id, credential, heartbeats.encode(sent))
    assert response.status_code == 202, response.text
    assert response.json() == {"accepted": True}
    stored = HeartbeatStore(redis_client).latest([server.id])
    assert stored[server.id].heartbeat == sent
    assert stored[server.id].received_at > 0
    # The next one, with a higher sequence, replaces it.
    newer = beat(seq=8, uptime_seconds=72.0)
    assert _post(web, server.id, credential, heartbeats.encode(newer)).status_code == 202
    assert HeartbeatStore(redis_client).latest([server.id])[server.id].heartbeat == newer


def _bad_inputs(credential: str) -> dict[str, tuple[str | None, bytes | None, dict[str, str]]]:
    """Name -> (credential, body, extra headers): every way a heartbeat can be wrong."""
    good = heartbeats.encode(beat(seq=5))
    document = json.loads(good)
    return {
        "no credential": (None, None, {}),
        "not a bearer": (None, None, {"Authorization": f"Basic {credential}"}),
        "empty bearer": (None, None, {"Authorization": "Bearer"}),
        "wrong credential": (heartbeats.new_credential()[0], None, {}),
        "oversized credential": ("x" * 4000, None, {}),
        "unknown field": (credential, json.dumps({**document, "shell": "id"}).encode(), {}),
        "missing field": (credential, json.dumps({**document, "telegram": None}).encode(), {}),
        "bad value": (credential, good.replace(b'"seq":5', b'"seq":0'), {}),
        "not json": (credential, b"{not json", {}),
        "oversized": (
            credential,
            json.dumps({**document, "agent": "x" * heartbeats.MAX_HEARTBEAT_BYTES}).encode(),
            {},
        ),
        "forged forwarded-for": (credential, None, {"X-Forwarded-For": "10.9.9.9"}),
    }


#: Name -> (status, error code) answered, for a known server and an unknown id alike.
EXPECTED: dict[str, tuple[int, str | None]] = {
    "no credential": (401, "unauthorized"),
    "not a bearer": (401, "unauthorized"),
    "empty bearer": (401, "unauthorized"),
    "wrong credential": (401, "unauthorized"),
    "oversized credential": (401, "unauthorized"),
    "unknown field": (400, "validation_error"),
    "missing field": (400, "validation_error"),
    "bad value": (400, "validation_error"),
    "not json": (400, "invalid_json"),
    "oversized": (413, "body_too_large"),
    # An untrusted peer's X-Forwarded-For is ignored: its own address counts.
    "forged forwarded-for": (202, None),
}


def test_every_bad_input_is_refused_and_nothing_is_recorded(
    web: httpx.Client, redis_client: redis.Redis
) -> None:
    server, credential = _armed(redis_client)
    unknown_id = server.id + 1000
    for name, (key, body, headers) in _bad_inputs(credential).items():
        before = _recorded(redis_client)
        status, code = EXPECTED[name]
        known = _post(web, server.id, key, body, **headers)
        assert known.status_code == status, (name, known.text)
        if code is None:
            continue
        assert _recorded(redis_client) == before, name
        assert known.json()["error"]["code"] == code, name
        if status == 401:
            assert known.headers["www-authenticate"] == "Bearer"
        # The same answer for an id nobody knows.
        stranger = _post(web, unknown_id, key, body, **headers)
        assert _answer(stranger) == _answer(known), name
        assert _recorded(redis_client) == before, name


def test_a_credential_from_another_address_is_refused_like_an_unknown_id(
    web: httpx.Client, redis_client: redis.Redis
) -> None:
    elsewhere, credential = _armed(redis_client, ipv4="198.51.100.7")
    refused = _post(web, elsewhere.id, credential)
    assert refused.status_code == 401
    assert _answer(_post(web, elsewhere.id + 1000, credential)) == _answer(refused)
    assert _recorded(redis_client)["latest"] == {}


def test_deleted_and_unarmed_servers_are_refused_like_unknown_ids(
    web: httpx.Client, redis_client: redis.Redis
) -> None:
    unknown = _post(web, 999_999, heartbeats.new_credential()[0])
    assert unknown.status_code == 401
    deleted, credential = _armed(redis_client, status="deleted", register=False)
    # Deprovisioning revoked it in Redis; the row still has the hash: no way back in.
    heartbeats.revoke(redis_client, deleted.id)
    cases = [(deleted.id, credential)]
    for status in ("cloud_init", "failed", "deprovisioning"):
        row, key = _armed(redis_client, status=status, register=False)
        cases.append((row.id, key))
    for server_id, key in cases:
        assert _answer(_post(web, server_id, key)) == _answer(unknown), server_id
    assert _recorded(redis_client)["latest"] == {}
    assert redis_client.keys(f"{heartbeats.AUTH_PREFIX}*") == []


def test_a_replayed_heartbeat_is_a_conflict_and_keeps_the_newer_one(
    web: httpx.Client, redis_client: redis.Redis
) -> None:
    server, credential = _armed(redis_client)
    newest = beat(seq=10)
    assert _post(web, server.id, credential, heartbeats.encode(newest)).status_code == 202
    for seq in (10, 9, 1):
        replay = _post(web, server.id, credential, heartbeats.encode(beat(seq=seq)))
        assert replay.status_code == 409, seq
        assert replay.json()["error"]["code"] == "stale_sequence"
    assert HeartbeatStore(redis_client).latest([server.id])[server.id].heartbeat == newest


def test_ids_out_of_range_are_bad_requests(web: httpx.Client, redis_client: redis.Redis) -> None:
    _, credential = _armed(redis_client)
    for wrong in ("0", str(2**31), "-3"):
        assert _post(web, wrong, credential).status_code == 400, wrong
    assert _post(web, "abc", credential).status_code == 404
    assert _recorded(redis_client)["latest"] == {}


def test_a_redis_that_lost_its_keys_heals_from_the_database(
    web: httpx.Client, redis_client: redis.Redis
) -> None:
    for status in ("ready", "injecting_secrets"):
        server, credential = _armed(redis_client, status=status)
        redis_client.flushdb()
        response = _post(web, server.id, credential)
        assert response.status_code == 202, (status, response.text)
        assert list(HeartbeatStore(redis_client).latest([server.id])) == [server.id]
        assert redis_client.exists(f"{heartbeats.AUTH_PREFIX}{server.id}")


def test_the_database_fallback_checks_credential_and_address(
    web: httpx.Client, redis_client: redis.Redis
) -> None:
    server, credential = _armed(redis_client, register=False)
    assert _post(web, server.id, heartbeats.new_credential()[0]).status_code == 401
    moved, moved_key = _armed(redis_client, ipv4="198.51.100.7", register=False)
    assert _post(web, moved.id, moved_key).status_code == 401
    assert redis_client.keys(f"{heartbeats.AUTH_PREFIX}*") == []
    assert _recorded(redis_client)["latest"] == {}
    # The right credential from the right address arms it.
    assert _post(web, server.id, credential).status_code == 202


def test_a_trusted_proxy_forwards_the_agents_address(
    app: Litestar, redis_client: redis.Redis
) -> None:
    server, credential = _armed(redis_client, ipv4="198.51.100.7")
    transport = httpx.HTTPTransport(local_address="127.0.0.2")
    with (
        Served(app) as base,
        httpx.Client(base_url=base, transport=transport, timeout=10) as proxy,
    ):
        forwarded = {"X-Forwarded-For": "203.0.113.9, 198.51.100.7"}
        assert _post(proxy, server.id, credential, **forwarded).status_code == 202
        spoofed = {"X-Forwarded-For": "198.51.100.7, 203.0.113.9"}
        assert _post(proxy, server.id, credential, **spoofed).status_code == 401


def test_the_schema_documents_the_endpoint_and_its_credential(web: httpx.Client) -> None:
    schema = web.get("/schema/openapi.json").json()
    operation = schema["paths"]["/heartbeats/{server_id}"]["post"]
    assert operation["security"] == [{"heartbeatCredential": []}]
    assert {"202", "400", "401", "409", "413"} <= set(operation["responses"])
    assert schema["components"]["securitySchemes"]["heartbeatCredential"]["scheme"] == "bearer"
    assert "Heartbeat" in json.dumps(operation["requestBody"])
    assert "seq" in schema["components"]["schemas"]["Heartbeat"]["required"]


def test_the_hot_path_answers_good_heartbeats_and_hands_the_rest_to_litestar(
    ctx: WebContext, redis_client: redis.Redis
) -> None:
    """`webhook.heartbeat_asgi`: what it answers itself, and what reaches Litestar intact
    (the tests above go through both, served, and get the route's answers)."""
    server, credential = _armed(redis_client)
    handed: list[tuple[str, bytes]] = []

    async def litestar(scope: Any, receive: Any, send: Any) -> None:
        body, more = b"", True
        while more:
            message = await receive()
            body, more = body + message.get("body", b""), message.get("more_body", False)
        handed.append((scope["path"], body))
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    good, bad = heartbeats.encode(beat(seq=3)), b'{"seq": 0}'
    auth = {"Authorization": f"Bearer {credential}", "Content-Type": "application/json"}
    cases = [
        (f"/heartbeats/{server.id}", good, auth, 202),
        (f"/heartbeats/{server.id}", good, auth, 409),  # the same sequence again
        (f"/heartbeats/{server.id}", bad, auth, 299),
        (f"/heartbeats/{server.id}", good, {**auth, "Authorization": "Basic x"}, 299),
        (f"/heartbeats/{server.id}", good, {**auth, "Content-Type": "text/plain"}, 299),
        ("/heartbeats/0", good, auth, 299),
        ("/webhooks/deploy", good, auth, 299),
    ]

    async def post_all() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=fast_path(litestar, ctx), client=(LOCAL, 40000))
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://web") as client:
                return [await client.post(p, content=b, headers=h) for p, b, h, _ in cases]
        finally:
            await ctx.close()

    answers = asyncio.run(post_all())
    assert [a.status_code for a in answers] == [c[3] for c in cases]
    assert answers[0].json() == {"accepted": True}
    assert answers[1].json()["error"]["code"] == "stale_sequence"
    assert handed == [(p, b) for p, b, _, status in cases if status == 299]
    assert HeartbeatStore(redis_client).latest([server.id])[server.id].heartbeat.seq == 3

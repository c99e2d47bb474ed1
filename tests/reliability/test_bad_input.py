"""Bad input on every endpoint: a clear 4xx with a JSON error body, and nothing changed.

tests/webhook covers signatures, idempotency, oversize deploy bodies and
schemathesis over the schema. Here: random, malformed and oversized bodies on
EVERY endpoint (the status API, health and metrics included, and the
callbacks with hostile host keys), each compared against a snapshot of the
whole database and the whole of Redis taken before.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
import time
from collections.abc import Iterator
from typing import Any

import httpx
import peewee
import pytest
import redis
from litestar import Litestar

from core.domain.callbacks import issue_token
from core.security.crypto import generate_ssh_keypair
from tests import factories
from tests.reliability.snapshots import State, state
from tests.webhook.conftest import (  # noqa: F401 - fixtures
    API_KEY,
    NEW_SECRET,
    Served,
    app,
    ctx,
    web_settings,
)

MAX_BODY = 4096  # RACHEL_MAX_BODY_BYTES of the webhook tests' settings
SEED = 10


@pytest.fixture
def web(app: Litestar) -> Iterator[httpx.Client]:  # noqa: F811
    """The app served by uvicorn: callbacks are bound to the client's address, 127.0.0.1."""
    with Served(app) as base, httpx.Client(base_url=base, timeout=10) as client:
        yield client


def _bodies(rng: random.Random) -> list[bytes]:
    """Random, malformed and oversized bodies (deterministic for a seed)."""
    deep: Any = "x"
    for _ in range(40):
        deep = {"a": [deep]}
    bodies = [
        b"",
        b"null",
        b"[]",
        b"{",
        b'{"customer_id": ',
        b"\xff\xfe\x00garbage",
        b"\x00" * 64,
        b'{"customer_id": "\x00"}',
        json.dumps(deep).encode(),
        json.dumps({"customer_id": 1, "status": ["active"], "host_key": {"$gt": ""}}).encode(),
        json.dumps({"customer_id": "x" * 3000}).encode(),
        json.dumps({"host_key": "ssh-ed25519 " + "A" * 3000}).encode(),
        b"A" * (MAX_BODY + 1),
        json.dumps({"pad": "x" * (MAX_BODY * 4)}).encode(),
        b"1e999999",
        b'"\\ud800"',
    ]
    for _ in range(8):
        bodies.append(bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 300))))
    return bodies


PATHS_POST = ["/webhooks/deploy", "/webhooks/subscription", "/callbacks/cloud-init/{server}"]
PATHS_GET = [
    "/api/servers/{server}",
    "/api/customers/{customer}/server",
    "/healthz",
    "/readyz",
    "/metrics",
]


def _raw_signed(body: bytes) -> dict[str, str]:
    """Standard Webhooks headers over raw bytes (the library signs only UTF-8 text)."""
    msg_id = f"msg_bad_{hashlib.sha256(body).hexdigest()[:16]}"
    stamp = str(int(time.time()))
    key = base64.b64decode(NEW_SECRET.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": stamp,
        "webhook-signature": "v1," + base64.b64encode(mac).decode(),
    }


def _assert_clear_error(response: httpx.Response, what: str) -> None:
    assert 400 <= response.status_code < 500, (what, response.status_code, response.text[:300])
    body = response.json()
    assert set(body["error"]) >= {"code", "message"}, (what, body)
    assert body["error"]["message"], what


def _seed() -> tuple[int, str]:
    owner = factories.customer(external_id="cus_bad_1")
    factories.subscription(owner)
    server = factories.server(owner, status="cloud_init", ipv4="127.0.0.1")
    issue_token(server, 600)
    server.save()
    return server.id, owner.external_id


def test_random_and_oversized_bodies_on_every_endpoint_change_nothing(
    web: httpx.Client, db: peewee.Database, redis_client: redis.Redis
) -> None:
    server_id, customer = _seed()
    before = state(redis_client)
    rng = random.Random(SEED)
    sent = 0
    statuses: set[int] = set()
    for body in _bodies(rng):
        for template in PATHS_POST:
            path = template.format(server=server_id)
            variants: list[dict[str, str]] = [{"content-type": "application/json"}]
            if path.startswith("/webhooks/"):
                # Signed: the body gets past the signature and reaches the parser.
                variants.append(_raw_signed(body))
            else:
                variants.append({"Authorization": "Bearer " + "x" * 43})
            for headers in variants:
                response = web.post(path, content=body, headers=headers)
                _assert_clear_error(response, f"POST {path} {body[:40]!r}")
                statuses.add(response.status_code)
                sent += 1
        for template in PATHS_GET:
            path = template.format(server=server_id, customer=customer)
            response = web.request("GET", path, content=body, headers={"X-API-Key": API_KEY})
            # GETs ignore a body: they answer as usual, never with a server error.
            assert response.status_code < 500 or path == "/readyz", (path, response.text)
            sent += 1
    assert sent > 250
    # Signed bodies got past the signature to the parser (400), oversized ones hit 413.
    assert {400, 401, 413} <= statuses, statuses
    assert state(redis_client) == before


@pytest.mark.parametrize(
    "path",
    [
        "/api/servers/{hostile}",
        "/api/servers/{hostile}/events",
        "/api/customers/{hostile}/server",
        "/callbacks/cloud-init/{hostile}",
    ],
)
def test_hostile_path_parameters_are_4xx(
    web: httpx.Client, db: peewee.Database, redis_client: redis.Redis, path: str
) -> None:
    _seed()
    before = state(redis_client)
    for hostile in [
        "-1",
        "0",
        "99999999999999999999999",
        "1e3",
        "%00",
        "..%2F..%2Fetc%2Fpasswd",
        "' OR 1=1 --",
        "%F0%9F%92%A3",
        "x" * 2000,
    ]:
        method = "POST" if path.startswith("/callbacks") else "GET"
        response = web.request(
            method,
            path.format(hostile=hostile),
            json={"host_key": "x"},
            headers={"X-API-Key": API_KEY, "Authorization": "Bearer nope"},
            timeout=2,
        )
        _assert_clear_error(response, f"{method} {path} {hostile[:20]}")
    assert state(redis_client) == before


def test_callback_probes_cannot_tell_which_server_ids_exist(
    web: httpx.Client, db: peewee.Database, redis_client: redis.Redis
) -> None:
    server_id, _ = _seed()
    before = state(redis_client)
    host_key = generate_ssh_keypair().public_openssh
    body = {"host_key": host_key, "install": factories.install_report()}
    answers = {
        probe: web.post(
            f"/callbacks/cloud-init/{probe}", json=body, headers={"Authorization": "Bearer nope"}
        )
        for probe in (server_id, server_id + 1, 1, 2**31 - 1)
    }
    # The seeded id and ids nobody has: one status, one body, byte for byte.
    assert {(r.status_code, r.content) for r in answers.values()} == {
        (401, answers[server_id].content)
    }, {probe: (r.status_code, r.text) for probe, r in answers.items()}
    assert state(redis_client) == before


HOSTILE_HOST_KEYS: list[Any] = [
    "",
    " ",
    "ssh-ed25519",
    "ssh-ed25519 AAAA",
    "ssh-ed25519 !!!notbase64!!!",
    "ssh-ed25519 " + "A" * 5000,
    generate_ssh_keypair().public_openssh.replace("ssh-ed25519", "ssh-rsa"),
    "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 rsa@host",
    "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTY=",
    generate_ssh_keypair().public_openssh + "\nssh-ed25519 AAAA injected",
    "\x00ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI",
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\x00",
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIP\u202e",
    "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----",
    None,
    42,
    ["ssh-ed25519", "AAAA"],
    {"$ne": None},
]


def test_hostile_host_keys_are_refused_and_leave_the_token_usable(
    web: httpx.Client, db: peewee.Database, redis_client: redis.Redis
) -> None:
    server = factories.server(status="cloud_init", ipv4="127.0.0.1")
    token = issue_token(server, 600)
    server.save()
    before = state(redis_client)
    auth = {"Authorization": f"Bearer {token}"}
    url = f"/callbacks/cloud-init/{server.id}"
    for host_key in HOSTILE_HOST_KEYS:
        body = {"host_key": host_key, "install": factories.install_report()}
        response = web.post(url, json=body, headers=auth)
        _assert_clear_error(response, f"host_key {str(host_key)[:30]!r}")
        assert response.status_code in (400, 413, 422), response.text
    for extra in ({"host_key": HOSTILE_HOST_KEYS[3], "status": "ready"}, {}, {"hostkey": "x"}):
        _assert_clear_error(web.post(url, json=extra, headers=auth), f"body {extra}")
    assert state(redis_client) == before, "a refused callback changed something"
    # The token was not consumed by any of them: the genuine callback still works.
    genuine = generate_ssh_keypair("host").public_openssh
    ok = web.post(
        url, json={"host_key": genuine, "install": factories.install_report()}, headers=auth
    )
    assert ok.status_code == 200, ok.text
    assert state(redis_client) != before


def test_snapshot_notices_a_change(db: peewee.Database, redis_client: redis.Redis) -> None:
    """The comparison the tests above rely on can fail."""
    _seed()
    before: State = state(redis_client)
    redis_client.set("x", "1")
    assert state(redis_client) != before
    redis_client.delete("x")
    assert state(redis_client) == before
    factories.customer()
    assert state(redis_client) != before

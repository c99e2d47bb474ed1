"""POST /callbacks/cloud-init/{id}: the one-time token, and every way it can be wrong."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, timedelta
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
from tests.webhook.conftest import BOT_TOKEN, Served

HOST_KEY = generate_ssh_keypair("host").public_openssh


@pytest.fixture
def web(app: Litestar) -> Iterator[httpx.Client]:
    """The served app: callbacks are bound to the client's address (127.0.0.1 here)."""
    with Served(app) as base, httpx.Client(base_url=base, timeout=10) as client:
        yield client


COMMIT = "63f162e9302a66344772ab23653789f701c7bcf9"
OLDER = "4303627f1cb709be417de6bc7da447987bba8dbc"


_install = factories.install_report


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
        f"/callbacks/cloud-init/{server_id}",
        json={"host_key": host_key, "install": _install()},
        headers=headers,
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


def test_unknown_server_and_bad_token_answer_alike(web: httpx.Client) -> None:
    # Otherwise the route tells a prober which server ids exist (404 versus 401).
    server, token = _waiting()
    before = _snapshot(server.id)
    unknown = _call(web, 999_999_999, token)
    bad_token = _call(web, server.id, "not-the-token")
    assert unknown.status_code == bad_token.status_code == 401
    assert unknown.content == bad_token.content
    assert unknown.json()["error"]["code"] == "unauthorized"
    assert unknown.headers["www-authenticate"] == bad_token.headers["www-authenticate"]
    assert unknown.headers["content-type"] == bad_token.headers["content-type"]
    assert _snapshot(server.id) == before


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
        json={"host_key": HOST_KEY, "install": _install(), "extra": 1},
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


# --- the install outcome -------------------------------------------------------


def _report(
    web: httpx.Client, server_id: int, token: str, install: Any, **extra: Any
) -> httpx.Response:
    return web.post(
        f"/callbacks/cloud-init/{server_id}",
        json={"host_key": HOST_KEY, "install": install, **extra},
        headers={"Authorization": f"Bearer {token}"},
    )


def _with_commit(commit: str = COMMIT) -> tuple[Server, str]:
    server, token = _waiting()
    Server.update(rachel8_commit=commit, deadline_at=utcnow() + timedelta(minutes=10)).where(
        Server.id == server.id
    ).execute()
    return server, token


def _events(server_id: int) -> list[str]:
    query = Event.select().where(Event.server == server_id).order_by(Event.id)
    return [e.message for e in query]


def test_a_good_install_at_the_servers_commit_goes_on_to_injection(
    web: httpx.Client, redis_client: redis.Redis
) -> None:
    server, token = _with_commit()
    response = _report(web, server.id, token, _install())
    assert response.status_code == 200, response.text
    assert response.json() == {"server_id": server.id, "status": "injecting_secrets"}
    fresh = Server.get_by_id(server.id)
    assert (fresh.status, fresh.rachel8_commit) == ("injecting_secrets", COMMIT)
    assert Queue(FINISH, connection=redis_client).job_ids == [fresh.job_id]
    assert f"Rachel8 {COMMIT}, Bun 1.4.5, Claude Code 2.1.332 installed" in _events(server.id)[-1]


def test_a_failed_step_fails_the_server_at_once_and_queues_its_cleanup(
    web: httpx.Client, redis_client: redis.Redis
) -> None:
    server, token = _with_commit()
    tail = (
        "Cloning into '/home/rachel/rachel8'...\n"
        + "x" * 3000
        + (f"\nremote: leaked {BOT_TOKEN}\nfatal: repository not found\n")
    )
    install = _install(
        ok=False,
        failed_step="clone",
        exit_status=128,
        log_tail=tail[-2000:],
        commit=None,
        cloud_init={"status": "running", "errors": ["write_files: permission denied"]},
    )
    response = _report(web, server.id, token, install)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["status"] == "failed"
    assert answer["reason"].startswith("install failed at step 'clone' (exit 128)")
    fresh = Server.get_by_id(server.id)
    assert (fresh.status, fresh.failed_phase) == ("failed", "cloud_init")
    assert fresh.last_error == answer["reason"]
    assert "cloud-init running: write_files: permission denied" in fresh.last_error
    assert fresh.last_error.endswith("fatal: repository not found")  # the end is kept
    assert "\n" not in fresh.last_error and len(fresh.last_error) <= 1500
    assert BOT_TOKEN not in fresh.last_error and BOT_TOKEN not in response.text
    assert fresh.deadline_at is None  # the boot deadline has nothing left to check
    assert fresh.host_key is None  # nothing to inject into: not pinned
    assert _events(server.id)[-1] == f"cloud_init failed: {fresh.last_error}"
    assert Queue(FINISH, connection=redis_client).job_ids == [
        f"srv{server.id}-cleanup-a{fresh.attempt}-e"
        f"{int(fresh.status_changed_at.replace(tzinfo=UTC).timestamp() * 1000)}-r0"
    ]
    # The token is spent: the VPS's next retry (there should be none) changes nothing.
    before = _snapshot(server.id)
    _rejected(web, server, _report(web, server.id, token, install), 401, "unauthorized", before)


def test_a_report_of_no_step_at_all_fails_the_server(web: httpx.Client) -> None:
    server, token = _with_commit()
    install = _install(ok=False, commit=None, log_tail="the install left no readable outcome")
    response = _report(web, server.id, token, install)
    assert response.json()["reason"] == (
        "install failed before any step ran: the install left no readable outcome"
    )


def test_another_commit_than_the_servers_fails_it(
    web: httpx.Client, redis_client: redis.Redis
) -> None:
    server, token = _with_commit()
    response = _report(web, server.id, token, _install(commit=OLDER))
    assert response.status_code == 200, response.text
    reason = f"install checked out Rachel8 commit {OLDER}, expected {COMMIT}"
    assert response.json() == {"server_id": server.id, "status": "failed", "reason": reason}
    fresh = Server.get_by_id(server.id)
    assert (fresh.status, fresh.last_error, fresh.rachel8_commit) == ("failed", reason, COMMIT)
    assert [j for j in Queue(FINISH, connection=redis_client).job_ids if "-cleanup-" in j]


@pytest.mark.parametrize(
    "install",
    [
        _install(failed_step="compile"),  # not a step
        _install(ok=True, failed_step="clone"),  # contradicts itself
        _install(commit="main"),
        _install(commit=COMMIT.upper()),
        _install(log_tail="x" * 2001),
        _install(cloud_init={"status": "done", "errors": ["e"] * 6}),
        _install(cloud_init={"status": "done", "errors": [], "extended_status": "x"}),
        _install(versions={"bun": "1.4.5", "node": "22"}),
        _install(surprise=True),
        {"ok": False},  # no cloud_init
        "ok",
    ],
)
def test_a_malformed_install_report_is_400_and_changes_nothing(
    web: httpx.Client, install: Any
) -> None:
    server, token = _with_commit()
    before = _snapshot(server.id)
    response = _report(web, server.id, token, install)
    _rejected(web, server, response, 400, "validation_error", before)
    assert _report(web, server.id, token, _install()).status_code == 200  # token not spent


def test_an_install_report_with_a_wrong_token_gets_the_same_answer(web: httpx.Client) -> None:
    server, _ = _with_commit()
    before = _snapshot(server.id)
    failed = _install(ok=False, failed_step="bun", exit_status=1)
    response = _report(web, server.id, "not-the-token", failed)
    _rejected(web, server, response, 401, "unauthorized", before)


def test_the_reported_steps_are_the_contracts() -> None:
    from typing import get_args

    from core.cloud.vps_contract import INSTALL_STEPS
    from webhook.structs import InstallStep

    assert get_args(InstallStep) == INSTALL_STEPS


def test_a_callback_without_an_install_report_is_400_and_changes_nothing(
    web: httpx.Client,
) -> None:
    """Every VPS reports its install; a body without one is not a callback of ours."""
    server, token = _with_commit()
    before = _snapshot(server.id)
    response = web.post(
        f"/callbacks/cloud-init/{server.id}",
        json={"host_key": HOST_KEY},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "validation_error"
    assert _snapshot(server.id) == before

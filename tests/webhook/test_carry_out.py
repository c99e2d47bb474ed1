"""Stored deploys carried out together (`core.domain.carry_out`).

A batch is written set-based, in rounds of one deploy per customer (a
customer's second deploy in the batch sees the first); a conflict with a
concurrent writer is settled one by one. Each test checks what the database
and the queues hold afterwards, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import peewee
import pytest
import redis
from rq import Queue

from core.domain import deploys
from core.domain.carry_out import carry_out
from core.domain.deliveries import StoredAnswer, body_digest
from core.domain.intake import Submission, admit
from core.store.models import Customer, Event, Server, Subscription, WebhookDelivery
from core.store.vault import reveal
from jobs.intake import carry_out_deploys
from jobs.queues import FINISH, START, record_jobs
from tests import factories
from tests.webhook.conftest import (
    BOT_TOKEN,
    CLAUDE,
    Intake,
    active,
    deploy_payload,
    sealed_order,
)
from webhook.context import WebContext


def _store(ctx: WebContext, *deploys: tuple[str, dict[str, Any]]) -> None:
    """Admit deploys (webhook id, payload) as the web app's writer would."""
    batch = []
    for webhook_id, payload in deploys:
        body = json.dumps(payload).encode()
        batch.append(
            Submission(
                webhook_id,
                body_digest(body),
                payload["customer_id"],
                sealed_order(payload),
                StoredAnswer(202, "{}"),
            )
        )
    verdicts = admit(batch, ctx.keyring)
    assert {v.verdict for v in verdicts} == {"accepted"}


def _outcomes() -> dict[str, tuple[Any, ...]]:
    return {
        d.webhook_id: (d.state, d.server_id, d.created_server, d.outcome_code, d.payload)
        for d in WebhookDelivery.select()
    }


def _conflicts(caplog: pytest.LogCaptureFixture) -> int:
    return sum("conflicted with a concurrent writer" in r.getMessage() for r in caplog.records)


def test_a_batch_creates_named_servers_records_jobs_and_outcomes(
    ctx: WebContext, intake: Intake, redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="core.domain.carry_out")
    for i in range(4):
        active(f"cus_b{i}")
    active("cus_gone")
    _store(
        ctx,
        *[
            (f"msg_{i}", deploy_payload(f"cus_b{i}", telegram_bot_token=factories.bot_token(i)))
            for i in range(4)
        ],
        ("msg_loc", deploy_payload("cus_gone", location="hel1")),
    )
    # Between admission and intake: one lapses, one loses their row altogether.
    Subscription.update(status="past_due").where(
        Subscription.customer == Customer.get(external_id="cus_b3").id
    ).execute()
    Customer.delete().where(Customer.external_id == "cus_gone").execute()

    assert carry_out_deploys() == 5
    assert _conflicts(caplog) == 0  # the common ones went the set-based way

    servers = {s.customer.external_id: s for s in Server.select()}
    assert sorted(servers) == ["cus_b0", "cus_b1", "cus_b2"]
    outcomes = _outcomes()
    for i in range(3):
        server = servers[f"cus_b{i}"]
        assert server.status == "pending"
        assert server.name == f"{ctx.settings.name_prefix}-{server.id}"
        assert (server.location, server.image) == (ctx.settings.location, ctx.settings.image)
        assert outcomes[f"msg_{i}"] == ("done", server.id, True, None, None)
        assert server.job_id in Queue(START, connection=redis_client).job_ids
        (event,) = Event.select().where(Event.server == server)
        assert (event.to_status, event.actor) == ("pending", "webhook")
        assert event.message.startswith("deploy accepted")
        owner = Customer.get_by_id(server.customer_id)
        assert reveal(ctx.keyring, owner, "telegram_bot_token") == factories.bot_token(i)
        assert reveal(ctx.keyring, owner, "claude_credentials") == CLAUDE
        assert owner.email == f"cus_b{i}@example.com"
    assert outcomes["msg_3"] == ("refused", None, None, "subscription_inactive", None)
    # The lapsed customer's credentials were still stored, as a one-by-one deploy does.
    lapsed = Customer.get(external_id="cus_b3")
    assert reveal(ctx.keyring, lapsed, "telegram_bot_token") == factories.bot_token(3)
    # The customer without a row is known now, but has no subscription.
    assert outcomes["msg_loc"] == ("refused", None, None, "subscription_required", None)
    assert Customer.get(external_id="cus_gone").email == "cus_gone@example.com"


def test_a_customers_second_deploy_in_a_batch_sees_the_first(
    ctx: WebContext, intake: Intake
) -> None:
    active("cus_twice")
    _store(
        ctx,
        ("msg_first", deploy_payload("cus_twice", telegram_bot_token=factories.bot_token(1))),
        ("msg_second", deploy_payload("cus_twice", telegram_bot_token=factories.bot_token(2))),
    )
    assert carry_out_deploys() == 2
    (server,) = Server.select()
    outcomes = _outcomes()
    assert outcomes["msg_first"] == ("done", server.id, True, None, None)
    assert outcomes["msg_second"] == ("done", server.id, False, None, None)
    owner = Customer.get(external_id="cus_twice")
    assert reveal(ctx.keyring, owner, "telegram_bot_token") == factories.bot_token(2)  # in order


def test_new_credentials_for_a_ready_server_are_re_injected(
    ctx: WebContext, intake: Intake, redis_client: redis.Redis
) -> None:
    same = factories.paying_customer(ctx.keyring, external_id="cus_same")
    changed = factories.paying_customer(ctx.keyring, external_id="cus_changed")
    kept = {
        "telegram_bot_token": reveal(ctx.keyring, same, "telegram_bot_token"),
        "claude_credentials": reveal(ctx.keyring, same, "claude_credentials"),
        "claude_oauth": None,
    }
    ready = {c.id: factories.server(c, status="ready") for c in (same, changed)}
    _store(
        ctx,
        ("msg_same", deploy_payload("cus_same", **kept)),
        ("msg_changed", deploy_payload("cus_changed", telegram_bot_token=BOT_TOKEN)),
    )
    assert carry_out_deploys() == 2
    assert Server.select().count() == 2  # no new server for either
    assert Server.get_by_id(ready[same.id].id).status == "ready"
    assert Server.get_by_id(ready[changed.id].id).status == "injecting_secrets"
    finish = Queue(FINISH, connection=redis_client).job_ids
    assert len(finish) == 1 and finish[0].startswith(f"srv{ready[changed.id].id}-")
    outcomes = _outcomes()
    assert outcomes["msg_same"] == ("done", ready[same.id].id, False, None, None)
    assert outcomes["msg_changed"] == ("done", ready[changed.id].id, False, None, None)


@pytest.mark.parametrize(
    "changes",
    [
        {"owner_telegram_user_id": 987654321},
        {"speech_to_text": {"provider": "groq", "api_key": "gsk_planted-0123456789"}},
    ],
    ids=["owner id", "speech-to-text"],
)
def test_a_new_owner_or_speech_to_text_for_a_ready_server_is_re_injected(
    ctx: WebContext, intake: Intake, redis_client: redis.Redis, changes: dict[str, Any]
) -> None:
    owner = factories.paying_customer(ctx.keyring, external_id="cus_owner")
    server = factories.server(owner, status="ready")
    kept = {
        "telegram_bot_token": reveal(ctx.keyring, owner, "telegram_bot_token"),
        "claude_credentials": reveal(ctx.keyring, owner, "claude_credentials"),
        "claude_oauth": None,
    }
    _store(ctx, ("msg_owner", deploy_payload("cus_owner", **kept, **changes)))
    assert carry_out_deploys() == 1
    assert Server.get_by_id(server.id).status == "injecting_secrets"
    stored = Customer.get_by_id(owner.id)
    if "owner_telegram_user_id" in changes:
        assert stored.owner_telegram_user_id == 987654321
    else:
        assert stored.stt_provider == "groq"
        assert reveal(ctx.keyring, stored, "stt_api_key") == "gsk_planted-0123456789"


def test_a_deploy_stored_by_the_release_before_keeps_the_owner_id(
    ctx: WebContext, intake: Intake
) -> None:
    owner = factories.paying_customer(ctx.keyring, external_id="cus_upgrade")
    # The raw request as the previous release sealed it: no owner id, no STT.
    old = json.dumps(
        {
            "customer_id": "cus_upgrade",
            "email": "cus_upgrade@example.com",
            "telegram_bot_token": BOT_TOKEN,
            "claude_credentials": CLAUDE,
        }
    ).encode()
    admit(
        [Submission("msg_old", body_digest(old), "cus_upgrade", old, StoredAnswer(202, "{}"))],
        ctx.keyring,
    )
    assert carry_out_deploys() == 1
    assert _outcomes()["msg_old"][0] == "done"
    stored = Customer.get_by_id(owner.id)
    assert stored.owner_telegram_user_id == factories.OWNER_ID
    assert reveal(ctx.keyring, stored, "telegram_bot_token") == BOT_TOKEN


def test_a_conflict_with_a_concurrent_writer_is_settled_one_by_one(
    ctx: WebContext,
    intake: Intake,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="core.domain.carry_out")
    racer = active("cus_raced")
    active("cus_calm")
    _store(
        ctx, ("msg_raced", deploy_payload("cus_raced")), ("msg_calm", deploy_payload("cus_calm"))
    )
    # Another process creates cus_raced's server after the batch read the live servers:
    # the read misses it, the insert meets the one-live-server index. The next
    # read (each deploy alone) sees it.
    theirs = factories.server(racer, status="creating")
    reads: list[list[int]] = []
    real = deploys.live_servers

    def stale_once(customer_ids: list[int]) -> dict[int, tuple[int, str]]:
        reads.append(customer_ids)
        return {} if len(reads) == 1 else real(customer_ids)

    monkeypatch.setattr(deploys, "live_servers", stale_once)

    assert carry_out_deploys() == 2

    assert _conflicts(caplog) == 1
    outcomes = _outcomes()
    assert outcomes["msg_raced"] == ("done", theirs.id, False, None, None)
    calm = Server.get(Server.customer == Customer.get(external_id="cus_calm").id)
    assert outcomes["msg_calm"] == ("done", calm.id, True, None, None)
    assert Server.select().count() == 2
    # The rolled-back batch left nothing behind: one event, for the calm server.
    assert [e.server_id for e in Event.select()] == [calm.id]


def _statements(db: peewee.Database, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The SQL statements the database runs from now on (savepoints left out)."""
    seen: list[str] = []
    run = db.execute_sql

    def counting(sql: str, params: Any = None, *args: Any, **kwargs: Any) -> Any:
        if not sql.lstrip().upper().startswith(("SAVEPOINT", "RELEASE", "ROLLBACK TO")):
            seen.append(sql)
        return run(sql, params, *args, **kwargs)

    monkeypatch.setattr(db, "execute_sql", counting)
    return seen


@pytest.mark.parametrize("size", [1, 12])
def test_a_batch_takes_the_same_statements_whatever_its_size(
    ctx: WebContext, db: peewee.Database, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    for i in range(size):
        active(f"cus_n{i}")
    _store(ctx, *[(f"msg_n{i}", deploy_payload(f"cus_n{i}")) for i in range(size)])
    claimed = list(WebhookDelivery.select().order_by(WebhookDelivery.webhook_id))
    statements = _statements(db, monkeypatch)
    with db.atomic():
        outcomes = carry_out(claimed, ctx.keyring, ctx.settings)
    assert [o.state for o in outcomes] == ["done"] * size
    # Customers and subscriptions, customers' credentials, live servers, new
    # servers, their names, their events, the deliveries' outcomes.
    assert len(statements) == 7, statements


def test_recording_a_batch_s_job_ids_keeps_a_newer_one(ctx: WebContext) -> None:
    owner = active("cus_jobs")
    fresh = factories.server(owner)
    retried = factories.server(active("cus_retried"), job_id="srv-creating-r1")  # its retry queued
    record_jobs([(fresh.id, "srv-creating-r0"), (retried.id, "srv-creating-r0-old")])
    assert Server.get_by_id(fresh.id).job_id == "srv-creating-r0"
    assert Server.get_by_id(retried.id).job_id == "srv-creating-r1"

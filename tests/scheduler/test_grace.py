"""The grace enforcer with a controllable clock, a real database, Redis and RQ workers,
and a real HTTP server on loopback standing in for the Telegram Bot API."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import peewee
import pytest
import redis
from rq import SimpleWorker

from core.platform.clock import ManualClock
from core.platform.runs import read_runs
from core.security.crypto import KeyRing, generate_key_entry
from core.store.models import Customer, Event, Server, Subscription
from jobs import grace
from jobs.context import JobContext, use_context
from jobs.queues import WORKER_QUEUES, queue
from tests import factories
from tests.conftest import make_settings

T0 = datetime(2026, 3, 1, 12, 0, 0)
HOUR = 3600.0
DAY = 24 * HOUR


class TelegramStandIn:
    """A loopback HTTP server answering the Bot API's sendMessage, recording requests."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.requests: list[tuple[str, dict[str, Any]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                outer.requests.append((self.path, json.loads(self.rfile.read(length))))
                body = json.dumps(
                    {"ok": outer.status == 200, "description": "chat not found"}
                ).encode()
                self.send_response(outer.status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def telegram() -> Iterator[TelegramStandIn]:
    stand_in = TelegramStandIn()
    yield stand_in
    stand_in.close()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


def make_ctx(
    tmp_path: Path, redis_client: redis.Redis, clock: ManualClock, api_url: str, **env: str
) -> JobContext:
    entry = generate_key_entry()
    settings = make_settings(
        tmp_path,
        RACHEL_MASTER_KEYS=entry,
        RACHEL_NOTIFICATIONS=env.pop("RACHEL_NOTIFICATIONS", "telegram"),
        RACHEL_TELEGRAM_API_URL=api_url,
        RACHEL_GRACE_PERIOD="3d",
        RACHEL_GRACE_WARNING="1d",
        **env,
    )
    ctx = JobContext(settings=settings, keyring=KeyRing([entry]), redis=redis_client, clock=clock)
    use_context(ctx)
    return ctx


@pytest.fixture
def ctx(
    db: peewee.Database,
    tmp_path: Path,
    redis_client: redis.Redis,
    clock: ManualClock,
    telegram: TelegramStandIn,
) -> Iterator[JobContext]:
    yield make_ctx(tmp_path, redis_client, clock, telegram.url)
    use_context(None)


def lapsed_customer(ctx: JobContext, *, chat_id: str | None = "4242") -> tuple[Customer, Server]:
    owner = factories.paying_customer(ctx.keyring)
    owner.telegram_chat_id = chat_id
    owner.save()
    Subscription.update(status="past_due", lapsed_at=T0, grace_until=T0 + timedelta(days=3)).where(
        Subscription.customer == owner
    ).execute()
    server = factories.server(owner, status="ready", name=f"test-{owner.id}")
    return owner, server


def kinds(server: Server) -> list[str]:
    return [e.kind for e in Event.select().where(Event.server == server.id).order_by(Event.id)]


def drain(ctx: JobContext) -> None:
    worker = SimpleWorker([queue(ctx.redis, n) for n in WORKER_QUEUES], connection=ctx.redis)
    worker.work(burst=True, with_scheduler=True, logging_level="ERROR")


def test_lapse_warning_then_deprovision_at_the_deadline(
    ctx: JobContext, clock: ManualClock, telegram: TelegramStandIn
) -> None:
    owner, server = lapsed_customer(ctx)
    other, healthy = factories.paying_customer(ctx.keyring), None
    healthy = factories.server(other, status="ready", name="test-healthy")

    clock.advance(HOUR)
    summary = grace.run(ctx)
    assert summary.acted == {"schedule": 1}
    assert kinds(server) == ["grace-scheduled"]
    grace.run(ctx)  # idempotent
    assert kinds(server) == ["grace-scheduled"] and telegram.requests == []

    clock.set(T0 + timedelta(days=2, hours=1))  # 23 h before the deadline
    summary = grace.run(ctx)
    assert summary.acted == {"warn": 1}
    assert len(telegram.requests) == 1
    path, body = telegram.requests[0]
    assert path == f"/bot{factories.bot_token(f'{owner.id:06d}')}/sendMessage"
    assert body["chat_id"] == "4242" and "will be deleted on 2026-03-04" in body["text"]
    assert Subscription.get(Subscription.customer == owner).warned_at == clock.now()
    grace.run(ctx)
    assert len(telegram.requests) == 1, "warned once"

    clock.set(T0 + timedelta(days=3) - timedelta(minutes=1))
    grace.run(ctx)
    assert Server.get_by_id(server.id).status == "ready"

    clock.set(T0 + timedelta(days=3))
    summary = grace.run(ctx)
    assert summary.acted == {"deprovision": 1}
    row = Server.get_by_id(server.id)
    assert row.status == "deprovisioning"
    why = Event.get((Event.server == server.id) & (Event.to_status == "deprovisioning"))
    assert why.actor == "cron" and "grace period ended" in why.message
    # A second run, and a second scheduler's run, deprovision nothing more.
    assert grace.run(ctx).acted == {}
    assert grace.enforce_grace().startswith("grace: found 0")
    assert Event.select().where(Event.to_status == "deprovisioning").count() == 1
    drain(ctx)
    assert Server.get_by_id(server.id).status == "deleted"
    assert Server.get_by_id(healthy.id).status == "ready"
    assert kinds(healthy) == []
    stats = read_runs(ctx.redis)["grace"]
    assert int(stats["runs"]) == 1  # only enforce_grace() goes through the recorded task run
    assert stats["last_summary"].startswith("grace: found 0")


def test_reactivation_within_grace_cancels(
    ctx: JobContext, clock: ManualClock, telegram: TelegramStandIn
) -> None:
    owner, server = lapsed_customer(ctx)
    clock.set(T0 + timedelta(days=2, hours=1))
    grace.run(ctx)  # the first run already falls in the warning window
    assert kinds(server) == ["grace-warning"]
    # What core.domain.subscriptions does on reactivation: clear the lapse.
    Subscription.update(status="active", lapsed_at=None, grace_until=None, warned_at=None).where(
        Subscription.customer == owner
    ).execute()
    summary = grace.run(ctx)
    assert summary.acted == {"cancel": 1}
    assert kinds(server)[-1] == "grace-cancelled"
    clock.set(T0 + timedelta(days=10))
    assert grace.run(ctx).acted == {}
    assert Server.get_by_id(server.id).status == "ready"
    assert kinds(server)[-1] == "grace-cancelled"


def test_an_in_flight_server_is_stopped_and_deprovisioned(
    ctx: JobContext, clock: ManualClock
) -> None:
    _, server = lapsed_customer(ctx)
    Server.update(status="creating").where(Server.id == server.id).execute()
    clock.set(T0 + timedelta(days=4))
    assert grace.run(ctx).acted == {"deprovision": 1}
    assert Server.get_by_id(server.id).status == "deprovisioning"


@pytest.mark.parametrize("failure", ["500", "unreachable", "no chat id", "off"])
def test_notification_failures_are_logged_never_fatal(
    db: peewee.Database,
    tmp_path: Path,
    redis_client: redis.Redis,
    clock: ManualClock,
    failure: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    stand_in = TelegramStandIn(status=500)
    url = "http://127.0.0.1:9" if failure == "unreachable" else stand_in.url
    env = {"RACHEL_NOTIFICATIONS": "off"} if failure == "off" else {}
    try:
        ctx = make_ctx(tmp_path, redis_client, clock, url, **env)
        owner, server = lapsed_customer(ctx, chat_id=None if failure == "no chat id" else "1")
        clock.set(T0 + timedelta(days=2, hours=12))
        summary = grace.run(ctx)
        assert summary.acted == {"warn": 1}
        assert summary.errors == 0
        warning = Event.get((Event.server == server.id) & (Event.kind == "grace-warning"))
        expected = {
            "500": "Telegram answered 500 (chat not found)",
            "unreachable": "Telegram unreachable (ConnectError)",
            "no chat id": "no Telegram chat id known",
            "off": "notifications are off",
        }[failure]
        assert expected in warning.message
        assert len(stand_in.requests) == (1 if failure == "500" else 0)
        token = f"planted-bot-token-{owner.id:06d}"
        assert token not in caplog.text and token not in warning.message
        clock.set(T0 + timedelta(days=3, minutes=1))
        assert grace.run(ctx).acted == {"deprovision": 1}
    finally:
        stand_in.close()
        use_context(None)

"""Telling owners (through the simulated Telegram) and operators (a loopback webhook):
once per cooldown, "back" only after "down", nothing during a herd, failures recorded."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import peewee
import pytest
import redis

from core.domain.health import Problem
from core.domain.health_metrics import NOTIFICATIONS_KEY
from core.domain.herd import HerdStore, pause_repair
from core.domain.notify import OWNER_BACK_TEXT, owner_down_text
from core.platform.clock import ManualClock
from core.security.crypto import KeyRing, generate_key_entry
from core.store.models import Event, Server
from jobs import notifying
from jobs.context import JobContext, use_context
from sim.server import SimulatorServer
from tests import factories
from tests.conftest import make_settings
from tests.scheduler.test_health import T0
from tests.stand_ins import Receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.close()


def make_ctx(
    tmp_path: Path, redis_client: redis.Redis, sim: SimulatorServer, receiver: Receiver, **env: str
) -> JobContext:
    entry = generate_key_entry()
    settings = make_settings(
        tmp_path,
        RACHEL_MASTER_KEYS=entry,
        RACHEL_TELEGRAM_API_URL=f"{sim.url}/telegram",
        RACHEL_OPERATOR_WEBHOOK_URL=receiver.url,
        RACHEL_REPAIR_COOLDOWN="30m",
        **env,
    )
    ctx = JobContext(
        settings=settings, keyring=KeyRing([entry]), redis=redis_client, clock=ManualClock(T0)
    )
    use_context(ctx)
    return ctx


@pytest.fixture
def ctx(
    db: peewee.Database,
    tmp_path: Path,
    redis_client: redis.Redis,
    sim: SimulatorServer,
    receiver: Receiver,
) -> Iterator[JobContext]:
    yield make_ctx(tmp_path, redis_client, sim, receiver)
    use_context(None)


def down_server(ctx: JobContext, **fields: Any) -> Server:
    owner = factories.paying_customer(ctx.keyring)
    values: dict[str, Any] = {
        "status": "ready",
        "name": f"test-{owner.id}",
        "health": "unhealthy",
        "health_reason": "Rachel8 is not running",
    }
    return factories.server(owner, **{**values, **fields})


def sent(sim: SimulatorServer) -> list[str]:
    response = httpx.get(
        f"{sim.url}/_sim/telegram/messages",
        params={"chat_id": str(factories.OWNER_ID)},
        headers={"Authorization": f"Bearer {sim.token}"},
        timeout=5,
    )
    return [m["text"] for m in response.json()["messages"]]


def told(server: Server) -> list[str]:
    query = Event.select().where((Event.server == server.id) & (Event.kind == "notify"))
    return [e.message for e in query.order_by(Event.id)]


def counts(client: redis.Redis) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in client.hgetall(NOTIFICATIONS_KEY).items()}


def test_down_once_per_cooldown_and_back_only_after_down(
    ctx: JobContext, sim: SimulatorServer
) -> None:
    server = down_server(ctx)
    assert notifying.tell_owner(server.id, "back", "none").startswith("skipped: not told down")
    assert notifying.tell_owner(server.id, "down", "service_down") == (
        "sent through the customer's Telegram bot"
    )
    assert Server.get_by_id(server.id).owner_notified_down_at == T0
    assert notifying.tell_owner(server.id, "down", "service_down") == "skipped: already told"
    Server.update(health="healthy").where(Server.id == server.id).execute()
    notifying.tell_owner(server.id, "back", "none")
    assert Server.get_by_id(server.id).owner_notified_down_at is None
    # Down again within the cooldown: not told again (nor "back" after it).
    Server.update(health="unhealthy").where(Server.id == server.id).execute()
    assert notifying.tell_owner(server.id, "down", "service_down") == (
        "skipped: told within the cooldown"
    )
    assert Server.get_by_id(server.id).owner_notified_down_at is None
    assert sent(sim) == [owner_down_text(Problem.SERVICE_DOWN), OWNER_BACK_TEXT]
    assert told(server) == [
        "told the owner: their assistant is down (service_down): "
        "sent through the customer's Telegram bot",
        "told the owner: their assistant is back: sent through the customer's Telegram bot",
    ]
    assert counts(ctx.redis) == {"owner|sent": 2, "owner|skipped": 1}


def test_nothing_is_told_during_a_herd_or_after_recovery(
    ctx: JobContext, sim: SimulatorServer
) -> None:
    server = down_server(ctx)
    HerdStore(ctx.redis).trip(T0, "3 of 9")
    assert notifying.tell_owner(server.id, "down", "unreachable") == "skipped: the herd guard holds"
    HerdStore(ctx.redis).clear()
    Server.update(health="degraded").where(Server.id == server.id).execute()
    assert notifying.tell_owner(server.id, "down", "unreachable") == "skipped: no longer unhealthy"
    gone = down_server(ctx, status="deprovisioning")
    assert notifying.tell_owner(gone.id, "down", "unreachable") == "skipped: not ready"
    assert sent(sim) == [] and told(server) == []


def test_a_message_telegram_refuses_is_recorded_and_not_claimed(
    ctx: JobContext, sim: SimulatorServer
) -> None:
    server = down_server(ctx)
    token = factories.bot_token(f"{server.customer_id:06d}")
    httpx.post(
        f"{sim.url}/_sim/telegram/revoke",
        json={"token": token},
        headers={"Authorization": f"Bearer {sim.token}"},
        timeout=5,
    ).raise_for_status()
    detail = notifying.tell_owner(server.id, "down", "token_revoked")
    assert detail == "Telegram answered 401 (Unauthorized)"
    assert Server.get_by_id(server.id).owner_notified_down_at is None, "no back for an unsent down"
    (event,) = told(server)
    assert event.startswith("could not tell the owner: their assistant is down (token_revoked)")
    assert token not in event
    assert counts(ctx.redis) == {"owner|failed": 1}


def test_notifications_off_are_recorded_as_off(
    db: peewee.Database,
    tmp_path: Path,
    redis_client: redis.Redis,
    sim: SimulatorServer,
    receiver: Receiver,
) -> None:
    ctx = make_ctx(tmp_path, redis_client, sim, receiver, RACHEL_NOTIFICATIONS="off")
    try:
        server = down_server(ctx)
        assert notifying.tell_owner(server.id, "down", "service_down") == ("notifications are off")
        assert sent(sim) == [] and counts(redis_client) == {"owner|off": 1}
    finally:
        use_context(None)


def test_operator_alerts_for_a_server_and_the_fleet(ctx: JobContext, receiver: Receiver) -> None:
    server = down_server(ctx)
    notifying.alert_operators(server.id, "circuit breaker open", "why", "next")
    notifying.alert_operators(None, "herd guard tripped", "3 of 9", "paused")
    assert [(b["server_id"], b["server_name"], b["what"]) for b in receiver.bodies] == [
        (server.id, server.name, "circuit breaker open"),
        (None, None, "herd guard tripped"),
    ]
    assert told(server) == [
        "operators alerted: circuit breaker open: why; next: next (sent to the operator webhook)"
    ]
    fleet = Event.get(Event.server.is_null() & (Event.kind == "notify"))
    assert fleet.message.startswith("operators alerted: herd guard tripped: 3 of 9")
    assert counts(ctx.redis) == {"operators|sent": 2}
    receiver.status = 503
    assert notifying.alert_operators(server.id, "x", "y", "z") == "operator webhook answered 503"
    assert counts(ctx.redis)["operators|failed"] == 1


def test_an_owner_is_promised_no_restart_that_will_not_run(
    ctx: JobContext, sim: SimulatorServer
) -> None:
    # Repair paused by an operator: the message says the assistant is down, and
    # that we are looking into it, not that it is being restarted.
    server = down_server(ctx)
    pause_repair(ctx.redis, "operator:test", "a bad release", clock=ctx.clock)
    notifying.tell_owner(server.id, "down", "service_down")
    assert sent(sim) == [owner_down_text(Problem.SERVICE_DOWN, repairing=False)]
    assert "restarting" not in sent(sim)[0]

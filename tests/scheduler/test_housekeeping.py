"""Webhook deliveries older than their retention are pruned; recent ones stay."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import peewee
import pytest
import redis

from core.platform.clock import ManualClock
from core.security.crypto import KeyRing, generate_key_entry
from core.store.models import Event, WebhookDelivery
from jobs.context import JobContext, use_context
from jobs.housekeeping import prune_deliveries
from tests.conftest import make_settings


@pytest.fixture
def clock(db: peewee.Database, tmp_path: Path, redis_client: redis.Redis) -> Iterator[ManualClock]:
    entry = generate_key_entry()
    clock = ManualClock()
    settings = make_settings(tmp_path, RACHEL_MASTER_KEYS=entry, RACHEL_DELIVERY_RETENTION="7d")
    use_context(
        JobContext(settings=settings, keyring=KeyRing([entry]), redis=redis_client, clock=clock)
    )
    yield clock
    use_context(None)


def delivery(webhook_id: str, received_at: object) -> None:
    WebhookDelivery.create(
        webhook_id=webhook_id,
        kind="deploy",
        received_at=received_at,
        body_sha256="0" * 64,
        response_status=202,
        response_body="{}",
    )


def test_old_deliveries_are_pruned_and_the_run_is_audited(clock: ManualClock) -> None:
    now = clock.now()
    delivery("msg_old", now - timedelta(days=8))
    delivery("msg_edge", now - timedelta(days=6, hours=23))
    delivery("msg_new", now - timedelta(minutes=1))
    line = prune_deliveries()
    assert "deliveries deleted 1" in line
    assert sorted(d.webhook_id for d in WebhookDelivery.select()) == ["msg_edge", "msg_new"]
    assert Event.select().where(Event.server.is_null() & (Event.kind == "cron")).count() == 1
    clock.advance(3601)  # msg_edge is now just past seven days
    prune_deliveries()
    assert sorted(d.webhook_id for d in WebhookDelivery.select()) == ["msg_new"]

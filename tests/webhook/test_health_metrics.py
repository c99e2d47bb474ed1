"""/healthz, /readyz and /metrics (fleet health included)."""

from __future__ import annotations

import time
from datetime import UTC, timedelta

import peewee
import redis
from litestar.testing import TestClient
from prometheus_client.parser import text_string_to_metric_families
from rq import Queue, SimpleWorker

from core.domain.health import HEALTH_STATES
from core.domain.health_metrics import (
    count_notification,
    count_probe,
    count_repair,
    observe_recoveries,
)
from core.domain.herd import HerdStore
from core.domain.metrics import WEBHOOK_RESULTS_KEY
from core.platform.clock import utcnow
from core.platform.settings import Settings
from core.store.db import database, init_database
from jobs.work import RQWork
from tests import factories
from tests.stand_ins import Agents, heartbeat
from tests.webhook.conftest import Http
from webhook.app import create_app
from webhook.context import WebContext


def test_healthz_and_readyz(tc: Http) -> None:
    assert tc.client.get("/healthz").json() == {"status": "ok"}
    response = tc.client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"database": "ok", "redis": "ok"}}


def test_readyz_is_503_without_redis(db: peewee.Database, web_settings: Settings) -> None:
    ctx = WebContext.build(web_settings, RQWork(), url="redis://127.0.0.1:1/0")
    with TestClient(create_app(ctx)) as client:
        response = client.get("/readyz")
        assert client.get("/healthz").status_code == 200
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "not_ready"
    assert "redis: unreachable" in response.json()["error"]["message"]


def test_readyz_is_503_without_the_database(
    db: peewee.Database, web_settings: Settings, redis_client: redis.Redis
) -> None:
    ctx = WebContext.build(web_settings, RQWork())
    init_database("postgresql://nobody@127.0.0.1:1/none")
    try:
        with TestClient(create_app(ctx)) as client:
            response = client.get("/readyz")
    finally:
        database.initialize(db)
    assert response.status_code == 503
    assert "database: unreachable" in response.json()["error"]["message"]


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_metrics_count_servers_durations_sla_webhooks_and_queues(tc: Http) -> None:
    for seconds in (50.0, 100.0, 200.0):
        factories.server(status="ready", provisioning_seconds=seconds)
    factories.server(status="failed")
    customer = factories.customer(external_id="cus_web_1")
    factories.subscription(customer)
    assert tc.deploy().status_code == 202
    assert tc.deploy(b"{}", secret="whsec_" + "A" * 43).status_code == 401
    response = tc.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    s = _samples(response.text)
    assert s[("rachel_cloud_servers", (("status", "ready"),))] == 3
    assert s[("rachel_cloud_servers", (("status", "failed"),))] == 1
    assert s[("rachel_cloud_servers", (("status", "pending"),))] == 0
    assert s[("rachel_cloud_intake_pending", ())] == 1  # stored, the intake job not run yet
    assert s[("rachel_cloud_servers", (("status", "deleted"),))] == 0
    assert s[("rachel_cloud_provisioning_seconds_bucket", (("le", "60.0"),))] == 1
    assert s[("rachel_cloud_provisioning_seconds_bucket", (("le", "120.0"),))] == 2
    assert s[("rachel_cloud_provisioning_seconds_bucket", (("le", "+Inf"),))] == 3
    assert s[("rachel_cloud_provisioning_seconds_count", ())] == 3
    assert s[("rachel_cloud_provisioning_seconds_sum", ())] == 350
    assert s[("rachel_cloud_sla_hits_total", ())] == 2
    assert s[("rachel_cloud_sla_misses_total", ())] == 1
    assert (
        s[("rachel_cloud_webhook_requests_total", (("endpoint", "deploy"), ("result", "accepted")))]
        == 1
    )
    assert (
        s[
            (
                "rachel_cloud_webhook_requests_total",
                (("endpoint", "deploy"), ("result", "unauthorized")),
            )
        ]
        == 1
    )
    assert s[("rachel_cloud_queue_depth", (("queue", "rc-start"),))] == 1
    assert s[("rachel_cloud_queue_depth", (("queue", "rc-finish"),))] == 0


def test_webhook_results_reach_redis_within_a_second_without_a_scrape(
    http: Http, redis_client: redis.Redis
) -> None:
    # What another process's /metrics reads: the counts this one added to Redis.
    assert http.deploy(b"{}", secret="whsec_" + "A" * 43).status_code == 401
    deadline = time.monotonic() + 5
    while not redis_client.hget(WEBHOOK_RESULTS_KEY, "deploy|unauthorized"):
        assert time.monotonic() < deadline, "the count never reached Redis"
        time.sleep(0.05)
    assert redis_client.hget(WEBHOOK_RESULTS_KEY, "deploy|unauthorized") == b"1"


def test_metrics_show_fleet_health_repairs_the_herd_guard_and_workers(
    tc: Http, redis_client: redis.Redis
) -> None:
    now = utcnow()
    agents = Agents(redis_client)
    fresh, stale = (
        factories.server(status="ready", health=h, ipv4=f"10.0.0.{i}")
        for i, h in ((1, "healthy"), (2, "unhealthy"))
    )
    factories.server(status="ready", health="degraded", breaker_until=now + timedelta(minutes=5))
    factories.server(status="ready", health="unhealthy", breaker_until=now - timedelta(minutes=5))
    never = factories.server(status="ready", health="unknown")
    factories.server(status="failed", health="unhealthy")  # not ready: not counted
    for server in (fresh, stale, never):
        agents.enroll(server)
    stamp = now.replace(tzinfo=UTC).timestamp()
    agents.beat(fresh.id, stamp - 5)
    agents.beat(stale.id, stamp - 400)
    agents.store.record(fresh.id, "wrong", "10.0.0.1", heartbeat(10**6), body=b"{}", now=stamp)
    count_repair(redis_client, "restart", "ok")
    count_repair(redis_client, "restart", "ok")
    count_repair(redis_client, "reset", "failed")
    count_probe(redis_client, "unreachable")
    count_notification(redis_client, "owner", "sent")
    observe_recoveries(redis_client, [45.0, 700.0])
    HerdStore(redis_client).trip(now, "3 of 9")
    live = SimpleWorker([Queue("rc-finish", connection=redis_client)], connection=redis_client)
    live.register_birth()  # type: ignore[no-untyped-call]

    s = _samples(tc.client.get("/metrics").text)
    by_state = {h: s[("rachel_cloud_servers_health", (("health", h),))] for h in HEALTH_STATES}
    assert by_state == {"healthy": 1, "degraded": 1, "unhealthy": 2, "unknown": 1}
    assert s[("rachel_cloud_breakers_open", ())] == 1
    assert s[("rachel_cloud_servers_without_heartbeat", ())] == 1
    assert 400 <= s[("rachel_cloud_heartbeat_lag_max_seconds", ())] < 460
    assert s[("rachel_cloud_heartbeat_lag_seconds_bucket", (("le", "15.0"),))] == 1
    assert s[("rachel_cloud_heartbeat_lag_seconds_bucket", (("le", "300.0"),))] == 1
    assert s[("rachel_cloud_heartbeat_lag_seconds_count", ())] == 2
    assert s[("rachel_cloud_heartbeats_total", (("result", "ok"),))] == 2
    assert s[("rachel_cloud_heartbeats_total", (("result", "denied"),))] == 1
    assert s[("rachel_cloud_repairs_total", (("action", "restart"), ("outcome", "ok")))] == 2
    assert s[("rachel_cloud_repairs_total", (("action", "reset"), ("outcome", "failed")))] == 1
    assert s[("rachel_cloud_probes_total", (("outcome", "unreachable"),))] == 1
    assert s[("rachel_cloud_notifications_total", (("outcome", "sent"), ("to", "owner")))] == 1
    assert s[("rachel_cloud_detection_to_repair_seconds_bucket", (("le", "60.0"),))] == 1
    assert s[("rachel_cloud_detection_to_repair_seconds_bucket", (("le", "+Inf"),))] == 2
    assert s[("rachel_cloud_detection_to_repair_seconds_sum", ())] == 745
    assert s[("rachel_cloud_herd_guard_tripped", ())] == 1
    assert s[("rachel_cloud_repair_paused", ())] == 0
    assert s[("rachel_cloud_workers", ())] == 1
    live.register_death()  # type: ignore[no-untyped-call]

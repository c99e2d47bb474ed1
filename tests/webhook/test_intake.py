"""The deploy intake under failure: no database, no Redis, a lost job, twins in a batch."""

from __future__ import annotations

import json
from datetime import timedelta

import peewee
import redis
from litestar.testing import TestClient

from core.domain.deliveries import StoredAnswer, body_digest, prune
from core.domain.intake import Submission, admit
from core.platform.clock import utcnow
from core.platform.settings import Settings
from core.store.db import connection, database, init_database
from core.store.models import Server, WebhookDelivery
from jobs import sweeper
from jobs.context import JobContext
from jobs.enqueue import INTAKE_FLAG
from jobs.intake import carry_out_deploys
from jobs.work import RQWork
from tests.webhook.conftest import Http, Intake, active, deploy_payload, signed_headers
from webhook.app import create_app
from webhook.context import WebContext


def _submission(webhook_id: str, customer_id: str = "cus_web_1") -> Submission:
    body = json.dumps(deploy_payload(customer_id)).encode()
    return Submission(webhook_id, body_digest(body), customer_id, body, StoredAnswer(202, "{}"))


def test_admit_settles_a_batch_in_one_go(ctx: WebContext) -> None:
    active()
    active("cus_web_2")
    admit([_submission("msg_old")], ctx.keyring)
    verdicts = admit(
        [
            _submission("msg_new"),
            _submission("msg_old"),  # stored before
            _submission("msg_new"),  # a twin later in the same batch
            _submission("msg_stranger", "cus_nobody"),
            _submission("msg_other", "cus_web_2"),
        ],
        ctx.keyring,
    )
    assert [v.verdict for v in verdicts] == ["accepted", "seen", "seen", "refused", "accepted"]
    refused = verdicts[3].refusal
    assert refused is not None and refused.code == "subscription_required"
    stored = {d.webhook_id: d.state for d in WebhookDelivery.select()}
    assert stored == {"msg_old": "accepted", "msg_new": "accepted", "msg_other": "accepted"}


def test_without_the_database_a_deploy_is_503_and_the_next_one_works(
    db: peewee.Database, web_settings: Settings, redis_client: redis.Redis
) -> None:
    active()
    ctx = WebContext.build(web_settings, RQWork())
    body = json.dumps(deploy_payload()).encode()
    with TestClient(create_app(ctx)) as client:
        init_database("postgresql://nobody@127.0.0.1:1/none")
        try:
            down = client.post("/webhooks/deploy", content=body, headers=signed_headers(body))
        finally:
            database.initialize(db)
        assert down.status_code == 503, down.text
        assert down.json()["error"]["code"] == "database_error"
        assert WebhookDelivery.select().count() == 0
        # The writer thread survived: the sender's retry is stored.
        again = client.post("/webhooks/deploy", content=body, headers=signed_headers(body))
        assert again.status_code == 202, again.text
    assert WebhookDelivery.select().count() == 1


def test_without_redis_the_deploy_is_kept_and_the_sweeper_queues_its_job(
    db: peewee.Database, web_settings: Settings, redis_client: redis.Redis
) -> None:
    active()
    ctx = WebContext.build(web_settings, RQWork(), url="redis://127.0.0.1:1/0")
    body = json.dumps(deploy_payload()).encode()
    with TestClient(create_app(ctx)) as client:
        response = client.post("/webhooks/deploy", content=body, headers=signed_headers(body))
    # Stored and durable: the answer does not depend on Redis.
    assert response.status_code == 202, response.text
    assert WebhookDelivery.get().state == "accepted"
    job_ctx = JobContext(settings=web_settings, keyring=ctx.keyring, redis=redis_client)
    with connection():
        summary = sweeper.run(job_ctx)
    assert summary.found["stalled intake"] == 0  # too young to call stalled
    WebhookDelivery.update(received_at=utcnow() - timedelta(minutes=2)).execute()
    redis_client.set(INTAKE_FLAG, "1")  # as if a job were queued, and then lost
    with connection():
        summary = sweeper.run(job_ctx)
    assert summary.found["stalled intake"] == 1 and summary.acted["intake"] == 1
    runner = Intake(ctx, redis_client)
    assert len(runner.queued()) == 1
    assert runner.run() == 1
    assert WebhookDelivery.get().state == "done"
    assert Server.select().count() == 1


def test_a_lost_intake_job_heals_when_its_flag_expires(
    tc: Http, intake: Intake, redis_client: redis.Redis
) -> None:
    active()
    active("cus_web_2")
    assert tc.deploy(webhook_id="msg_1").status_code == 202
    for jid in intake.queued():  # the job vanishes (Redis lost it, say)
        intake.queue.remove(jid)
    assert 0 < redis_client.ttl(INTAKE_FLAG) <= 30
    redis_client.delete(INTAKE_FLAG)  # ... and its flag expired
    assert tc.deploy(deploy_payload("cus_web_2"), webhook_id="msg_2").status_code == 202
    assert intake.run() == 2  # the new job carries out both, oldest first
    assert [d.state for d in WebhookDelivery.select()] == ["done", "done"]


def test_pruning_keeps_deploys_not_yet_carried_out(tc: Http, intake: Intake) -> None:
    active()
    assert tc.deploy(webhook_id="msg_waiting").status_code == 202
    WebhookDelivery.update(received_at=utcnow() - timedelta(days=30)).execute()
    with connection():
        assert prune(timedelta(days=7)) == 0
    assert intake.run() == 1
    with connection():
        assert prune(timedelta(days=7)) == 1


def test_an_intake_job_that_stops_at_its_limit_queues_the_next(
    tc: Http, intake: Intake, redis_client: redis.Redis
) -> None:
    for i in range(3):
        active(f"cus_lim_{i}")
        assert tc.deploy(deploy_payload(f"cus_lim_{i}")).status_code == 202
    for jid in intake.queued():
        intake.queue.remove(jid)
    assert carry_out_deploys(limit=2) == 2
    assert len(intake.queued()) == 1  # the rest is not left for the sweeper
    assert intake.run() == 1

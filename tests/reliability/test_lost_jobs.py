"""A job popped by a worker that died before RQ recorded it as started is found lost.

RQ pops with BLPOP when a worker serves several queues: a SIGKILL (or a Redis
restart eating the reply) between the pop and the started registry leaves a
job whose status says "queued" in no queue at all. The sweeper must treat it
as vanished and enqueue the step again, or the server waits forever.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import peewee
import redis
from rq import Queue

from core.platform.clock import utcnow
from core.security.crypto import KeyRing, generate_key_entry
from core.store.models import Event, Server
from jobs import sweeper
from jobs.context import JobContext
from jobs.enqueue import start_provisioning
from jobs.jobscan import live_jobs
from jobs.queues import START
from tests import factories
from tests.conftest import make_settings


def test_a_queued_job_in_no_queue_is_re_enqueued(
    db: peewee.Database, redis_client: redis.Redis, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, RACHEL_SWEEP_GRACE="1s")
    ctx = JobContext(settings, KeyRing([generate_key_entry()]), redis_client)
    long_ago = utcnow() - timedelta(minutes=5)
    server = factories.server(status="pending", status_changed_at=long_ago)
    jid = start_provisioning(redis_client, settings, server)
    assert server.id in live_jobs(redis_client)
    # A worker pops it and is SIGKILLed before it marks the job started.
    popped = redis_client.lpop(Queue(START, connection=redis_client).key)
    assert popped is not None and popped.decode() == jid
    assert redis_client.hget(f"rq:job:{jid}", "status") == b"queued"
    assert server.id not in live_jobs(redis_client), "a job in no queue is not live"
    summary = sweeper.run(ctx)
    assert summary.acted["requeued"] == 1
    fresh = Server.get_by_id(server.id)
    assert fresh.job_id != jid and fresh.job_id in Queue(START, connection=redis_client).job_ids
    assert Event.select().where((Event.server == server.id) & (Event.kind == "sweep")).exists()

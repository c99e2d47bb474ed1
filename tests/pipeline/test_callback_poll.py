"""The benchmarks' baseline (RACHEL_CALLBACK_DISPATCH=poll) still carries a deploy to ready.

In poll mode the callback pins the host key and moves the server on, but
queues nothing; the poller (a cron task in that mode) queues the injection.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import peewee
import pytest
import redis

from core.domain.lifecycle import Status
from core.store.models import Server
from jobs import callback_poll, enqueue, operator
from jobs.cron import tasks
from jobs.enqueue import injection_job_id
from jobs.queues import job_id
from sim.server import SimulatorServer
from tests import factories
from tests.conftest import make_settings
from tests.pipeline.harness import Stack, WebServer, served_stack


@pytest.fixture
def stack(
    db: peewee.Database,
    tmp_path: Path,
    redis_client: redis.Redis,
    redis_server_url: str,
    sim: SimulatorServer,
    web: WebServer,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Stack]:
    # The web app runs in this process: its callbacks read the dispatch mode here.
    monkeypatch.setattr(enqueue, "callback_dispatch", lambda: "poll")
    with served_stack(
        tmp_path,
        redis_client,
        redis_server_url,
        sim,
        web,
        RACHEL_BOOT_TIMEOUT="8s",
        RACHEL_CALLBACK_DISPATCH="poll",
    ) as built:
        yield built


def test_poll_mode_reaches_ready_through_the_poller(stack: Stack) -> None:
    owner = factories.paying_customer(stack.ring)
    outcome = operator.deploy(stack.redis, stack.settings, owner.external_id, "operator:test")
    server = stack.wait_status(outcome.server_id, Status.INJECTING_SECRETS)
    # The callback came and queued nothing: the server waits for the poller.
    assert server.host_key
    assert not callback_poll.has_injection_job(server)
    stack.drain(lambda: True)
    assert stack.status(server.id) == Status.INJECTING_SECRETS

    assert callback_poll.enqueue_called_back(stack.ctx) == 1
    assert callback_poll.enqueue_called_back(stack.ctx) == 0  # queued once
    ready = stack.wait_status(server.id, Status.READY)
    assert ready.provisioning_seconds is not None
    assert callback_poll.enqueue_called_back(stack.ctx) == 0


def test_the_poller_is_scheduled_only_in_poll_mode(tmp_path: Path) -> None:
    default = {t.name for t in tasks(make_settings(tmp_path))}
    polling = tasks(
        make_settings(tmp_path, RACHEL_CALLBACK_POLL_INTERVAL="5s", RACHEL_CALLBACK_DISPATCH="poll")
    )
    assert "callback-poll" not in default
    poll = next(t for t in polling if t.name == "callback-poll")
    assert poll.interval == 5


def test_only_an_injection_job_of_the_current_entry_counts(tmp_path: Path) -> None:
    assert make_settings(tmp_path).callback_dispatch == "enqueue"
    entered = datetime(2025, 1, 1, 12)
    row = Server(id=7, attempt=1, status=Status.INJECTING_SECRETS.value, status_changed_at=entered)
    assert not callback_poll.has_injection_job(row)
    for step, retry in (("injecting_secrets", 0), ("injecting_secrets", 3), ("finalize", 0)):
        row.job_id = job_id(7, step, 1, retry, entered)
        assert callback_poll.has_injection_job(row), row.job_id
    for other in (
        job_id(7, "creating", 1, 0, entered),
        job_id(7, "finalize", 1, 0, entered - timedelta(hours=1)),  # an earlier stay
        job_id(7, "injecting_secrets", 0, 0, entered),  # an earlier attempt
    ):
        row.job_id = other
        assert not callback_poll.has_injection_job(row), other


def test_the_callback_records_an_injection_id_only_when_it_queues_one(tmp_path: Path) -> None:
    entered = datetime(2025, 1, 1, 12)
    row = Server(id=7, attempt=2, status=Status.CLOUD_INIT.value)
    queued = injection_job_id(row, entered, settings=make_settings(tmp_path))
    assert queued == job_id(7, "injecting_secrets", 2, 0, entered)
    polling = make_settings(
        tmp_path, RACHEL_CALLBACK_POLL_INTERVAL="5s", RACHEL_CALLBACK_DISPATCH="poll"
    )
    # A recorded id would tell the poller that the injection is queued.
    assert injection_job_id(row, entered, settings=polling) is None

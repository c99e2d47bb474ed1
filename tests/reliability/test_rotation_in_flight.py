"""Key rotation while deploys are in flight loses nothing.

Deploys start under the old key; part-way (servers creating, waiting for
cloud-init, being injected, one whose worker died right after Hetzner created
its VPS) every process is restarted with the ring `old,new` and
`core.vault.rotate_all` re-seals everything. Every deploy still ends ready
with the customer's secrets on its VPS, and afterwards every ciphertext opens
with the new key alone.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import peewee
import pytest
import redis
from rq import Queue

from core.domain.lifecycle import Status
from core.security.crypto import KeyRing, generate_key_entry
from core.store.models import ENCRYPTED_COLUMNS, Customer, Server
from core.store.vault import count_by_key, reveal, rotate_all
from jobs import operator, sweeper
from jobs.context import JobContext, use_context
from jobs.queues import START
from sim.server import SimulatorServer
from tests import factories
from tests.pipeline import rachel8_vps
from tests.pipeline.harness import Stack, served_stack
from tests.reliability.test_lifecycle_machine import Crash


@pytest.fixture
def stack(
    db: peewee.Database,
    tmp_path: Path,
    redis_client: redis.Redis,
    redis_server_url: str,
    sim: SimulatorServer,
) -> Iterator[Stack]:
    with served_stack(
        tmp_path,
        redis_client,
        redis_server_url,
        sim,
        RACHEL_BOOT_TIMEOUT="20s",
        RACHEL_SWEEP_GRACE="0s",
    ) as built:
        yield built


def _crash_one_create(stack: Stack) -> None:
    """Run one queued create whose worker dies right after Hetzner accepted it."""
    job = Queue(START, connection=stack.redis).jobs[0]
    hetzner = stack.ctx.hetzner
    original: Callable[..., Any] = hetzner.create_server

    def create_then_die(*args: Any, **kwargs: Any) -> Any:
        original(*args, **kwargs)
        raise Crash

    Queue(START, connection=stack.redis).remove(job)
    hetzner.create_server = create_then_die  # type: ignore[method-assign]
    try:
        with contextlib.suppress(Crash):
            job.func(*job.args)
    finally:
        del hetzner.create_server
    job.delete()


def test_rotation_during_deploys_loses_nothing(stack: Stack) -> None:
    owners = [factories.paying_customer(stack.ring) for _ in range(6)]
    planted = {o.id: factories.planted_secrets(o, stack.ring) for o in owners}
    ids = [
        operator.deploy(stack.redis, stack.settings, o.external_id, "operator:test").server_id
        for o in owners
    ]
    _crash_one_create(stack)  # that server: VPS created, the row still says creating
    # Part-way: a few jobs run, so servers are spread over the phases.
    worker = stack.worker()
    for _ in range(3):
        worker.work(burst=True, max_jobs=2, logging_level="ERROR")
    phases = {Server.get_by_id(i).status for i in ids}
    assert len(phases) > 1 or phases != {Status.READY}, f"nothing in flight: {phases}"

    # Every process restarts with old,new; then the rotation runs.
    new_entry = generate_key_entry()
    both = KeyRing([*stack.settings.master_keys, new_entry])
    stack.ctx = JobContext(settings=stack.settings, keyring=both, redis=stack.redis)
    use_context(stack.ctx)
    report = rotate_all(both)
    assert report.total_rotated >= 2 * len(owners)
    sweeper.run(stack.ctx)  # re-enqueues the crashed create (the worker died with it)

    stack.drain(
        lambda: {Server.get_by_id(i).status for i in ids} == {Status.READY},
        timeout=90,
        what="every deploy to be ready",
    )
    new_only = KeyRing([new_entry])
    new_id = new_only.primary_key_id
    for model, columns in ENCRYPTED_COLUMNS.items():
        for column in columns:
            assert set(count_by_key(model, column)) <= {new_id}, f"{column} under an old key"
    for owner in owners:
        fresh = Customer.get_by_id(owner.id)
        opened = [reveal(new_only, fresh, f) for f in ("telegram_bot_token", "claude_credentials")]
        assert opened == planted[owner.id][:2]  # the stored token and document come first
    for server_id in ids:
        row = Server.get_by_id(server_id)
        assert reveal(new_only, row, "ssh_private_key")
        machine = stack.sim.vps(row.provider_id or 0)
        assert machine is not None
        token, claude = planted[row.customer_id][:2]
        assert rachel8_vps.env(machine)["TELEGRAM_BOT_TOKEN"] == token
        assert rachel8_vps.read(machine, rachel8_vps.LAYOUT.credentials_path).text == claude
    assert len(stack.provider_servers()) == len(ids), "a VPS was duplicated or lost"

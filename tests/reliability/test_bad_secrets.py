"""A corrupted ciphertext and a wrong master key: the job fails cleanly, nothing else changes.

The injection job is the one place customer secrets are opened. When they do
not open, the server fails in injecting_secrets with a clear, secret-free
reason, its VPS is cleaned up, no secrets file is written, and the stored
ciphertexts are left exactly as they were (an operator can restore the key
and `rachel-cloud retry`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import peewee
import pytest
import redis

from core.cloud import vps_contract as vps
from core.domain.lifecycle import Status
from core.security.crypto import Ciphertext, KeyRing, generate_key_entry
from core.store.models import Customer, Server
from core.store.vault import reveal
from jobs import operator
from jobs.context import JobContext, use_context
from sim.server import SimulatorServer
from tests import factories
from tests.pipeline.harness import Stack, served_stack


@pytest.fixture
def stack(
    db: peewee.Database,
    tmp_path: Path,
    redis_client: redis.Redis,
    redis_server_url: str,
    sim: SimulatorServer,
) -> Iterator[Stack]:
    with served_stack(tmp_path, redis_client, redis_server_url, sim) as built:
        yield built


def _ciphertexts(customer_id: int) -> tuple[str, str]:
    row = Customer.get_by_id(customer_id)
    return row.telegram_bot_token.token, row.claude_credentials.token


def _deploy(stack: Stack) -> tuple[Customer, int]:
    owner = factories.paying_customer(stack.ring)
    outcome = operator.deploy(stack.redis, stack.settings, owner.external_id, "operator:test")
    return owner, outcome.server_id


def _failed_cleanly(stack: Stack, server_id: int, reason: str) -> Server:
    row = stack.wait_status(server_id, Status.FAILED)
    assert row.failed_phase == Status.INJECTING_SECRETS
    assert reason in (row.last_error or ""), row.last_error
    assert "crypto_error" in (row.last_error or "")
    machine_id = row.provider_id
    stack.drain(lambda: stack.provider_servers() == [], what="cleanup of the VPS")
    machine = stack.sim.vps(machine_id or 0)
    assert machine is None or not machine.fs.real(vps.Layout().env_path, "/").exists()
    return row


def test_corrupted_ciphertext_fails_the_server_cleanly(stack: Stack) -> None:
    owner, server_id = _deploy(stack)
    token, claude = _ciphertexts(owner.id)
    corrupted = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    Customer.update(telegram_bot_token=Ciphertext(corrupted)).where(
        Customer.id == owner.id
    ).execute()
    _failed_cleanly(stack, server_id, "does not open: tampered, corrupted")
    assert _ciphertexts(owner.id) == (corrupted, claude), "the job changed a ciphertext"


def test_wrong_master_key_fails_the_server_cleanly(stack: Stack) -> None:
    # The customer's secrets were sealed under a key the workers' ring lacks
    # (a process started with a truncated RACHEL_MASTER_KEYS).
    old_entry = generate_key_entry()
    old = KeyRing([old_entry])
    owner = factories.paying_customer(old)
    server_id = operator.deploy(
        stack.redis, stack.settings, owner.external_id, "operator:test"
    ).server_id
    before = _ciphertexts(owner.id)
    row = _failed_cleanly(stack, server_id, "which is not in RACHEL_MASTER_KEYS")
    assert old.primary_key_id in (row.last_error or "")
    assert _ciphertexts(owner.id) == before
    # Nothing was lost: with the key back in the ring, a retry gets to ready.
    ring = KeyRing([old_entry, *stack.settings.master_keys])
    use_context(JobContext(settings=stack.settings, keyring=ring, redis=stack.redis))
    assert reveal(ring, Customer.get_by_id(owner.id), "telegram_bot_token")
    operator.retry(stack.redis, stack.settings, server_id, "operator:test")
    stack.wait_status(server_id, Status.READY)

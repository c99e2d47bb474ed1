"""The warm pool's store on both databases: the claim, atomic under racing threads
(two deploys never get one server), the Server taking the VPS over, a claim
racing a deprovision leaving the pool its server; and the pool servers' callback."""

from __future__ import annotations

import threading
from datetime import timedelta

import peewee
import pytest

from core.domain import pool_store
from core.domain.callbacks import CallbackRejected, hash_token
from core.domain.install_outcome import InstallOutcome
from core.domain.lifecycle import Status
from core.domain.pool import PoolState
from core.platform.clock import utcnow
from core.security.crypto import KeyRing, generate_key_entry, generate_ssh_keypair
from core.store.db import current
from core.store.models import Event, PoolServer, Server
from core.store.vault import reveal, seal
from jobs.images import images_in_use
from tests import factories

COMMIT = "c" * 40
RING = KeyRing([generate_key_entry()])
HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMh5ID4oRHC8VNoPLmWDrBSxoBSkwLsOlTeY5Zm0pn0P"


def warm(n: int, location: str = "fsn1") -> PoolServer:
    now = utcnow()
    row: PoolServer = PoolServer.create(
        state=PoolState.WARM.value, location=location, server_type="cx23", image="42",
        commit=COMMIT, name=f"test-pool-{n}", provider_id=1000 + n, ipv4=f"10.0.0.{n}",
        host_key=HOST_KEY, created_at=now, warm_at=now - timedelta(seconds=n),
    )  # fmt: skip
    pair = generate_ssh_keypair(comment=f"pool-{n}")
    seal(RING, row, "ssh_private_key", pair.private_openssh)
    row.ssh_public_key = pair.public_openssh
    row.save()
    return row


def creating() -> Server:
    return factories.server(status=Status.CREATING.value, attempt=1)


def test_a_claim_hands_the_oldest_warm_vps_to_the_server(db: peewee.Database) -> None:
    newer, older, elsewhere = warm(1), warm(2), warm(3, location="nbg1")
    server = creating()
    claimed = pool_store.claim(server, RING, commit=COMMIT, next_job=lambda s, at: "job-x")
    assert claimed is not None and claimed.pool_id == older.id
    row = Server.get_by_id(server.id)
    assert row.status == Status.INJECTING_SECRETS
    assert (row.provider_id, row.ipv4, row.host_key, row.name, row.image, row.rachel8_commit) == (
        older.provider_id, older.ipv4, HOST_KEY, older.name, "42", COMMIT,
    )  # fmt: skip
    assert row.job_id == "job-x"
    # The key is re-sealed for the Server's row: it opens there, to the pool's key.
    assert reveal(RING, row, "ssh_private_key") == reveal(RING, older, "ssh_private_key")
    pooled = PoolServer.get_by_id(older.id)
    assert (pooled.state, pooled.server_id) == (PoolState.CLAIMED, server.id)
    messages = [e.message for e in Event.select().where(Event.server == server.id)]
    assert any("from the warm pool" in m for m in messages)
    assert PoolServer.get_by_id(newer.id).state == PoolState.WARM
    assert PoolServer.get_by_id(elsewhere.id).state == PoolState.WARM
    # Another release's pool server is never claimed: a miss, the image path.
    assert pool_store.claim(creating(), RING, commit="d" * 40) is None


def test_a_claim_racing_a_deprovision_leaves_the_pool_its_server(db: peewee.Database) -> None:
    only = warm(1)
    server = creating()
    # The deprovision won: the server left creating before the claim's transition.
    Server.update(status=Status.FAILED.value).where(Server.id == server.id).execute()
    assert pool_store.claim(server, RING, commit=COMMIT) is None
    assert server.ssh_private_key is None  # not even in memory: the job goes on with it
    kept = PoolServer.get_by_id(only.id)
    assert (kept.state, kept.server_id) == (PoolState.WARM, None)
    row = Server.get_by_id(server.id)
    assert (row.status, row.provider_id) == (Status.FAILED, None)
    assert Event.select().where(Event.kind == pool_store.EVENT_KIND).count() == 0


def test_racing_claims_never_share_a_server(db: peewee.Database) -> None:
    pool = [warm(n) for n in range(1, 4)]
    servers = [creating() for _ in range(6)]
    current().close()
    results: dict[int, int | None] = {}
    barrier = threading.Barrier(len(servers))

    def claim(server: Server) -> None:
        barrier.wait()
        with current().connection_context():
            got = pool_store.claim(server, RING, commit=COMMIT)
            results[server.id] = got.pool_id if got is not None else None

    threads = [threading.Thread(target=claim, args=(s,)) for s in servers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    current().connect(reuse_if_open=True)
    won = [pool_id for pool_id in results.values() if pool_id is not None]
    assert sorted(won) == sorted(p.id for p in pool)  # each taken once, none twice
    for server in servers:
        row = Server.get_by_id(server.id)
        if results[server.id] is None:
            assert (row.status, row.provider_id) == (Status.CREATING, None)  # a miss
        else:
            taken = PoolServer.get_by_id(results[server.id])
            assert (taken.server_id, row.provider_id) == (server.id, taken.provider_id)


def booting(token: str, **fields: object) -> PoolServer:
    now = utcnow()
    values: dict[str, object] = {
        "state": PoolState.BOOTING.value, "location": "fsn1", "server_type": "cx23",
        "image": "42", "commit": COMMIT, "name": f"test-pool-b{now.timestamp()}",
        "provider_id": 77, "ipv4": "10.0.1.1", "created_at": now,
        "callback_token_hash": hash_token(token),
        "callback_token_expires_at": now + timedelta(minutes=5),
    }  # fmt: skip
    values.update(fields)
    row: PoolServer = PoolServer.create(**values)
    return row


def test_a_pool_callback_is_authenticated_like_a_servers(db: peewee.Database) -> None:
    ok = InstallOutcome(ok=True, commit=COMMIT)
    row = booting("right")
    for token, source in (("wrong", "10.0.1.1"), ("right", "10.9.9.9"), ("", "10.0.1.1")):
        with pytest.raises(CallbackRejected) as refused:
            pool_store.accept_pool_callback(row.id, token, HOST_KEY, source, install=ok)
        assert refused.value.code == "unauthorized"
    with pytest.raises(CallbackRejected):  # an unknown pool server: the same answer
        pool_store.accept_pool_callback(9999, "right", HOST_KEY, "10.0.1.1", install=ok)
    done = pool_store.accept_pool_callback(row.id, "right", HOST_KEY, "10.0.1.1", install=ok)
    assert (done.state, done.host_key, done.callback_token_hash) == (PoolState.WARM, HOST_KEY, None)
    assert done.warm_at is not None
    with pytest.raises(CallbackRejected):  # the token is spent
        pool_store.accept_pool_callback(row.id, "right", HOST_KEY, "10.0.1.1", install=ok)
    late = booting(
        "late",
        callback_token_expires_at=utcnow() - timedelta(seconds=1),
        ipv4="10.0.1.2",
        provider_id=78,
    )
    with pytest.raises(CallbackRejected):
        pool_store.accept_pool_callback(late.id, "late", HOST_KEY, "10.0.1.2", install=ok)


def test_a_failed_install_recycles_the_pool_server(db: peewee.Database) -> None:
    row = booting("t")
    failed = InstallOutcome(ok=False, failed_step="bun", exit_status=1, log_tail="no network")
    done = pool_store.accept_pool_callback(row.id, "t", HOST_KEY, "10.0.1.1", install=failed)
    assert done.state == PoolState.RECYCLING and "install failed" in (done.reason or "")
    assert done.host_key is None  # never pinned: nothing will connect to it


def test_retention_keeps_the_image_a_pool_server_being_made_names(db: peewee.Database) -> None:
    booting("t", image="901")
    warm(1)  # image 42, warm: made already
    assert images_in_use() == {901}

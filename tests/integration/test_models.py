"""The data model on SQLite and PostgreSQL."""

from pathlib import Path

import peewee
import pytest

from core.errors import CryptoError
from core.security.crypto import KeyRing, generate_key_entry
from core.store.db import init_database
from core.store.models import Customer, Event, Server, WebhookDelivery
from core.store.vault import reveal, seal
from tests import factories


def test_sqlite_runs_in_wal_mode_with_a_busy_timeout(tmp_path: Path) -> None:
    db = init_database(f"sqlite:///{tmp_path / 'wal.db'}")
    db.connect()
    assert db.execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute_sql("PRAGMA busy_timeout").fetchone()[0] == 15000
    assert db.execute_sql("PRAGMA foreign_keys").fetchone()[0] == 1


def test_one_live_server_per_customer(db: peewee.Database) -> None:
    owner = factories.customer()
    first = factories.server(owner)
    with pytest.raises(peewee.IntegrityError), db.atomic():
        factories.server(owner)
    # A deleted server does not count: the customer may deploy again.
    Server.update(status="deleted").where(Server.id == first.id).execute()
    again = factories.server(owner)
    assert again.id != first.id
    assert Server.select().where(Server.customer == owner).count() == 2


def test_external_ids_and_server_names_are_unique(db: peewee.Database) -> None:
    factories.customer(external_id="cus_same")
    with pytest.raises(peewee.IntegrityError), db.atomic():
        factories.customer(external_id="cus_same")
    factories.server(name="rachel-1")
    with pytest.raises(peewee.IntegrityError), db.atomic():
        factories.server(name="rachel-1")


def test_encrypted_fields_hold_ciphertext_only(db: peewee.Database) -> None:
    ring = KeyRing([generate_key_entry()])
    owner = factories.customer()
    seal(ring, owner, "telegram_bot_token", "123456:planted-bot-token-abcdef")
    owner.save()
    raw = db.execute_sql(
        "SELECT telegram_bot_token FROM customer WHERE id = %s"
        if isinstance(db, peewee.PostgresqlDatabase)
        else "SELECT telegram_bot_token FROM customer WHERE id = ?",
        (owner.id,),
    ).fetchone()[0]
    assert raw.startswith("v1:") and "planted" not in raw
    fresh = Customer.get_by_id(owner.id)
    assert reveal(ring, fresh, "telegram_bot_token") == "123456:planted-bot-token-abcdef"
    assert reveal(ring, fresh, "claude_credentials") is None
    # A plain string can never be stored in an encrypted column.
    fresh.claude_credentials = "plaintext"
    with pytest.raises(TypeError, match="encrypted"):
        fresh.save()


def test_ciphertext_copied_to_another_row_fails(db: peewee.Database) -> None:
    ring = KeyRing([generate_key_entry()])
    a, b = factories.customer(), factories.customer()
    seal(ring, a, "telegram_bot_token", "token-of-customer-a")
    a.save()
    b.telegram_bot_token = a.telegram_bot_token
    b.save()
    with pytest.raises(CryptoError):
        reveal(ring, Customer.get_by_id(b.id), "telegram_bot_token")


def test_seal_requires_a_saved_row(db: peewee.Database) -> None:
    ring = KeyRing([generate_key_entry()])
    with pytest.raises(CryptoError, match="saved"):
        seal(ring, Customer(external_id="x", email="x@y"), "telegram_bot_token", "secret-value")


def test_events_cascade_with_their_server_and_deliveries_are_keyed(db: peewee.Database) -> None:
    srv = factories.server()
    Event.create(server=srv, kind="note", message="hello", actor="system")
    assert srv.events.count() == 1
    WebhookDelivery.create(
        webhook_id="msg_1",
        kind="deploy",
        body_sha256="0" * 64,
        response_status=202,
        response_body="{}",
    )
    with pytest.raises(peewee.IntegrityError), db.atomic():
        WebhookDelivery.create(
            webhook_id="msg_1",
            kind="deploy",
            body_sha256="1" * 64,
            response_status=202,
            response_body="{}",
        )

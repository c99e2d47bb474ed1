"""Key rotation re-seals every secret under the newest key, idempotently."""

import contextlib

import peewee

from core.domain.deliveries import StoredAnswer
from core.domain.intake import Submission, admit, payload_binding
from core.security.crypto import KeyRing, generate_key_entry, generate_ssh_keypair
from core.store.models import Customer, Server, WebhookDelivery
from core.store.vault import count_by_key, reveal, rotate_all, seal
from tests import factories


def test_rotation_moves_every_secret_to_the_new_key(db: peewee.Database) -> None:
    old, new = generate_key_entry(), generate_key_entry()
    ring_old = KeyRing([old])
    plaintexts = {}
    for i in range(7):
        c = factories.customer()
        seal(ring_old, c, "telegram_bot_token", f"{i}:bot-token-{i:04d}")
        seal(ring_old, c, "claude_credentials", f'{{"refresh": "r-{i:04d}"}}')
        c.save()
        srv = factories.server(c)
        seal(ring_old, srv, "ssh_private_key", generate_ssh_keypair().private_openssh)
        srv.save()
        plaintexts[c.id] = f"{i}:bot-token-{i:04d}"
    factories.customer()  # a customer without secrets is left alone

    ring = KeyRing([old, new])
    progress: list[tuple[str, int, int]] = []
    report = rotate_all(ring, batch_size=3, progress=lambda *a: progress.append(a))
    assert report.total_rotated == 21
    assert progress[-1][1] == 7
    new_id = ring.primary_key_id
    assert count_by_key(Customer, "telegram_bot_token") == {new_id: 7}
    assert count_by_key(Server, "ssh_private_key") == {new_id: 7}

    # The old key can now be dropped: everything opens with the new one alone.
    only_new = KeyRing([new])
    for cid, plain in plaintexts.items():
        assert reveal(only_new, Customer.get_by_id(cid), "telegram_bot_token") == plain

    again = rotate_all(ring)
    assert again.total_rotated == 0
    assert again.current["customer.telegram_bot_token"] == 7


def test_rotation_resumes_after_an_interruption(db: peewee.Database) -> None:
    old, new = generate_key_entry(), generate_key_entry()
    for i in range(5):
        c = factories.customer()
        seal(KeyRing([old]), c, "telegram_bot_token", f"token-{i:06d}")
        c.save()
    ring = KeyRing([old, new])

    class Stop(Exception):
        pass

    def stop_after_first_batch(label: str, seen: int, rotated: int) -> None:
        raise Stop

    with contextlib.suppress(Stop):
        rotate_all(ring, batch_size=2, progress=stop_after_first_batch)
    assert count_by_key(Customer, "telegram_bot_token") == {
        ring.key_ids[0]: 3,
        ring.primary_key_id: 2,
    }
    report = rotate_all(ring, batch_size=2)
    assert report.rotated["customer.telegram_bot_token"] == 3
    assert report.current["customer.telegram_bot_token"] == 2
    assert count_by_key(Customer, "telegram_bot_token") == {ring.primary_key_id: 5}


def test_rotation_covers_deploys_waiting_in_the_intake(db: peewee.Database) -> None:
    # Their rows are keyed by webhook-id (text), walked in order like any other.
    old, new = generate_key_entry(), generate_key_entry()
    factories.subscription(factories.customer(external_id="cus_rot"), "active")
    ids = [f"msg_{c}" for c in "edcba"]
    admit(
        [Submission(w, "0" * 64, "cus_rot", b'{"x": 1}', StoredAnswer(202, "{}")) for w in ids],
        KeyRing([old]),
    )
    ring = KeyRing([old, new])
    report = rotate_all(ring, batch_size=2)
    assert report.rotated["webhook_delivery.payload"] == 5
    only_new = KeyRing([new])
    for delivery in WebhookDelivery.select():
        opened = only_new.open(delivery.payload, payload_binding(delivery.webhook_id))
        assert opened == '{"x": 1}'
    assert rotate_all(ring).total_rotated == 0

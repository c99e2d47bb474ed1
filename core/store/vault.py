"""Sealing and opening model secrets, and key rotation.

`seal(ring, row, "field", plaintext)` and `reveal(ring, row, "field")` bind
each ciphertext to its table, row id and column. Rotation re-seals every
encrypted column under the newest key: idempotent (current rows are skipped)
and resumable (it walks rows in id order and commits batch by batch, and each
update is a compare-and-set on the old ciphertext so a concurrent writer is
never overwritten).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from core.errors import CryptoError
from core.platform.dev_secrets import development_key_entries
from core.platform.settings import Settings
from core.security.crypto import Binding, Ciphertext, KeyRing
from core.store.db import current
from core.store.models import ENCRYPTED_COLUMNS, BaseModel

log = logging.getLogger(__name__)


def load_keyring(settings: Settings) -> KeyRing:
    """The key ring from `RACHEL_MASTER_KEYS`, or the development ring in the data dir."""
    if settings.master_keys:
        return KeyRing(settings.master_keys)
    return KeyRing(development_key_entries(settings.data_dir))


def binding_for(row: BaseModel, field_name: str) -> Binding:
    """The associated data of `row.field_name`.

    Raises:
        CryptoError: the row has no id yet (save it first), or the field is not encrypted.
    """
    model = type(row)
    if field_name not in ENCRYPTED_COLUMNS.get(model, ()):
        raise CryptoError(f"{model.__name__}.{field_name} is not an encrypted column")
    row_id = row.row_id()
    if row_id is None:
        raise CryptoError(f"{model.__name__} must be saved before a secret is sealed into it")
    return Binding(model._meta.table_name, row_id, field_name)


def seal(ring: KeyRing, row: BaseModel, field_name: str, plaintext: str) -> Ciphertext:
    """Encrypt `plaintext` for `row.field_name` and assign it (the caller saves)."""
    ciphertext = ring.seal(plaintext, binding_for(row, field_name))
    setattr(row, field_name, ciphertext)
    return ciphertext


def reveal(ring: KeyRing, row: BaseModel, field_name: str) -> str | None:
    """Decrypt `row.field_name`; None when the column is empty.

    Raises:
        CryptoError: wrong key ring, tampering, or a ciphertext from elsewhere.
    """
    value = getattr(row, field_name)
    if value is None:
        return None
    if not isinstance(value, Ciphertext):
        raise CryptoError(f"{type(row).__name__}.{field_name} holds no ciphertext")
    return ring.open(value, binding_for(row, field_name))


@dataclass
class RotationReport:
    """What a rotation run did, per `table.column`."""

    rotated: dict[str, int] = field(default_factory=dict)
    current: dict[str, int] = field(default_factory=dict)
    raced: dict[str, int] = field(default_factory=dict)

    @property
    def total_rotated(self) -> int:
        return sum(self.rotated.values())


def rotate_all(
    ring: KeyRing,
    batch_size: int = 200,
    progress: Callable[[str, int, int], None] | None = None,
) -> RotationReport:
    """Re-seal every encrypted column under the ring's primary key.

    Args:
        ring: must hold every key id present in the database plus the new primary.
        batch_size: rows per transaction.
        progress: called with (`table.column`, rows seen, rows rotated) after each batch.

    Raises:
        CryptoError: a ciphertext cannot be opened (nothing of that batch is written).
    """
    report = RotationReport()
    db = current()
    for model, columns in ENCRYPTED_COLUMNS.items():
        for column in columns:
            label = f"{model._meta.table_name}.{column}"
            report.rotated[label] = report.current[label] = report.raced[label] = 0
            model_field = getattr(model, column)
            pk: Any = model._meta.primary_key
            last_id: Any = None  # keys are integers or (deliveries) text: no sentinel
            seen = 0
            while True:
                where = model_field.is_null(False)
                if last_id is not None:
                    where &= pk > last_id
                rows = list(
                    model.select(pk, model_field).where(where).order_by(pk).limit(batch_size)
                )
                if not rows:
                    break
                with db.atomic():
                    for row in rows:
                        old: Ciphertext = getattr(row, column)
                        if not ring.needs_rotation(old):
                            report.current[label] += 1
                            continue
                        row_id = row.row_id()
                        new = ring.rotate(old, Binding(model._meta.table_name, row_id, column))
                        # Compare-and-set: if someone re-sealed it meanwhile, theirs stands.
                        changed = (
                            model.update({model_field: new})
                            .where((pk == row_id) & (model_field == old))
                            .execute()
                        )
                        if changed:
                            report.rotated[label] += 1
                        else:
                            report.raced[label] += 1
                seen += len(rows)
                last_id = rows[-1].row_id()
                if progress is not None:
                    progress(label, seen, report.rotated[label])
    log.info(
        "key rotation done: primary key %s, %d ciphertexts re-sealed",
        ring.primary_key_id,
        report.total_rotated,
    )
    return report


def count_by_key(model: type[BaseModel], column: str) -> dict[str, int]:
    """How many ciphertexts of `model.column` each key id sealed (for `keys status`)."""
    counts: dict[str, int] = {}
    model_field = getattr(model, column)
    query = model.select(model_field).where(model_field.is_null(False))
    for (value,) in query.tuples().iterator():
        key_id = Ciphertext.parse(value.token if isinstance(value, Ciphertext) else value).key_id
        counts[key_id] = counts.get(key_id, 0) + 1
    return counts


__all__ = [
    "RotationReport",
    "binding_for",
    "count_by_key",
    "load_keyring",
    "reveal",
    "rotate_all",
    "seal",
]

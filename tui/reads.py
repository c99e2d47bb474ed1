"""What the screens' read modules share: plain values built from query rows, reasons redacted.

No Textual here (the read modules are pure: `tui.rollout_reads`, `tui.pool_reads`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import TYPE_CHECKING, Any, TypeVar

from core.security.redaction import redact

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

InfoT = TypeVar("InfoT", bound="DataclassInstance")


def redacted(text: str | None) -> str | None:
    """Reasons quote logs and provider errors (a failed step's output): never show a secret."""
    return None if text is None else redact(text)


def build(cls: type[InfoT], row: Mapping[str, Any], **given: Any) -> InfoT:
    """A `cls` (a dataclass) from a query's row: the fields of the same name, then those `given`."""
    values = {f.name: row[f.name] for f in fields(cls) if f.name not in given}
    return cls(**values, **given)

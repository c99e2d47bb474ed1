"""`rachel-cloud keys`: master key generation, rotation and status."""

from __future__ import annotations

import click

from cli.common import runtime
from core.security.crypto import generate_key_entry
from core.store.db import connection
from core.store.models import ENCRYPTED_COLUMNS
from core.store.vault import count_by_key, rotate_all


@click.group()
def keys() -> None:
    """Master keys of the secrets at rest."""


@keys.command()
def generate() -> None:
    """Print a new key ring entry (KEY_ID:BASE64KEY).

    Append it to RACHEL_MASTER_KEYS (comma-separated, the last key encrypts),
    restart every process, then run `rachel-cloud keys rotate`.
    """
    click.echo(generate_key_entry())


@keys.command()
@click.option(
    "--batch-size",
    default=200,
    show_default=True,
    type=click.IntRange(1, 10_000),
    help="Rows re-sealed per transaction.",
)
def rotate(batch_size: int) -> None:
    """Re-encrypt every secret under the newest key (idempotent, resumable)."""
    rt = runtime("keys")
    ring = rt.keyring

    def progress(label: str, seen: int, rotated: int) -> None:
        click.echo(f"  {label}: {seen} rows checked, {rotated} re-sealed", err=True)

    click.echo(f"re-sealing secrets under key {ring.primary_key_id}", err=True)
    with connection():
        report = rotate_all(ring, batch_size=batch_size, progress=progress)
    for label in report.rotated:
        click.echo(
            f"{label}: {report.rotated[label]} re-sealed, {report.current[label]} "
            f"already current, {report.raced[label]} changed concurrently (left as is)"
        )
    click.echo(f"done: {report.total_rotated} ciphertexts now under {ring.primary_key_id}")


@keys.command()
def status() -> None:
    """Show which key sealed how many secrets, and the ring's primary key."""
    rt = runtime("keys")
    ring = rt.keyring
    click.echo(f"key ring: {', '.join(ring.key_ids)} (encrypting with {ring.primary_key_id})")
    stale = 0
    unreadable = 0
    with connection():
        for model, columns in ENCRYPTED_COLUMNS.items():
            for column in columns:
                counts = count_by_key(model, column)
                shown = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "none"
                click.echo(f"{model._meta.table_name}.{column}: {shown}")
                stale += sum(
                    v for k, v in counts.items() if k != ring.primary_key_id and k in ring.key_ids
                )
                for key_id in counts:
                    if key_id not in ring.key_ids:
                        unreadable += counts[key_id]
                        click.secho(
                            f"  key {key_id} is NOT in RACHEL_MASTER_KEYS: "
                            "those secrets cannot be opened",
                            fg="red",
                            err=True,
                        )
    if stale:
        click.echo(f"{stale} ciphertexts are under older keys: run `rachel-cloud keys rotate`")
    if unreadable:
        # A wrong or truncated ring: rotation cannot open these either, so do not
        # suggest it; say what is wrong and fail (scripts check the exit code).
        raise click.ClickException(
            f"{unreadable} ciphertexts are under keys missing from RACHEL_MASTER_KEYS: "
            "put those keys back in the ring (every process needs them to open the secrets)"
        )

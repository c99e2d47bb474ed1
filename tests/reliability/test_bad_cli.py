"""Invalid settings, a wrong key ring and a corrupted ciphertext through the real CLI.

Each is a clear message naming what is wrong, a non-zero exit, no traceback,
and the database file byte for byte as it was.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from core.security.crypto import generate_key_entry
from tests.integration.test_cli import REPO, run

SEED = (
    "from cli.runtime import Runtime\n"
    "from core.store.vault import seal\n"
    "from tests import factories\n"
    "rt = Runtime.start('seed')\n"
    "for n in range(3):\n"
    "    c = factories.customer()\n"
    "    seal(rt.keyring, c, 'telegram_bot_token', f'42:planted-cli-secret-{n:04d}')\n"
    "    c.save()\n"
)


def _db_file(tmp_path: Path) -> Path:
    return tmp_path / ".rachel-cloud" / "rachel-cloud.db"


def _digest(tmp_path: Path) -> str:
    """Every row of every table (the logical content; SQLite may rewrite its pages)."""
    with sqlite3.connect(_db_file(tmp_path)) as conn:
        tables = [t for (t,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        dump = [
            f"{table} {row!r}"
            for table in sorted(tables)
            for row in conn.execute(f'SELECT * FROM "{table}" ORDER BY 1')
        ]
    return hashlib.sha256("\n".join(dump).encode()).hexdigest()


@pytest.fixture
def seeded(tmp_path: Path) -> str:
    """A migrated SQLite database with three secrets sealed under a key; returns that entry."""
    entry = generate_key_entry()
    env = {"RACHEL_MASTER_KEYS": entry}
    assert run("db", "upgrade", cwd=tmp_path, env=env).returncode == 0
    seeded = subprocess.run(  # noqa: PLW1510
        [sys.executable, "-c", SEED],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, **env, "PYTHONPATH": str(REPO)},
        timeout=60,
    )
    assert seeded.returncode == 0, seeded.stderr
    return entry


def _refused(out: subprocess.CompletedProcess[str], message: str, code: int = 2) -> None:
    assert out.returncode == code, (out.returncode, out.stdout, out.stderr)
    assert message in out.stderr, out.stderr
    assert "Traceback" not in out.stdout + out.stderr
    assert "planted-cli-secret" not in out.stdout + out.stderr


INVALID = [
    ("RACHEL_MAX_BODY_BYTES", "-1", "expected a number from 1024"),
    ("RACHEL_BOOT_TIMEOUT", "forever", "expected a duration"),
    ("RACHEL_SLA", "-5s", "expected a duration"),
    ("RACHEL_PHASE_LIMITS", "bogus", "expected phase=duration pairs"),
    ("RACHEL_TRUSTED_PROXIES", "999.1.1.1/40", "is not a CIDR range"),
    ("RACHEL_PUBLIC_URL", "ftp://x", "expected a URL"),
    ("RACHEL_LOG_LEVEL", "loud", "expected one of debug"),
    ("REDIS_URL", "http://x", "expected a URL starting with redis"),
    ("DATABASE_URL", "oracle://db", "expected a URL"),
    ("RACHEL_WORKER_CLASS", "thread", "expected one of fork, simple"),
    ("RACHEL_MASTER_KEYS", "k1:AAAA", "key must be 32 bytes"),
    ("RACHEL_MASTER_KEYS", "no-colon", "is not KEY_ID:BASE64KEY"),
]


COMMANDS = [("worker",), ("web",), ("cron",), ("reconcile", "--apply"), ("keys", "status")]


def test_invalid_settings_stop_every_process_naming_the_setting(
    tmp_path: Path, seeded: str
) -> None:
    before = _digest(tmp_path)
    for n, (name, value, message) in enumerate(INVALID):
        command = COMMANDS[n % len(COMMANDS)]  # every command meets several bad settings
        out = run(*command, cwd=tmp_path, env={"RACHEL_MASTER_KEYS": seeded, name: value})
        _refused(out, f"{name}: ")
        assert message in out.stderr, (command, out.stderr)
    assert _digest(tmp_path) == before


def test_invalid_simulator_faults_are_refused(tmp_path: Path) -> None:
    for faults, message in (
        ("{bad", "invalid fault document"),
        ('{"errors": {"*": {"rate": 7}}}', "rate must be between 0 and 1"),
        ('{"nonsense": 1}', "invalid fault document"),
    ):
        env = {"RACHEL_SIM_FAULTS": faults, "RACHEL_SIM_PORT": "0"}
        out = run("sim", cwd=tmp_path, env=env)
        _refused(out, message)
        assert out.stderr.startswith("error: RACHEL_SIM_FAULTS: ")


def test_keys_with_a_wrong_ring_fail_clearly_and_change_nothing(
    tmp_path: Path, seeded: str
) -> None:
    before = _digest(tmp_path)
    wrong = {"RACHEL_MASTER_KEYS": generate_key_entry()}
    old_id = seeded.split(":", maxsplit=1)[0]
    rotate = run("keys", "rotate", cwd=tmp_path, env=wrong)
    _refused(rotate, f"sealed with key '{old_id}', which is not in RACHEL_MASTER_KEYS")
    status = run("keys", "status", cwd=tmp_path, env=wrong)
    _refused(status, "error: 3 ciphertexts are under keys missing from RACHEL_MASTER_KEYS")
    assert "run `rachel-cloud keys rotate`" not in status.stdout, "rotation cannot help here"
    assert _digest(tmp_path) == before
    # With the right key added, the same ring rotates everything.
    both = {"RACHEL_MASTER_KEYS": f"{seeded},{wrong['RACHEL_MASTER_KEYS']}"}
    assert run("keys", "rotate", cwd=tmp_path, env=both).returncode == 0


def test_a_corrupted_ciphertext_stops_rotation_with_nothing_written(
    tmp_path: Path, seeded: str
) -> None:
    with sqlite3.connect(_db_file(tmp_path)) as conn:
        (token,) = conn.execute("SELECT telegram_bot_token FROM customer WHERE id = 2").fetchone()
        flipped = token[:-3] + ("A" if token[-3] != "A" else "B") + token[-2:]
        conn.execute("UPDATE customer SET telegram_bot_token = ? WHERE id = 2", (flipped,))
        conn.execute("UPDATE customer SET claude_credentials = ? WHERE id = 3", ("v1:zz:%%%",))
    before = _digest(tmp_path)
    both = {"RACHEL_MASTER_KEYS": f"{seeded},{generate_key_entry()}"}
    rotate = run("keys", "rotate", cwd=tmp_path, env=both)
    _refused(rotate, "customer.telegram_bot_token (row 2) does not open")
    assert _digest(tmp_path) == before, "the batch with the corrupted row was written"

"""The `rachel-cloud` command line, run as a real subprocess."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.security.crypto import generate_key_entry

REPO = Path(__file__).resolve().parents[2]


def run(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RACHEL_", "HCLOUD_", "DATABASE_URL", "REDIS_URL"))
    }
    full_env.update(env or {})
    return subprocess.run(  # noqa: PLW1510 - the tests read returncode
        [sys.executable, "-m", "cli.main", *args],
        cwd=cwd,
        env={**full_env, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_help_lists_every_command_and_version(tmp_path: Path) -> None:
    from cli.main import COMMANDS

    out = run("--help", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    for name in COMMANDS:
        assert f"  {name} " in out.stdout
    assert "unavailable" not in out.stdout
    version = run("--version", cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("rachel-cloud, version ")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RACHEL_WEB_PORT": "http"}, "RACHEL_WEB_PORT: expected a whole number"),
        ({"DATABASE_URL": "oracle://db"}, "DATABASE_URL: expected a URL"),
        ({"RACHEL_MASTER_KEYS": "k1:tooshort"}, "RACHEL_MASTER_KEYS: entry 1 (k1)"),
    ],
)
def test_invalid_settings_give_a_message_not_a_traceback(
    tmp_path: Path, env: dict[str, str], message: str
) -> None:
    out = run("keys", "status", cwd=tmp_path, env=env)
    assert out.returncode == 2
    assert message in out.stderr
    assert "Traceback" not in out.stderr + out.stdout


def test_db_upgrade_status_and_refusal_before_upgrade(tmp_path: Path) -> None:
    status = run("db", "status", cwd=tmp_path)
    assert status.returncode == 1 and "schema version 0" in status.stdout
    refused = run("keys", "status", cwd=tmp_path)
    assert refused.returncode == 2 and "rachel-cloud db upgrade" in refused.stderr
    first = run("db", "upgrade", cwd=tmp_path)
    assert first.returncode == 0 and "created schema version" in first.stdout
    assert (tmp_path / ".rachel-cloud" / "rachel-cloud.db").exists()
    second = run("db", "upgrade", cwd=tmp_path)
    assert second.returncode == 0 and "nothing to do" in second.stdout
    assert run("db", "status", cwd=tmp_path).returncode == 0


def test_keys_generate_and_rotate(tmp_path: Path) -> None:
    entry = run("keys", "generate", cwd=tmp_path).stdout.strip()
    key_id, _, key = entry.partition(":")
    assert key_id.startswith("k") and len(key) == 43
    old = generate_key_entry()
    env = {"RACHEL_MASTER_KEYS": old}
    assert run("db", "upgrade", cwd=tmp_path, env=env).returncode == 0
    # Seal a secret under the old key through the library, then rotate through the CLI.
    seed = (
        "from cli.runtime import Runtime\n"
        "from core.store.vault import seal\n"
        "from tests import factories\n"
        "rt = Runtime.start('seed')\n"
        "c = factories.customer()\n"
        "seal(rt.keyring, c, 'telegram_bot_token', '42:rotation-secret-value')\n"
        "c.save()\n"
    )
    seeded = subprocess.run(  # noqa: PLW1510
        [sys.executable, "-c", seed],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, **env, "PYTHONPATH": str(REPO)},
        timeout=60,
    )
    assert seeded.returncode == 0, seeded.stderr
    both = {"RACHEL_MASTER_KEYS": f"{old},{entry}"}
    rotated = run("keys", "rotate", cwd=tmp_path, env=both)
    assert rotated.returncode == 0, rotated.stderr
    assert f"1 ciphertexts now under {key_id}" in rotated.stdout
    status = run("keys", "status", cwd=tmp_path, env=both)
    assert f"customer.telegram_bot_token: {key_id}: 1" in status.stdout
    again = run("keys", "rotate", cwd=tmp_path, env=both)
    assert "0 ciphertexts now under" in again.stdout
    missing = run("keys", "status", cwd=tmp_path, env={"RACHEL_MASTER_KEYS": old})
    assert "NOT in RACHEL_MASTER_KEYS" in missing.stderr
    for text in (rotated.stdout, rotated.stderr, status.stdout, status.stderr):
        assert "rotation-secret-value" not in text


def test_settings_doc_and_hidden_secrets(tmp_path: Path) -> None:
    doc = run("settings", "--doc", cwd=tmp_path)
    assert doc.returncode == 0 and "| `RACHEL_MASTER_KEYS` |" in doc.stdout
    shown = run("settings", cwd=tmp_path, env={"RACHEL_API_KEYS": "very-secret-api-key"})
    assert "very-secret-api-key" not in shown.stdout and "(set, hidden)" in shown.stdout


def test_redis_commands_manage_the_embedded_server(tmp_path: Path) -> None:
    assert run("redis", "status", cwd=tmp_path).returncode == 1
    started = run("redis", "start", cwd=tmp_path)
    assert started.returncode == 0 and started.stdout.startswith("unix://")
    try:
        assert "running at" in run("redis", "status", cwd=tmp_path).stdout
    finally:
        assert run("redis", "stop", cwd=tmp_path).stdout.strip() == "stopped"
    refused = run("redis", "start", cwd=tmp_path, env={"REDIS_URL": "redis://127.0.0.1:6379/0"})
    assert refused.returncode == 2 and "error: REDIS_URL is set" in refused.stderr

"""`rachel-cloud tui`: options, operator name, and a real start and quit in a terminal."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner

from cli.main import cli
from cli.tui import operator_name

REPO = Path(__file__).resolve().parents[2]


def test_help_and_operator_name() -> None:
    result = CliRunner().invoke(cli, ["tui", "--help"])
    assert result.exit_code == 0, result.output
    assert "--readonly" in result.output and "--operator" in result.output
    assert operator_name("bob") == "bob"
    assert operator_name(None)  # the login name


def test_invalid_operator_name_is_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["tui", "--operator", "bad name!"])
    assert result.exit_code == 2
    assert "error: Invalid value for '--operator': invalid actor" in result.output


def _read(fd: int, seconds: float, *wanted: bytes) -> bytes:
    out = b""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not all(w in out for w in wanted):
        ready, _, _ = select.select([fd], [], [], 0.1)
        if ready:
            try:
                out += os.read(fd, 65536)
            except OSError:
                break
    return out


def test_starts_in_a_terminal_and_quits(tmp_path: Path, redis_server_url: str) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RACHEL_", "HCLOUD_", "DATABASE_URL", "REDIS_URL"))
    }
    env.update(
        RACHEL_DATA_DIR=str(tmp_path / "data"),
        DATABASE_URL=f"sqlite:///{tmp_path / 'cli.db'}",
        REDIS_URL=redis_server_url,
        PYTHONPATH=str(REPO),
        TERM="xterm-256color",
        COLUMNS="120",
        LINES="30",
    )
    command = [sys.executable, "-m", "cli.main"]
    upgrade = subprocess.run(
        [*command, "db", "upgrade"],
        check=False,
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert upgrade.returncode == 0, upgrade.stderr
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [*command, "tui", "--readonly", "--operator", "carol"],
        env=env,
        cwd=tmp_path,
        stdin=follower,
        stdout=follower,
        stderr=follower,
    )
    os.close(follower)
    try:
        screen = _read(leader, 20.0, b"operator:carol", b"READ-ONLY", b"Keys")
        screen += _read(leader, 1.0)  # let it settle: keys typed during start-up may be lost
        assert b"operator:carol" in screen and b"READ-ONLY" in screen
        os.write(leader, b"q")
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(leader)

"""The first-boot scripts as rendered into user data, run here against a temp root.

Steps that need a Debian box (apt, a user to switch to, systemd, Bun) cannot
run in a test; their bodies are swapped for shell commands that succeed or fail
like they would. The runner, the stop at the first failure, the outcome JSON
(token removed, bounded), cloud-init's status, the real `clone` step against a
local repository, and the bootstrap's POST and retries are the shipped code.
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest

from core.cloud import vps_contract as vps
from core.cloud.cloudinit import bootstrap_script, install_script
from core.cloud.vps_scripts import ScriptError, render

TOKEN = "planted-callback-token-0123456789abcdef"


def _load(text: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "rendered"}
    exec(compile(text, "script", "exec"), namespace)
    return namespace


def _git(*args: str, cwd: Path) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True)
    return done.stdout.strip()


@pytest.fixture
def installer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The rendered install script, its paths in `tmp_path`, commands run as this user."""
    ns = _load(install_script(vps.Layout("rachel")))
    (tmp_path / "etc").mkdir()
    ns["INSTALL_ENV"] = str(tmp_path / "etc/install.env")
    ns["BOOTSTRAP_ENV"] = str(tmp_path / "etc/bootstrap.env")
    ns["RESULT"] = str(tmp_path / "var/install.json")
    ns["LOG_PATH"] = str(tmp_path / "var/install.log")
    ns["CLONE_DIR"] = str(tmp_path / "home/rachel8")
    ns["RELEASES_DIR"] = str(tmp_path / "home/releases")
    Path(ns["BOOTSTRAP_ENV"]).write_text(f"RACHEL_CALLBACK_TOKEN={TOKEN}\n")
    # cloud-init's status, with more errors than the report carries, one with the token.
    bindir = tmp_path / "bin"
    bindir.mkdir()
    errors = [f"error {i} near {TOKEN}" for i in range(7)]
    fake = bindir / "cloud-init"
    fake.write_text(f"#!/bin/sh\necho '{json.dumps({'status': 'running', 'errors': errors})}'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:/usr/bin:/bin")
    job = ns["Install"]
    monkeypatch.setattr(job, "as_user", lambda self, *argv: list(argv))
    for step in ("packages", "check_user", "bun", "claude_code", "dependencies"):
        monkeypatch.setattr(job, step, lambda self, out: ns["run"](["sh", "-c", "echo ok"], out))
    monkeypatch.setattr(job, "shared_folder", lambda self, out: None)
    monkeypatch.setattr(job, "unit", lambda self, out: None)
    return ns


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, str]:
    """A local repository with one commit: (its path, the commit)."""
    path = tmp_path / "origin"
    path.mkdir()
    _git("init", "-q", cwd=path)
    (path / "README").write_text("Rachel8\n")
    _git("add", "README", cwd=path)
    _git("-c", "user.name=t", "-c", "user.email=t@e", "commit", "-q", "-m", "one", cwd=path)
    return path, _git("rev-parse", "HEAD", cwd=path)


def _manifest(ns: dict[str, Any], repo: Path, commit: str) -> None:
    Path(ns["INSTALL_ENV"]).write_text(
        f"RACHEL8_REPO='{repo}'\nRACHEL8_COMMIT={commit}\nBUN_VERSION=1.4.5\n"
        "CLAUDE_CODE_VERSION=2.1.332\nRACHEL_USER=rachel\n"
    )


def test_a_good_install_reports_ok_and_the_commit(
    installer: dict[str, Any], repo: tuple[Path, str]
) -> None:
    _manifest(installer, *repo)
    assert installer["main"]() == 0
    result = json.loads(Path(installer["RESULT"]).read_text())
    assert result["ok"] is True and result["failed_step"] is None
    assert result["commit"] == repo[1]
    clone = Path(installer["CLONE_DIR"])
    assert clone.is_symlink() and clone.readlink() == Path(f"releases/{repo[1]}")
    assert (Path(installer["RELEASES_DIR"]) / repo[1] / ".git/HEAD").read_text().strip() == repo[1]
    assert result["cloud_init"]["status"] == "running"
    assert len(result["cloud_init"]["errors"]) == vps.MAX_CLOUD_INIT_ERRORS
    assert TOKEN not in json.dumps(result)
    assert (Path(installer["RESULT"]).stat().st_mode & 0o777) == 0o600
    log = Path(installer["LOG_PATH"]).read_text()
    assert [line.split()[1] for line in log.splitlines() if line.startswith("== ")] == list(
        vps.INSTALL_STEPS
    )


def test_an_unknown_commit_fails_the_clone_step_and_stops(
    installer: dict[str, Any], repo: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _manifest(installer, repo[0], "4303627f1cb709be417de6bc7da447987bba8dbc")
    later: list[str] = []
    monkeypatch.setattr(installer["Install"], "dependencies", lambda self, out: later.append("x"))
    assert installer["main"]() == 1
    result = json.loads(Path(installer["RESULT"]).read_text())
    assert (result["ok"], result["failed_step"]) == (False, "clone")
    assert isinstance(result["exit_status"], int) and result["exit_status"] != 0
    assert "4303627f1cb709be417de6bc7da447987bba8dbc" in result["log_tail"]
    # Cloned (at the default branch's head), but the checkout failed: no release is linked.
    assert result["commit"] is None
    assert not Path(installer["CLONE_DIR"]).exists()
    assert later == []  # the steps after the failed one never ran


def test_the_failed_steps_tail_is_bounded_and_without_the_token(
    installer: dict[str, Any], repo: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _manifest(installer, *repo)
    noisy = f"yes 'line {TOKEN}' | head -n 500; echo 'the last line'; exit 7"
    monkeypatch.setattr(
        installer["Install"], "bun", lambda self, out: installer["run"](["sh", "-c", noisy], out)
    )
    assert installer["main"]() == 1
    result = json.loads(Path(installer["RESULT"]).read_text())
    assert (result["failed_step"], result["exit_status"]) == ("bun", 7)
    assert len(result["log_tail"]) == vps.MAX_LOG_TAIL
    assert "the last line" in result["log_tail"] and TOKEN not in result["log_tail"]
    assert TOKEN not in Path(installer["LOG_PATH"]).read_text()
    assert result["commit"] is None  # no clone yet


def test_an_unforeseen_error_is_the_steps_failure(
    installer: dict[str, Any], repo: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _manifest(installer, *repo)

    def broken(self: Any, out: list[str]) -> None:
        raise KeyError("no such thing")

    monkeypatch.setattr(installer["Install"], "packages", broken)
    assert installer["main"]() == 1
    result = json.loads(Path(installer["RESULT"]).read_text())
    assert (result["failed_step"], result["exit_status"]) == ("packages", None)
    assert "KeyError" in result["log_tail"]


class _Callback(BaseHTTPRequestHandler):
    answers: ClassVar[list[int]] = []
    received: ClassVar[list[tuple[str, dict[str, Any]]]] = []

    def do_POST(self) -> None:
        length = int(self.headers["Content-Length"])
        body = json.loads(self.rfile.read(length))
        self.received.append((self.headers["Authorization"], body))
        self.send_response(self.answers.pop(0) if self.answers else 200)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def callback_server() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Callback)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Callback.received = []
    yield f"http://127.0.0.1:{server.server_port}/callbacks/cloud-init/7"
    server.shutdown()


def _bootstrap(tmp_path: Path, url: str) -> dict[str, Any]:
    ns = _load(bootstrap_script())
    ns["BOOTSTRAP_ENV"] = str(tmp_path / "bootstrap.env")
    ns["HOST_KEY_PATH"] = str(tmp_path / "host.pub")
    ns["RESULT"] = str(tmp_path / "install.json")
    ns["FIRST_DELAY"] = 0.01
    Path(ns["BOOTSTRAP_ENV"]).write_text(
        f"RACHEL_CALLBACK_URL='{url}'\nRACHEL_CALLBACK_TOKEN='{TOKEN}'\n"
    )
    Path(ns["HOST_KEY_PATH"]).write_text("ssh-ed25519 AAAAkey root@vps\n")
    return ns


def test_bootstrap_reports_the_outcome_and_retries_until_2xx(
    tmp_path: Path, callback_server: str
) -> None:
    ns = _bootstrap(tmp_path, callback_server)
    outcome = {"ok": False, "failed_step": "clone", "exit_status": 128, "log_tail": "fatal"}
    Path(ns["RESULT"]).write_text(json.dumps(outcome))
    _Callback.answers = [503, 502]
    assert ns["main"]() == 0
    assert len(_Callback.received) == 3
    auth, body = _Callback.received[-1]
    assert auth == f"Bearer {TOKEN}"
    assert body == {"host_key": "ssh-ed25519 AAAAkey root@vps", "install": outcome}


def test_bootstrap_reports_a_failure_when_the_install_left_nothing(
    tmp_path: Path, callback_server: str
) -> None:
    ns = _bootstrap(tmp_path, callback_server)
    assert ns["main"](attempts=1) == 0
    install = _Callback.received[-1][1]["install"]
    assert (install["ok"], install["failed_step"], install["commit"]) == (False, None, None)
    assert "no readable outcome" in install["log_tail"]


def test_render_refuses_constants_the_script_does_not_declare() -> None:
    with pytest.raises(ScriptError, match="declares"):
        render("bootstrap.py", {"BOOTSTRAP_ENV": "/x"})

"""The health agent as rendered into user data, run for real against a temporary root.

The script runs under the system's python3 (as on the VPS) with its paths in
`tmp_path`; `systemctl` and `journalctl` are small executables on its PATH
that print what the test planted and note how they were called; one HTTP
server on loopback stands in for both the control plane's heartbeat route and
the Telegram Bot API. What the agent POSTs is decoded with the control
plane's own `heartbeats.decode`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from core.cloud import vps_contract as vps
from core.cloud.cloudinit import agent_constants
from core.cloud.vps_scripts import AGENT, render
from core.domain import heartbeats
from core.domain.heartbeats import Heartbeat

PYTHON = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
CREDENTIAL = "planted-heartbeat-credential-0123456789abcdef"
TOKEN = "123456789:AAplanted-bot-token-0123456789abcdefgh"
COMMIT = "63f162e9302a66344772ab23653789f701c7bcf9"
SHOW = "ActiveState=active\nSubState=running\nNRestarts=2\nResult=success\nExecMainStatus=0\n"
CONFLICT_LINE = (
    "GrammyError: Call to 'getUpdates' failed! (409: Conflict: terminated by other "
    "getUpdates request; make sure that only one bot instance is running)"
)


@dataclass
class Endpoint:
    """What the loopback server answers, and what it received."""

    heartbeat_status: int = 202
    #: Bot API method -> (HTTP status, JSON body)
    telegram: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    posts: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    bot_calls: list[str] = field(default_factory=list)


def _handler(endpoint: Endpoint) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            endpoint.posts.append((self.path, dict(self.headers.items()), body))
            self._answer(endpoint.heartbeat_status, {"accepted": True})

        def do_GET(self) -> None:
            endpoint.bot_calls.append(self.path)
            method = self.path.rsplit("/", 1)[-1]
            if not self.path.startswith(f"/bot{TOKEN}/"):
                self._answer(404, {"ok": False, "error_code": 404, "description": "Not Found"})
                return
            self._answer(*endpoint.telegram.get(method, (200, {"ok": True, "result": {}})))

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def endpoint() -> Iterator[tuple[Endpoint, str]]:
    """The loopback server: (its state, its base URL)."""
    state = Endpoint(
        telegram={
            "getMe": (200, {"ok": True, "result": {"id": 1, "is_bot": True}}),
            "getWebhookInfo": (200, {"ok": True, "result": {"url": "", "pending_update_count": 0}}),
        }
    )
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield state, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


@dataclass
class Box:
    """A VPS's files under a temporary root, and the agent rendered for them."""

    root: Path
    script: Path
    url: str

    def path(self, name: str) -> Path:
        return self.root / name

    def env(self, **values: str) -> None:
        lines = "".join(f"{key}='{value}'\n" for key, value in values.items())
        self.path("etc/agent.env").write_text(lines)

    def show(self, text: str, status: int = 0) -> None:
        self.path("show.txt").write_text(text)
        self.path("show.status").write_text(str(status))

    def journal(self, *lines: str) -> None:
        self.path("journal.txt").write_text("".join(f"{line}\n" for line in lines))

    def calls(self, program: str) -> list[list[str]]:
        log = self.path(f"{program}.calls")
        return [line.split("\t") for line in log.read_text().splitlines()] if log.exists() else []

    def state(self) -> dict[str, Any]:
        return dict(json.loads(self.path("var/agent.json").read_text()))

    def run(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [PYTHON, "-I", str(self.script)],
            env={"PATH": f"{self.root / 'bin'}:/usr/bin:/bin", "LANG": "C.UTF-8"},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )


_FAKE = """#!/bin/sh
# Note the call (tab-separated words), print what the test planted.
(IFS="$(printf '\\t')"; echo "$*") >> {root}/{name}.calls
cat {root}/{output} 2>/dev/null
exit $(cat {root}/{name}.status 2>/dev/null || echo 0)
"""


@pytest.fixture
def box(tmp_path: Path, endpoint: tuple[Endpoint, str]) -> Box:
    _, base = endpoint
    for directory in ("etc", "var", "proc", "bin", "clone/.git"):
        (tmp_path / directory).mkdir(parents=True)
    constants = agent_constants(vps.Layout("rachel")) | {
        "ENV_PATH": str(tmp_path / "etc/agent.env"),
        "STATE_PATH": str(tmp_path / "var/agent.json"),
        "BOT_ENV": str(tmp_path / "clone/.env"),
        "HEAD_PATH": str(tmp_path / "clone/.git/HEAD"),
        "PROC": str(tmp_path / "proc"),
        "DISK": str(tmp_path),
    }
    script = tmp_path / "rachel-cloud-agent"
    script.write_text(render(AGENT, constants))
    for name, output in (("systemctl", "show.txt"), ("journalctl", "journal.txt")):
        fake = tmp_path / "bin" / name
        fake.write_text(_FAKE.format(root=tmp_path, name=name, output=output))
        fake.chmod(0o755)
    made = Box(tmp_path, script, f"{base}/heartbeats/7")
    made.env(
        RACHEL_HEARTBEAT_URL=made.url,
        RACHEL_HEARTBEAT_CREDENTIAL=CREDENTIAL,
        RACHEL_TELEGRAM_API_URL=base,
    )
    (tmp_path / "clone/.env").write_text(f"TELEGRAM_BOT_TOKEN={TOKEN}\nOWNER_TELEGRAM_USER_ID=42\n")
    (tmp_path / "clone/.git/HEAD").write_text(f"{COMMIT}\n")
    (tmp_path / "proc/uptime").write_text("1234.56 4321.00\n")
    (tmp_path / "proc/meminfo").write_text(
        "MemTotal:        3915468 kB\nMemFree:          123456 kB\n"
        "MemAvailable:    2000000 kB\nHugePages_Total:       0\n"
    )
    made.show(SHOW)
    made.journal("Rachel8 started", "polling for updates")
    return made


def _sent(endpoint: Endpoint) -> Heartbeat:
    assert len(endpoint.posts) == 1, endpoint.posts
    return heartbeats.decode(endpoint.posts[0][2])


def _quiet(done: subprocess.CompletedProcess[str]) -> None:
    """Nothing secret in what the agent printed."""
    for secret in (CREDENTIAL, TOKEN):
        assert secret not in done.stdout + done.stderr


def test_a_heartbeat_reports_the_box_with_the_bearer_credential(
    box: Box, endpoint: tuple[Endpoint, str]
) -> None:
    state, _ = endpoint
    before = time.time()
    done = box.run()
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    path, headers, _ = state.posts[0]
    assert path == "/heartbeats/7"
    assert headers["Authorization"] == f"Bearer {CREDENTIAL}"
    assert headers["Content-Type"] == "application/json"
    sent = _sent(state)
    assert before * 1000 - 1 <= sent.seq <= time.time() * 1000
    assert before <= sent.sent_at <= time.time()
    assert sent.agent == vps.AGENT_VERSION
    assert sent.service == heartbeats.ServiceReport("active", "running", 2, "success", 0)
    assert sent.commit == COMMIT
    assert sent.uptime_seconds == 1234.56
    disk = os.statvfs(box.root)
    assert sent.disk_total_bytes == disk.f_blocks * disk.f_frsize
    assert 0 < sent.disk_free_bytes <= sent.disk_total_bytes
    assert (sent.memory_available_bytes, sent.memory_total_bytes) == (
        2000000 * 1024,
        3915468 * 1024,
    )
    assert sent.telegram == heartbeats.TelegramReport("ok", False, 0)
    assert state.bot_calls == [f"/bot{TOKEN}/getMe", f"/bot{TOKEN}/getWebhookInfo"]
    # It asked systemd exactly for the contract's properties of Rachel8's unit, then when
    # its process last started (the 409 lines are counted from then at the latest).
    assert box.calls("systemctl") == [
        ["show", vps.SERVICE_UNIT, *(f"--property={p}" for p in vps.SERVICE_PROPERTIES)],
        ["show", vps.SERVICE_UNIT, "--timestamp=unix", "--property=ExecMainStartTimestamp"],
    ]
    _quiet(done)


def test_the_sequence_rises_from_the_state_file_and_never_repeats(
    box: Box, endpoint: tuple[Endpoint, str]
) -> None:
    state, _ = endpoint
    assert box.run().returncode == 0
    first = _sent(state).seq
    assert box.state()["seq"] == first
    state.posts.clear()
    assert box.run().returncode == 0
    assert _sent(state).seq > first
    # A state ahead of the clock (the clock was set back): one above it.
    ahead = int(time.time() * 1000) + 10_000_000
    box.path("var/agent.json").write_text(json.dumps({"seq": ahead, "at": time.time()}))
    state.posts.clear()
    assert box.run().returncode == 0
    assert _sent(state).seq == ahead + 1
    # A lost or corrupt state file: the time in ms, above any it could have held.
    for broken in ("", "{not json", '{"seq": "x"}'):
        box.path("var/agent.json").write_text(broken)
        state.posts.clear()
        before = time.time() * 1000
        assert box.run().returncode == 0
        assert _sent(state).seq >= before - 1
        assert box.state()["seq"] == _sent(state).seq


def test_a_state_that_cannot_be_written_does_not_stop_the_heartbeat(
    box: Box, endpoint: tuple[Endpoint, str]
) -> None:
    state, _ = endpoint
    shutil.rmtree(box.path("var"))
    box.path("var").write_text("a file where the state's directory should be")
    done = box.run()
    assert done.returncode == 0, done.stderr
    assert _sent(state).seq >= 1


def test_a_revoked_token_is_unauthorized_and_the_webhook_unknown(
    box: Box, endpoint: tuple[Endpoint, str]
) -> None:
    state, _ = endpoint
    state.telegram["getMe"] = (
        401,
        {"ok": False, "error_code": 401, "description": "Unauthorized"},
    )
    assert box.run().returncode == 0
    assert _sent(state).telegram == heartbeats.TelegramReport("unauthorized", None, 0)
    assert state.bot_calls == [f"/bot{TOKEN}/getMe"]


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        # A webhook set on the bot: Rachel8's long polling gets nothing.
        (
            {"getWebhookInfo": (200, {"ok": True, "result": {"url": "https://x.example/hook"}})},
            ("ok", True),
        ),
        # Telegram failing otherwise than 401: an error, not a revoked token.
        ({"getMe": (502, {"ok": False, "error_code": 502})}, ("error", None)),
        # getMe answered, getWebhookInfo did not: whether a webhook is set is unknown.
        ({"getWebhookInfo": (500, {"ok": False, "error_code": 500})}, ("ok", None)),
    ],
)
def test_telegram_answers(
    box: Box,
    endpoint: tuple[Endpoint, str],
    answers: dict[str, tuple[int, dict[str, Any]]],
    expected: tuple[str, bool | None],
) -> None:
    state, _ = endpoint
    state.telegram.update(answers)
    done = box.run()
    assert done.returncode == 0
    telegram = _sent(state).telegram
    assert (telegram.get_me, telegram.webhook_set) == expected
    _quiet(done)


def test_an_unreachable_telegram_is_an_error(box: Box, endpoint: tuple[Endpoint, str]) -> None:
    state, _ = endpoint
    box.env(
        RACHEL_HEARTBEAT_URL=box.url,
        RACHEL_HEARTBEAT_CREDENTIAL=CREDENTIAL,
        RACHEL_TELEGRAM_API_URL="http://127.0.0.1:9",  # discard: nothing listens
    )
    done = box.run()
    assert done.returncode == 0
    assert _sent(state).telegram == heartbeats.TelegramReport("error", None, 0)
    _quiet(done)


def test_without_a_bot_token_telegram_is_unconfigured_and_not_asked(
    box: Box, endpoint: tuple[Endpoint, str]
) -> None:
    state, _ = endpoint
    box.path("clone/.env").unlink()
    assert box.run().returncode == 0
    assert _sent(state).telegram == heartbeats.TelegramReport("unconfigured", None, 0)
    assert state.bot_calls == []


def test_conflicts_are_the_409_lines_since_the_last_heartbeat(
    box: Box, endpoint: tuple[Endpoint, str]
) -> None:
    state, _ = endpoint
    box.journal(
        "Rachel8 started",
        CONFLICT_LINE,
        "    at async Bot.start (/home/rachel/rachel8/node_modules/grammy/out/bot.js:1:1)",
        "error_code: 409,",
        "getUpdates failed (409 Conflict), retrying",
        CONFLICT_LINE,
        "answered a message in 409 ms",
    )
    last = time.time() - 30
    box.path("var/agent.json").write_text(json.dumps({"seq": 5, "at": last}))
    started = time.time()
    assert box.run().returncode == 0
    assert _sent(state).telegram.conflicts == 3
    (journalctl,) = box.calls("journalctl")
    assert journalctl == [
        "-u",
        vps.SERVICE_UNIT,
        "--since",
        f"@{int(last)}",
        "-o",
        "cat",
        "--no-pager",
    ]
    # Taken: the next run counts from this one on.
    assert started <= box.state()["at"] <= time.time()


def test_a_rachel8_that_exited_on_a_409_shows_it_until_it_starts_again(
    box: Box, endpoint: tuple[Endpoint, str]
) -> None:
    state, _ = endpoint
    # It started two minutes ago, got its 409 and exited; the last heartbeat was 30 s ago.
    start = time.time() - 120
    box.show(SHOW + f"ExecMainStartTimestamp=@{start:.0f}\n")
    box.journal("Rachel8 is running. Listening for messages...", CONFLICT_LINE)
    box.path("var/agent.json").write_text(json.dumps({"seq": 5, "at": time.time() - 30}))
    assert box.run().returncode == 0
    assert _sent(state).telegram.conflicts == 1
    (journalctl,) = box.calls("journalctl")
    assert journalctl[2:4] == ["--since", f"@{int(float(f'{start:.0f}'))}"]


@pytest.mark.parametrize(
    "shown", ["ExecMainStartTimestamp=\n", "ExecMainStartTimestamp=Sat 2026-12-05 10:00:00 UTC\n"]
)
def test_without_a_start_time_it_counts_since_the_last_heartbeat(
    box: Box, endpoint: tuple[Endpoint, str], shown: str
) -> None:
    # Never started since the boot (empty), or a systemd without --timestamp=unix.
    box.show(SHOW + shown)
    last = time.time() - 30
    box.path("var/agent.json").write_text(json.dumps({"seq": 5, "at": last}))
    assert box.run().returncode == 0
    (journalctl,) = box.calls("journalctl")
    assert journalctl[2:4] == ["--since", f"@{int(last)}"]


def test_a_webhooks_409s_are_no_conflict(box: Box, endpoint: tuple[Endpoint, str]) -> None:
    state, _ = endpoint
    box.journal(
        "GrammyError: Call to 'getUpdates' failed! (409: Conflict: terminated by setWebhook "
        "request)",
        "GrammyError: Call to 'getUpdates' failed! (409: Conflict: can't use getUpdates method "
        "while webhook is active; use deleteWebhook to delete the webhook first)",
        CONFLICT_LINE,
    )
    assert box.run().returncode == 0
    assert _sent(state).telegram.conflicts == 1


def test_a_refused_heartbeat_exits_1_in_one_line_and_is_counted_again(
    box: Box, endpoint: tuple[Endpoint, str]
) -> None:
    state, _ = endpoint
    state.heartbeat_status = 401
    box.journal(CONFLICT_LINE)
    last = time.time() - 30
    box.path("var/agent.json").write_text(json.dumps({"seq": 5, "at": last}))
    done = box.run()
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        f"rachel-cloud agent: heartbeat {_sent(state).seq} not taken: answered 401"
    ]
    _quiet(done)
    # The sequence is spent, but the conflicts were not reported: counted again next time.
    assert box.state() == {"seq": _sent(state).seq, "at": last}


def test_an_unreachable_control_plane_exits_1_without_retrying(box: Box) -> None:
    box.env(
        RACHEL_HEARTBEAT_URL="http://127.0.0.1:9/heartbeats/7",
        RACHEL_HEARTBEAT_CREDENTIAL=CREDENTIAL,
    )
    started = time.monotonic()
    done = box.run()
    assert done.returncode == 1
    (line,) = done.stderr.splitlines()
    assert line.startswith("rachel-cloud agent: heartbeat ") and "not taken: " in line
    assert "Connection refused" in line
    assert time.monotonic() - started < 10  # one attempt
    _quiet(done)


def test_without_its_env_file_the_agent_says_so(box: Box, endpoint: tuple[Endpoint, str]) -> None:
    state, _ = endpoint
    box.path("etc/agent.env").unlink()
    done = box.run()
    assert (done.returncode, done.stderr.strip()) == (
        1,
        f"rachel-cloud agent: no heartbeat URL or credential in {box.path('etc/agent.env')}",
    )
    assert state.posts == []


def test_what_it_cannot_read_is_reported_as_unknown(
    box: Box, endpoint: tuple[Endpoint, str]
) -> None:
    state, _ = endpoint
    box.show("", status=1)  # systemctl failed
    box.path("clone/.git/HEAD").write_text("ref: refs/heads/main\n")  # not detached
    assert box.run().returncode == 0
    sent = _sent(state)
    assert (sent.service, sent.commit) == (None, None)
    state.posts.clear()
    # A unit that never ran: systemd prints empty numbers.
    box.show("ActiveState=inactive\nSubState=dead\nNRestarts=\nResult=success\nExecMainStatus=\n")
    box.path("clone/.git/HEAD").unlink()
    assert box.run().returncode == 0
    sent = _sent(state)
    assert sent.service == heartbeats.ServiceReport("inactive", "dead", 0, "success", 0)
    assert sent.commit is None

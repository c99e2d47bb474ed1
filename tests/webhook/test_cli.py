"""`rachel-cloud webhook-sign` and `rachel-cloud web`, run as real subprocesses."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import msgspec

from core.domain.deploy_order import check_order
from core.security.signing import WebhookVerifier
from tests.webhook.conftest import NEW_SECRET, OLD_SECRET
from webhook.services import deploy_input
from webhook.structs import DeployRequest

REPO = Path(__file__).resolve().parents[2]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RACHEL_", "HCLOUD_", "DATABASE_URL", "REDIS_URL"))
    }
    env.update(PYTHONPATH=str(REPO), RACHEL_DATA_DIR=str(tmp_path / "data"), **extra)
    return env


def _run(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: PLW1510 - the tests read returncode
        [sys.executable, "-m", "cli.main", *args],
        cwd=tmp_path,
        env=_env(tmp_path, **env),
        capture_output=True,
        text=True,
        timeout=60,
    )


def _headers(stdout: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in stdout.strip().splitlines())


def test_webhook_sign_prints_headers_that_verify(tmp_path: Path) -> None:
    payload = tmp_path / "deploy.json"
    payload.write_bytes(b'{"customer_id": "cus_1"}\n')
    out = _run(
        tmp_path,
        "webhook-sign",
        str(payload),
        "--id",
        "msg_cli",
        RACHEL_WEBHOOK_SECRETS=f"{OLD_SECRET},{NEW_SECRET}",
    )
    assert out.returncode == 0, out.stderr
    headers = _headers(out.stdout)
    assert headers["webhook-id"] == "msg_cli"
    # Signed with the newest secret: verifies with it alone, not with the old one alone.
    assert (
        WebhookVerifier([NEW_SECRET]).verify(payload.read_bytes(), headers).webhook_id == "msg_cli"
    )
    assert NEW_SECRET not in out.stdout + out.stderr
    bad = WebhookVerifier([OLD_SECRET])
    try:
        bad.verify(payload.read_bytes(), headers)
    except Exception as exc:
        assert getattr(exc, "code", "") == "invalid_signature"
    else:
        raise AssertionError("the old secret must not verify a signature made with the new one")


def test_webhook_sign_uses_the_development_secret_by_default(tmp_path: Path) -> None:
    payload = tmp_path / "p.json"
    payload.write_text("{}")
    first = _run(tmp_path, "webhook-sign", str(payload), "--format", "json")
    assert first.returncode == 0, first.stderr
    secret = (tmp_path / "data" / "webhook.secret").read_text().strip()
    headers = json.loads(first.stdout)
    assert WebhookVerifier([secret]).verify(b"{}", headers)
    curl = _run(tmp_path, "webhook-sign", str(payload), "--format", "curl")
    assert curl.stdout.startswith("curl ") and "--data-binary" in curl.stdout


def test_webhook_sign_example_is_a_deploy_rachel8_accepts(tmp_path: Path) -> None:
    out = _run(tmp_path, "webhook-sign", "--example")
    assert out.returncode == 0, out.stderr
    request = msgspec.json.decode(out.stdout.encode(), type=DeployRequest)
    order = check_order(deploy_input(request), now_ms=int(time.time() * 1000))
    assert order.owner_telegram_user_id > 0
    assert "claudeAiOauth" in order.claude_credentials


def test_webhook_sign_bad_input_is_a_message_not_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text("{nope")
    cases = [
        (("webhook-sign",), {}, "or --example"),
        (("webhook-sign", str(tmp_path / "missing.json")), {}, "No such file"),
        (("webhook-sign", str(tmp_path / "bad.json")), {}, "is not a JSON document"),
        (
            ("webhook-sign", str(tmp_path / "bad.json")),
            {"RACHEL_WEBHOOK_SECRETS": "whsec_!!"},
            "is not a JSON document",
        ),
    ]
    (tmp_path / "ok.json").write_text("{}")
    cases.append(
        (
            ("webhook-sign", str(tmp_path / "ok.json")),
            {"RACHEL_WEBHOOK_SECRETS": "whsec_!!"},
            "RACHEL_WEBHOOK_SECRETS",
        )
    )
    for args, env, message in cases:
        out = _run(tmp_path, *args, **env)
        assert out.returncode != 0
        assert message in out.stderr
        assert "Traceback" not in out.stderr + out.stdout


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_web_command_serves_the_app(tmp_path: Path, redis_server_url: str) -> None:
    assert _run(tmp_path, "db", "upgrade").returncode == 0
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "web", "--host", "127.0.0.1", "--port", str(port)],
        cwd=tmp_path,
        env=_env(tmp_path, REDIS_URL=redis_server_url),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None, proc.communicate()[0]
                assert time.monotonic() < deadline, "rachel-cloud web did not start"
                time.sleep(0.1)
        assert ready.status_code == 200, ready.text
        schema = httpx.get(f"http://127.0.0.1:{port}/schema/openapi.json", timeout=5)
        assert "/webhooks/deploy" in schema.json()["paths"]
    finally:
        proc.terminate()
        output = proc.communicate(timeout=15)[0]
    # A graceful stop: uvicorn finishes, then re-raises SIGTERM (exit status -15).
    assert proc.returncode in (0, -15), output
    assert "Shutting down" in output
    assert "Traceback" not in output

"""`rachel-cloud deploy --new-customer` end to end: signed webhooks to a served web app.

The command runs as a real process against the web app served on loopback
(the data directory's development webhook secret and API key, as on `up`);
workers drain here, the simulated VPS boots, calls back and gets its secrets.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from core.domain.lifecycle import Status
from core.store.models import Customer, Server
from tests import factories
from tests.integration.test_cli import REPO
from tests.pipeline import rachel8_vps
from tests.pipeline.harness import Stack, WebServer


def _deploy(stack: Stack, *args: str) -> subprocess.Popen[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RACHEL_", "HCLOUD_", "DATABASE_URL", "REDIS_URL"))
    }
    # Only what a developer's shell would hold: the data directory (its secrets).
    env.update(RACHEL_DATA_DIR=str(stack.settings.data_dir), PYTHONPATH=str(REPO))
    return subprocess.Popen(
        [sys.executable, "-m", "cli.main", "deploy", *args],
        cwd=stack.settings.data_dir.parent,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _customer_server(external_id: str) -> Server | None:
    found: Server | None = (
        Server.select().join(Customer).where(Customer.external_id == external_id).first()
    )
    return found


def _finish(
    stack: Stack, proc: subprocess.Popen[str], until: Callable[[], bool]
) -> tuple[str, str]:
    """Run the workers until `until()` holds, then the command's exit; its output."""
    try:
        stack.drain(until, timeout=60, what="the CLI's deploy")
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, (stdout, stderr)
    return stdout, stderr


def test_deploy_new_customer_through_the_web_app_until_ready(
    served: Stack, web: WebServer, tmp_path: Path
) -> None:
    credentials = tmp_path / "credentials.json"
    credentials.write_text(factories.claude_document("cli"))
    token = factories.bot_token("cli")
    proc = _deploy(
        served,
        "--new-customer", "cus_cli_1",
        "--email", "ada@example.com",
        "--telegram-bot-token", token,
        "--owner-telegram-user-id", str(factories.OWNER_ID),
        "--claude-credentials", str(credentials),
        "--url", web.url,
        "--wait",
        "--timeout", "60",
    )  # fmt: skip

    def ready() -> bool:
        server = _customer_server("cus_cli_1")
        return server is not None and server.status == Status.READY

    stdout, stderr = _finish(served, proc, ready)
    customer = Customer.get(Customer.external_id == "cus_cli_1")
    assert customer.email == "ada@example.com"
    server = Server.get(Server.customer == customer)
    assert "customer cus_cli_1: subscription active" in stdout
    assert f"server {server.id} ready" in stdout
    # What was given reached Rachel8 on the VPS, through the public API only.
    machine = served.sim.vps(server.provider_id or 0)
    assert machine is not None
    env = rachel8_vps.env(machine)
    assert env["TELEGRAM_BOT_TOKEN"] == token
    assert env["OWNER_TELEGRAM_USER_ID"] == str(factories.OWNER_ID)
    assert token not in stdout + stderr, "a secret was printed"


def test_deploy_new_customer_with_fake_secrets_and_a_refusal(served: Stack, web: WebServer) -> None:
    proc = _deploy(served, "--new-customer", "cus_cli_2", "--fake-secrets", "--url", web.url)
    stdout, _ = _finish(served, proc, lambda: _customer_server("cus_cli_2") is not None)
    server = _customer_server("cus_cli_2")
    assert server is not None
    assert f"server {server.id} deploying" in stdout
    assert f"rachel-cloud server show {server.id} --events" in stdout
    # The web app's refusal is `error: ...` naming its code, exit 2: an email it refuses.
    refused = _deploy(
        served, "--new-customer", "cus_cli_3", "--fake-secrets", "--email", "nope", "--url", web.url
    )
    _, err = refused.communicate(timeout=30)
    assert refused.returncode == 2, err
    assert err.startswith("error: ") and "answered 4" in err and "Traceback" not in err

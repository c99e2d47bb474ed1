"""`rachel-cloud deploy`: for an existing customer, or a new one through the web app.

`deploy CUSTOMER` is the operator's action (the customer exists and pays).
`deploy --new-customer ID ...` sends what a billing system would: a signed
subscription webhook (active), then a signed deploy webhook, over HTTP to the
web app, signed with the configured secret (the data directory's development
secret on the embedded defaults). Nothing bypasses the public API, so it is
the way to try the whole path by hand against `rachel-cloud up`.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TextIO

import click
import httpx

from cli.common import actor, operator_option
from cli.demo import DemoError, await_deploy, demo_deploy, get_status, send_signed
from core.cloud.rachel8 import ConfigError
from core.domain.deploy_order import DeployInput, OAuthTriple, check_order
from core.platform.dev_secrets import api_keys, webhook_secrets
from core.platform.settings import Settings
from core.platform.settings_parsing import format_duration

#: The request's fields, as the options that give them (for the errors).
OPTION_OF_FIELD = {
    "telegram_bot_token": "--telegram-bot-token",
    "owner_telegram_user_id": "--owner-telegram-user-id",
    "claude_credentials": "--claude-credentials",
    "claude_oauth": "--claude-credentials",
    "email": "--email",
    "customer_id": "--new-customer",
}
FAKE_HELP = "Fill in the secrets not given with well-formed fakes (the simulator accepts them)."
URL_HELP = "The web app to send to (default: http://RACHEL_WEB_HOST:RACHEL_WEB_PORT)."
WAIT_HELP = "Wait until the new server is ready (exit 0) or failed (error)."
TIMEOUT = click.FloatRange(1, 3600)
TIMEOUT_HELP = "Seconds to wait for the deploy to be carried out, and with --wait for the server."
#: Where a server's wait ends.
FINAL_STATUSES = ("ready", "failed", "deleted")


class DeployCommandError(DemoError):
    """The new-customer deploy cannot be sent, or did not end well."""

    code = "deploy_failed"


def default_url(settings: Settings) -> str:
    """The local web app: RACHEL_WEB_HOST:RACHEL_WEB_PORT (a wildcard bind means loopback)."""
    host = settings.web_host
    if host in ("0.0.0.0", "::", ""):  # noqa: S104 - reading a bind address, not binding
        host = "127.0.0.1"
    return f"http://{host}:{settings.web_port}"


def _payload(
    customer_id: str,
    *,
    email: str | None,
    bot_token: str | None,
    owner_id: int | None,
    credentials: str | None,
    fake_secrets: bool,
) -> dict[str, object]:
    """The deploy request, checked with Rachel8's rules before it is sent.

    Raises:
        click.UsageError: a value is missing (and no --fake-secrets) or refused.
    """
    fake = demo_deploy(customer_id, 1)
    missing = [
        option
        for option, value in (
            ("--telegram-bot-token", bot_token),
            ("--owner-telegram-user-id", owner_id),
            ("--claude-credentials", credentials),
        )
        if value is None
    ]
    if missing and not fake_secrets:
        raise click.UsageError(
            f"--new-customer needs {', '.join(missing)} (or --fake-secrets for well-formed "
            "fake values, which the simulator accepts)"
        )
    payload: dict[str, object] = {
        "customer_id": customer_id,
        "email": email or fake["email"],
        "telegram_bot_token": bot_token if bot_token is not None else fake["telegram_bot_token"],
        "owner_telegram_user_id": (
            owner_id if owner_id is not None else fake["owner_telegram_user_id"]
        ),
    }
    if credentials is not None:
        payload["claude_credentials"] = credentials
    else:
        payload["claude_oauth"] = fake["claude_oauth"]
    try:
        check_order(
            DeployInput(
                customer_id=customer_id,
                email=str(payload["email"]),
                telegram_bot_token=str(payload["telegram_bot_token"]),
                owner_telegram_user_id=int(str(payload["owner_telegram_user_id"])),
                claude_credentials=credentials,
                claude_oauth=None if credentials is not None else _fake_oauth(fake),
            ),
            now_ms=int(time.time() * 1000),
        )
    except ConfigError as exc:
        field = str(exc).split(":", 1)[0].split(".", 1)[0]
        option = OPTION_OF_FIELD.get(field)
        raise click.UsageError(f"{option}: {exc}" if option else str(exc)) from None
    return payload


def _fake_oauth(fake: dict[str, object]) -> OAuthTriple:
    oauth = fake["claude_oauth"]
    assert isinstance(oauth, dict)
    return OAuthTriple(
        str(oauth["access_token"]), str(oauth["refresh_token"]), int(oauth["expires_at"])
    )


def _wait_final(
    client: httpx.Client, url: str, server_id: int, api_key: str, timeout: float
) -> dict[str, object]:
    """Follow `GET /api/servers/{id}` until the server is ready, failed or deleted."""
    deadline = time.monotonic() + timeout
    status_url = f"{url}/api/servers/{server_id}"
    while True:
        found = get_status(client, status_url, api_key)
        if found["status"] in FINAL_STATUSES:
            return found
        if time.monotonic() > deadline:
            raise DeployCommandError(
                f"server {server_id} is still {found['status']} after "
                f"{format_duration(timeout)}; follow it with `rachel-cloud server show "
                f"{server_id} --events`"
            )
        time.sleep(0.2)


def deploy_new_customer(
    settings: Settings,
    payload: dict[str, object],
    *,
    url: str,
    wait: bool,
    timeout: float,
) -> None:
    """Subscribe and deploy through the web app, printing what happens.

    Raises:
        DemoError: the web app refused a webhook, did not answer, or the deploy failed.
    """
    secret = webhook_secrets(settings)[-1]
    api_key = api_keys(settings)[0]
    customer_id = str(payload["customer_id"])
    subscription = {
        "customer_id": customer_id,
        "status": "active",
        "occurred_at": datetime.now(UTC).isoformat(),
        "email": payload["email"],
    }
    with httpx.Client(timeout=30.0) as client:
        send_signed(client, f"{url}/webhooks/subscription", secret, subscription)
        click.echo(f"customer {customer_id}: subscription active")
        answer = send_signed(client, f"{url}/webhooks/deploy", secret, payload)
        click.echo(f"deploy {answer['webhook_id']} accepted; outcome at {answer['status_url']}")
        try:
            server_id = await_deploy(client, answer, api_key, timeout=timeout)
        except DemoError as exc:
            raise DeployCommandError(
                f"{exc} (are workers running? `rachel-cloud jobs` shows them)"
            ) from None
        click.echo(
            f"server {server_id} deploying; follow it with "
            f"`rachel-cloud server show {server_id} --events`"
        )
        if not wait:
            return
        final = _wait_final(client, url, server_id, api_key, timeout)
    if final["status"] != "ready":
        raise DeployCommandError(
            f"server {server_id} {final['status']}"
            + (f" in {final['failed_phase']}" if final.get("failed_phase") else "")
            + (f": {final['last_error']}" if final.get("last_error") else "")
        )
    took = final.get("provisioning_seconds")
    took_text = f" in {float(str(took)):.1f}s" if took is not None else ""
    click.echo(f"server {server_id} ready{took_text} at {final.get('ipv4') or 'no address'}")


@click.command("deploy")
@click.argument("customer", required=False)
@click.option(
    "--new-customer",
    metavar="ID",
    default=None,
    help="Subscribe and deploy a new customer through the web app, as signed webhooks.",
)
@click.option("--email", default=None, help="The new customer's email (default: a fake one).")
@click.option(
    "--telegram-bot-token", default=None, help="The customer's bot token (Rachel8's form)."
)
@click.option(
    "--owner-telegram-user-id",
    type=click.IntRange(min=1),
    default=None,
    help="The Telegram user id of the bot's owner (the only user it answers).",
)
@click.option(
    "--claude-credentials",
    type=click.File("r"),
    default=None,
    help="The Claude credentials: a ~/.claude/.credentials.json file (`-` reads stdin).",
)
@click.option("--fake-secrets", is_flag=True, help=FAKE_HELP)
@click.option("--url", default=None, help=URL_HELP)
@click.option("--wait/--no-wait", default=False, help=WAIT_HELP)
@click.option("--timeout", type=TIMEOUT, default=60, show_default=True, help=TIMEOUT_HELP)
@operator_option
def deploy_command(
    customer: str | None,
    *,
    new_customer: str | None,
    email: str | None,
    telegram_bot_token: str | None,
    owner_telegram_user_id: int | None,
    claude_credentials: TextIO | None,
    fake_secrets: bool,
    url: str | None,
    wait: bool,
    timeout: float,
    operator: str | None,
) -> None:
    """Deploy a server for CUSTOMER, or for a --new-customer through the web app.

    CUSTOMER is an existing customer's external id (with an active
    subscription). --new-customer ID sends a signed subscription webhook and a
    signed deploy webhook to the web app, as a billing system would, with the
    secrets given as options; for example, against `rachel-cloud up`:

    \b
      rachel-cloud deploy --new-customer cus_test1 --fake-secrets --wait
      rachel-cloud deploy --new-customer cus_ada --email ada@example.com \\
        --telegram-bot-token 7123456789:AAH... --owner-telegram-user-id 123456789 \\
        --claude-credentials ~/.claude/.credentials.json
    """
    if (customer is None) == (new_customer is None):
        raise click.UsageError("give CUSTOMER (an existing customer) or --new-customer ID")
    if customer is not None:
        new_only: dict[str, object] = {
            "--email": email,
            "--telegram-bot-token": telegram_bot_token,
            "--owner-telegram-user-id": owner_telegram_user_id,
            "--claude-credentials": claude_credentials,
            "--url": url,
            "--fake-secrets": fake_secrets or None,
        }
        given = [name for name, value in new_only.items() if value is not None]
        if given:
            raise click.UsageError(f"{', '.join(given)} only go with --new-customer")
        from cli.common import runtime
        from jobs.operator import deploy

        rt = runtime("cli")
        click.echo(deploy(rt.redis, rt.settings, customer, actor(operator)).message)
        return
    assert new_customer is not None
    settings = Settings.load()
    payload = _payload(
        new_customer,
        email=email,
        bot_token=telegram_bot_token,
        owner_id=owner_telegram_user_id,
        credentials=claude_credentials.read() if claude_credentials is not None else None,
        fake_secrets=fake_secrets,
    )
    deploy_new_customer(
        settings,
        payload,
        url=(url or default_url(settings)).rstrip("/"),
        wait=wait,
        timeout=timeout,
    )

"""`rachel-cloud webhook-sign FILE`: the Standard Webhooks headers that sign a payload.

For integrators testing their side: sign a JSON payload with the configured
secret (the last of RACHEL_WEBHOOK_SECRETS, or the development secret) and
send exactly the file's bytes with these headers. `--example` prints a deploy
payload with every field Rachel8 needs (fake values that pass its rules) to
start from.
"""

from __future__ import annotations

import json
import shlex
from datetime import UTC, datetime
from typing import BinaryIO

import click

from cli.demo import demo_deploy
from core.platform.dev_secrets import webhook_secrets
from core.platform.settings import Settings
from core.security.signing import sign


@click.command("webhook-sign")
@click.argument("file", type=click.File("rb"), required=False)
@click.option(
    "--example",
    is_flag=True,
    help="Print an example deploy payload (fake values Rachel8 accepts) instead, and exit.",
)
@click.option(
    "--id", "webhook_id", default=None, help="webhook-id to use (default: a fresh msg_... id)."
)
@click.option(
    "--timestamp",
    type=click.IntRange(0, 2**33),
    default=None,
    help="Unix time to sign at (default: now; the app accepts +-5 minutes).",
)
@click.option(
    "--format",
    "output",
    type=click.Choice(["headers", "json", "curl"]),
    default="headers",
    show_default=True,
    help="How to print the headers.",
)
@click.option(
    "--url",
    default=None,
    help="Target URL for --format curl (default: RACHEL_PUBLIC_URL/webhooks/deploy).",
)
def webhook_sign_command(
    file: BinaryIO | None,
    *,
    example: bool,
    webhook_id: str | None,
    timestamp: int | None,
    output: str,
    url: str | None,
) -> None:
    """Print the headers that sign FILE (a JSON payload; `-` reads stdin).

    Send the file's exact bytes (curl --data-binary @FILE): any change,
    even a trailing newline, breaks the signature. For example:

    \b
      rachel-cloud webhook-sign --example > deploy.json
      rachel-cloud webhook-sign deploy.json --format curl | sh

    A deploy needs customer_id, email, telegram_bot_token (Rachel8's pattern),
    owner_telegram_user_id (the owner's Telegram user id), and the Claude
    credentials as claude_oauth {access_token, refresh_token, expires_at in ms}
    or claude_credentials (the .credentials.json text); speech_to_text
    {provider: groq|openai, api_key} is optional.
    """
    if example:
        click.echo(json.dumps(demo_deploy("cus_example", 1), indent=2))
        return
    if file is None:
        raise click.UsageError("give FILE (a JSON payload, `-` for stdin), or --example")
    body = file.read()
    try:
        json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"{file.name} is not a JSON document: {exc}") from None
    settings = Settings.load()
    secret = webhook_secrets(settings)[-1]
    when = datetime.fromtimestamp(timestamp, tz=UTC) if timestamp is not None else None
    try:
        headers = sign(secret, body, webhook_id=webhook_id, timestamp=when)
    except ValueError as exc:
        raise click.ClickException(f"cannot sign: {exc}") from None
    if output == "json":
        click.echo(json.dumps(headers, indent=2))
    elif output == "curl":
        target = url or f"{settings.public_url}/webhooks/deploy"
        parts = ["curl", "-sS", "-X", "POST", target, "-H", "content-type: application/json"]
        for name, value in headers.items():
            parts += ["-H", f"{name}: {value}"]
        parts += ["--data-binary", f"@{file.name}"]
        click.echo(shlex.join(parts))
    else:
        for name, value in headers.items():
            click.echo(f"{name}: {value}")

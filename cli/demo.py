"""Demo traffic: customers deployed through the web app, the way real traffic comes.

Each demo customer gets a signed subscription webhook (active) and a signed
deploy webhook, sent over HTTP to `rachel-cloud web`. The secrets are
well-formed fakes that pass every rule Rachel8 applies (a bot token of its
pattern, a positive owner id, Claude credentials that expire in eight hours),
so the web app accepts them, and the simulator's Telegram knows the token;
nothing here bypasses the public API.
"""

from __future__ import annotations

import json
import secrets
import statistics
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from core.errors import RachelError
from core.security.signing import sign
from core.store.models import Customer, Server

DEMO_PREFIX = "demo-"


class DemoError(RachelError):
    """The web app refused or did not answer a webhook sent by the CLI (demo or deploy)."""

    code = "demo_error"


#: How long the demo's Claude credentials are valid (the deploy refuses expired ones).
CREDENTIALS_VALID_MS = 8 * 3600 * 1000


def demo_deploy(customer_id: str, index: int) -> dict[str, object]:
    """A deploy request with fresh, well-formed fake values Rachel8 would accept."""
    return {
        "customer_id": customer_id,
        "email": f"{customer_id}@demo.rachel-cloud.invalid",
        # Rachel8: at least 8 digits, a colon, at least 35 of A-Z a-z 0-9 _ -.
        "telegram_bot_token": f"{70_000_000 + index}:{secrets.token_urlsafe(30)[:35]}",
        "owner_telegram_user_id": 100_000_000 + index,
        "claude_oauth": {
            "access_token": "sk-ant-oat01-demo-" + secrets.token_urlsafe(24),
            "refresh_token": "sk-ant-ort01-demo-" + secrets.token_urlsafe(24),
            "expires_at": int(time.time() * 1000) + CREDENTIALS_VALID_MS,
        },
    }


def demo_payloads(index: int) -> tuple[dict[str, object], dict[str, object]]:
    """(subscription event, deploy request) of demo customer number `index`."""
    customer_id = f"{DEMO_PREFIX}{index:04d}-{secrets.token_hex(2)}"
    subscription: dict[str, object] = {
        "customer_id": customer_id,
        "status": "active",
        "occurred_at": datetime.now(UTC).isoformat(),
        "email": f"{customer_id}@demo.rachel-cloud.invalid",
    }
    return subscription, demo_deploy(customer_id, index)


def send_signed(
    client: httpx.Client, url: str, secret: str, payload: dict[str, object]
) -> dict[str, object]:
    """POST `payload` signed with `secret`; the decoded answer.

    Raises:
        DemoError: a non-2xx answer or no answer.
    """
    body = json.dumps(payload).encode()
    headers = {"content-type": "application/json", **sign(secret, body)}
    try:
        response = client.post(url, content=body, headers=headers)
    except httpx.HTTPError as exc:
        raise DemoError(f"{url}: no answer ({exc}); is the web app running there?") from exc
    if response.status_code >= 300:
        raise DemoError(f"{url} answered {response.status_code}: {refusal(response)}")
    answer: dict[str, object] = response.json()
    return answer


def refusal(response: httpx.Response) -> str:
    """The web app's error answer as one line: `code: message (field ...)`."""
    try:
        error = response.json()["error"]
        text = f"{error['code']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        return response.text[:300]
    if error.get("field") and str(error["field"]) not in text:
        text += f" (field {error['field']})"
    return text


def get_status(client: httpx.Client, url: str, api_key: str) -> dict[str, Any]:
    """GET one of the status API's documents.

    Raises:
        DemoError: no answer, or not 200.
    """
    try:
        response = client.get(url, headers={"X-API-Key": api_key})
    except httpx.HTTPError as exc:
        raise DemoError(f"{url}: no answer ({exc}); is the web app running there?") from exc
    if response.status_code != 200:
        raise DemoError(f"{url} answered {response.status_code}: {refusal(response)}")
    found: dict[str, Any] = response.json()
    return found


def await_deploy(
    client: httpx.Client, answer: dict[str, object], api_key: str, timeout: float = 60.0
) -> int:
    """Follow a deploy's `status_url` until it is carried out; the customer's server id.

    Raises:
        DemoError: the deploy was refused or failed, or was not carried out in time.
    """
    url = str(answer["status_url"])
    deadline = time.monotonic() + timeout
    while True:
        outcome = get_status(client, url, api_key)
        if outcome["state"] == "done":
            return int(outcome["server_id"])
        if outcome["state"] != "accepted":
            raise DemoError(f"deploy {outcome['webhook_id']} {outcome['state']}: {outcome}")
        if time.monotonic() > deadline:
            raise DemoError(f"deploy {outcome['webhook_id']} not carried out in {timeout:g} s")
        time.sleep(0.05)


def deploy_demo_customers(base_url: str, secret: str, api_key: str, count: int) -> list[int]:
    """Subscribe and deploy `count` demo customers; return their server ids."""
    answers = []
    with httpx.Client(timeout=30.0) as client:
        for index in range(1, count + 1):
            subscription, deploy = demo_payloads(index)
            send_signed(client, f"{base_url}/webhooks/subscription", secret, subscription)
            answers.append(send_signed(client, f"{base_url}/webhooks/deploy", secret, deploy))
        return [await_deploy(client, answer, api_key) for answer in answers]


@dataclass(frozen=True)
class Timing:
    """A server's phase durations (seconds; None where it did not get there)."""

    server_id: int
    customer: str
    status: str
    queued: float | None
    creating: float | None
    cloud_init: float | None
    injecting: float | None
    total: float | None
    last_error: str | None


def _span(start: datetime | None, end: datetime | None) -> float | None:
    return (end - start).total_seconds() if start and end else None


def timings(server_ids: list[int]) -> list[Timing]:
    """Phase timings of the given servers, from their timestamps."""
    rows = []
    query = Server.select(Server, Customer).join(Customer).where(Server.id.in_(server_ids))
    for s in query.order_by(Server.id):
        rows.append(
            Timing(
                server_id=s.id,
                customer=s.customer.external_id,
                status=s.status,
                queued=_span(s.created_at, s.creating_at),
                creating=_span(s.creating_at, s.cloud_init_at),
                cloud_init=_span(s.cloud_init_at, s.injecting_secrets_at),
                injecting=_span(s.injecting_secrets_at, s.ready_at),
                total=s.provisioning_seconds,
                last_error=s.last_error,
            )
        )
    return rows


def sla_summary(rows: list[Timing], sla_seconds: float) -> str:
    """One paragraph: how many are ready, p50/p95 and how many met the SLA."""
    ready = [r.total for r in rows if r.status == "ready" and r.total is not None]
    if not ready:
        return f"0 of {len(rows)} servers ready"
    ready.sort()
    p50 = statistics.median(ready)
    p95 = ready[min(len(ready) - 1, round(0.95 * (len(ready) - 1)))]
    met = sum(1 for t in ready if t <= sla_seconds)
    return (
        f"{len(ready)} of {len(rows)} servers ready; provisioning p50 {p50:.1f}s, "
        f"p95 {p95:.1f}s; {met} of {len(ready)} within the {sla_seconds:.0f}s SLA"
    )


def format_table(rows: list[Timing]) -> str:
    """The phase-timing table `rachel-cloud demo` prints."""

    def cell(value: float | None) -> str:
        return f"{value:.1f}s" if value is not None else "-"

    lines = [
        f"{'SERVER':>6}  {'CUSTOMER':<16} {'STATUS':<10} {'QUEUED':>7} {'CREATE':>7} "
        f"{'BOOT+INIT':>9} {'INJECT':>7} {'TOTAL':>7}"
    ]
    for r in rows:
        lines.append(
            f"{r.server_id:>6}  {r.customer[:16]:<16} {r.status:<10} {cell(r.queued):>7} "
            f"{cell(r.creating):>7} {cell(r.cloud_init):>9} {cell(r.injecting):>7} "
            f"{cell(r.total):>7}"
        )
    return "\n".join(lines)

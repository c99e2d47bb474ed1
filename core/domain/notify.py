"""Customer notifications: a small hook, with Telegram (the customer's own bot) by default.

The grace enforcer warns customers before their server is deprovisioned. It
calls a `Notifier`; which one is a setting (RACHEL_NOTIFICATIONS):

- `TelegramNotifier` sends the text with the Bot API's `sendMessage`, through
  the customer's own bot (its token, decrypted in memory only for the
  request) to the customer's chat (`Customer.telegram_chat_id`);
- `LogNotifier` only logs what would have been sent (no network configured,
  the simulator, development).

A notification never raises: failures are logged and reported in the result,
and the caller carries on. The bot token is part of the Bot API's URL, so
errors are described by their kind and status only, never by the URL.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

import httpx

from core.errors import RachelError
from core.platform.settings import Settings
from core.security.crypto import KeyRing
from core.store.models import Customer
from core.store.vault import reveal

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class Delivery:
    """What became of one notification (for the Event and the run summary)."""

    sent: bool
    detail: str


class Notifier(Protocol):
    """Anything that can tell a customer something."""

    def notify(self, customer: Customer, text: str) -> Delivery: ...


class LogNotifier:
    """Notifications off: log what would have been sent."""

    def notify(self, customer: Customer, text: str) -> Delivery:
        log.info(
            "customer %s: notifications are off (RACHEL_NOTIFICATIONS); not sent: %s",
            customer.external_id,
            text,
        )
        return Delivery(False, "notifications are off")


class TelegramNotifier:
    """Send through the customer's own Telegram bot (Bot API `sendMessage`)."""

    def __init__(
        self,
        keyring: KeyRing,
        api_url: str = "https://api.telegram.org",
        *,
        timeout: float = TIMEOUT_SECONDS,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.keyring = keyring
        self.api_url = api_url.rstrip("/")
        self.timeout = timeout
        self.transport = transport

    def notify(self, customer: Customer, text: str) -> Delivery:
        who = customer.external_id
        if not customer.telegram_chat_id:
            log.warning("customer %s: no Telegram chat id known; warning not sent", who)
            return Delivery(False, "no Telegram chat id known for the customer")
        try:
            token = reveal(self.keyring, customer, "telegram_bot_token")
        except RachelError as exc:
            log.error("customer %s: cannot decrypt the bot token (%s); not sent", who, exc.code)
            return Delivery(False, f"bot token unreadable ({exc.code})")
        if not token:
            log.warning("customer %s: no bot token; warning not sent", who)
            return Delivery(False, "the customer has no bot token")
        try:
            with httpx.Client(timeout=self.timeout, transport=self.transport) as client:
                response = client.post(
                    f"{self.api_url}/bot{token}/sendMessage",
                    json={"chat_id": customer.telegram_chat_id, "text": text},
                )
        except httpx.HTTPError as exc:
            # str(exc) may hold the URL, and the URL holds the token: name the kind only.
            log.warning(
                "customer %s: Telegram unreachable (%s); warning not sent", who, type(exc).__name__
            )
            return Delivery(False, f"Telegram unreachable ({type(exc).__name__})")
        if response.status_code != 200:
            description = _description(response)
            log.warning(
                "customer %s: Telegram answered %s (%s); warning not sent",
                who,
                response.status_code,
                description,
            )
            return Delivery(False, f"Telegram answered {response.status_code} ({description})")
        log.info("customer %s: warning sent through their Telegram bot", who)
        return Delivery(True, "sent through the customer's Telegram bot")


def _description(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return "no description"
    text = body.get("description") if isinstance(body, dict) else None
    return str(text)[:200] if text else "no description"


def build_notifier(settings: Settings, keyring: KeyRing) -> Notifier:
    """The notifier the settings ask for."""
    if settings.notifications_enabled:
        return TelegramNotifier(keyring, settings.telegram_api_url)
    return LogNotifier()

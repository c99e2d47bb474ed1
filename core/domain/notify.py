"""Notifications: owners through their own bot, operators through a webhook.

Owners. The grace enforcer warns customers before their server is
deprovisioned, and the health jobs tell owners when their assistant is down
and when it is back (`owner_down_text`, `OWNER_BACK_TEXT`). They call a
`Notifier`; which one is a setting (RACHEL_NOTIFICATIONS):

- `TelegramNotifier` sends the text with the Bot API's `sendMessage`, through
  the customer's own bot (its token, decrypted in memory only for the
  request; the Bot API works while Rachel8 is down) to a chat: the grace
  warning to `Customer.telegram_chat_id`, health messages to the owner
  (`owner_chat`: their Telegram user id, else that chat);
- `LogNotifier` only logs what would have been sent (no network configured,
  the simulator, development).

Operators. `OperatorAlerts` POSTs an `OperatorAlert` as JSON to
RACHEL_OPERATOR_WEBHOOK_URL (a chat webhook, an incident tool): what
happened, which server, why, and what happens next. Unset, alerts are logged
(and kept on the timeline by the caller) only.

A notification never raises: failures are logged and reported in the result,
and the caller carries on. The bot token is part of the Bot API's URL, so
errors are described by their kind and status only, never by the URL.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import httpx

from core.domain.health import Problem
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

    def notify(self, customer: Customer, text: str) -> Delivery:
        """Tell the customer in their chat (`Customer.telegram_chat_id`)."""
        ...

    def send(self, customer: Customer, chat_id: str | None, text: str) -> Delivery:
        """Tell the customer in `chat_id` through their own bot."""
        ...


class LogNotifier:
    """Notifications off: log what would have been sent."""

    def notify(self, customer: Customer, text: str) -> Delivery:
        return self.send(customer, customer.telegram_chat_id, text)

    def send(self, customer: Customer, chat_id: str | None, text: str) -> Delivery:
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
        return self.send(customer, customer.telegram_chat_id, text)

    def send(self, customer: Customer, chat_id: str | None, text: str) -> Delivery:
        who = customer.external_id
        if not chat_id:
            log.warning("customer %s: no Telegram chat id known; message not sent", who)
            return Delivery(False, "no Telegram chat id known for the customer")
        try:
            token = reveal(self.keyring, customer, "telegram_bot_token")
        except RachelError as exc:
            log.error("customer %s: cannot decrypt the bot token (%s); not sent", who, exc.code)
            return Delivery(False, f"bot token unreadable ({exc.code})")
        if not token:
            log.warning("customer %s: no bot token; message not sent", who)
            return Delivery(False, "the customer has no bot token")
        try:
            with httpx.Client(timeout=self.timeout, transport=self.transport) as client:
                response = client.post(
                    f"{self.api_url}/bot{token}/sendMessage",
                    json={"chat_id": chat_id, "text": text},
                )
        except httpx.HTTPError as exc:
            # str(exc) may hold the URL, and the URL holds the token: name the kind only.
            log.warning(
                "customer %s: Telegram unreachable (%s); message not sent", who, type(exc).__name__
            )
            return Delivery(False, f"Telegram unreachable ({type(exc).__name__})")
        if response.status_code != 200:
            description = _description(response)
            log.warning(
                "customer %s: Telegram answered %s (%s); message not sent",
                who,
                response.status_code,
                description,
            )
            return Delivery(False, f"Telegram answered {response.status_code} ({description})")
        log.info("customer %s: message sent through their Telegram bot", who)
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


# --- what owners are told -------------------------------------------------------

_DOWN = {
    Problem.SERVICE_DOWN: (
        "Your assistant is down: it stopped running on its server. We are restarting it "
        "and will tell you here when it is back."
    ),
    Problem.UNREACHABLE: (
        "Your assistant is down: its server does not answer. We are restarting the server "
        "and will tell you here when it is back."
    ),
    Problem.TOKEN_REVOKED: (
        "Your assistant cannot use its Telegram bot any more: the bot's token was revoked. "
        "Create a new token with @BotFather and enter it in your dashboard; your assistant "
        "starts again with it."
    ),
    Problem.WEBHOOK_SET: (
        "Your assistant receives no messages: a webhook was set on its Telegram bot, and "
        "Telegram now sends your messages there. Remove the webhook (the Bot API's "
        "deleteWebhook), or enter a new bot token in your dashboard."
    ),
    Problem.CONFLICT: (
        "Your assistant misses messages: another program uses the same Telegram bot token, "
        "and Telegram gives your messages to it. Stop the other program, or create a new "
        "token with @BotFather and enter it in your dashboard."
    ),
}
OWNER_BACK_TEXT = "Your assistant is back and answering again."


#: Down, while no automatic repair will run (paused, disabled, or given up for now).
_DOWN_HELD = {
    Problem.SERVICE_DOWN: (
        "Your assistant is down: it stopped running on its server. We are looking into it "
        "and will tell you here when it is back."
    ),
    Problem.UNREACHABLE: (
        "Your assistant is down: its server does not answer. We are looking into it "
        "and will tell you here when it is back."
    ),
}


def owner_down_text(problem: Problem, *, repairing: bool = True) -> str:
    """What the owner is told when their assistant is down for `problem`.

    Args:
        problem: why it is down.
        repairing: an automatic repair will run; without one, the message
            promises no restart (repair paused or disabled, the breaker open).
    """
    if not repairing and problem in _DOWN_HELD:
        return _DOWN_HELD[problem]
    return _DOWN.get(
        problem,
        "Your assistant is down. We are working on it and will tell you here when it is back.",
    )


def owner_chat(customer: Customer) -> str | None:
    """Where the owner is told about their assistant: their own Telegram user id (the
    chat they have with their bot), else the customer's chat."""
    if customer.owner_telegram_user_id:
        return str(customer.owner_telegram_user_id)
    return customer.telegram_chat_id or None


# --- operators ------------------------------------------------------------------


@dataclass(frozen=True)
class OperatorAlert:
    """What operators are told: what happened, to which server, why, what happens next.

    Attributes:
        what: a short title (`circuit breaker open`, `herd guard tripped`...).
        why: the cause, as the health decision worded it.
        next_step: what the control plane does next, or what a person must do.
        server_id, server_name: the server; None for a fleet-wide alert.
        at: when (naive UTC).
    """

    what: str
    why: str
    next_step: str
    at: datetime
    server_id: int | None = None
    server_name: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "what": self.what,
            "server_id": self.server_id,
            "server_name": self.server_name,
            "why": self.why,
            "next": self.next_step,
            "at": self.at.isoformat() + "Z",
            "text": self.line(),
        }

    def line(self) -> str:
        """One line for logs and chat tools."""
        where = (
            f"server {self.server_id} ({self.server_name or '-'})" if self.server_id else "fleet"
        )
        return f"rachel-cloud {where}: {self.what}: {self.why}; next: {self.next_step}"


class OperatorAlerts:
    """POST alerts to RACHEL_OPERATOR_WEBHOOK_URL, or only log them when it is unset."""

    def __init__(
        self,
        url: str | None,
        *,
        timeout: float = TIMEOUT_SECONDS,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.transport = transport

    def send(self, alert: OperatorAlert) -> Delivery:
        """Deliver one alert; never raises."""
        log.warning("operator alert: %s", alert.line())
        if not self.url:
            return Delivery(False, "no RACHEL_OPERATOR_WEBHOOK_URL: logged only")
        try:
            with httpx.Client(timeout=self.timeout, transport=self.transport) as client:
                response = client.post(self.url, json=alert.as_dict())
        except httpx.HTTPError as exc:
            # The URL may carry a chat tool's secret: name the kind only.
            log.warning(
                "operator alert not delivered: webhook unreachable (%s)", type(exc).__name__
            )
            return Delivery(False, f"operator webhook unreachable ({type(exc).__name__})")
        if not response.is_success:
            log.warning("operator alert not delivered: webhook answered %s", response.status_code)
            return Delivery(False, f"operator webhook answered {response.status_code}")
        return Delivery(True, "sent to the operator webhook")

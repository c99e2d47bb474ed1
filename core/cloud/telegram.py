"""Telegram's Bot API as the deploy uses it: does Telegram know this bot token (`getMe`)?

A token can match Rachel8's pattern and still be dead (revoked with
BotFather, mistyped digits): Rachel8 would then exit at start, after the
customer paid for a server. So, when RACHEL_TELEGRAM_CHECK is on, the deploy
webhook asks Telegram's `getMe` first (`TokenCheck`):

- Telegram answers `ok: false` with 401 (unknown or revoked token) or 404
  (not a token at all): the deploy is refused (`TelegramTokenRejected`, a
  `ConfigError`: 422 `telegram_token_rejected`), nothing is stored;
- Telegram cannot be asked (network, timeout, 5xx, 429, an answer that is not
  the Bot API's): the deploy goes ahead, with a warning in the log. An outage
  at Telegram must not stop customers from paying for a server; Rachel8 will
  ask again at start, and a dead token then shows as a crash-looping service;
- Telegram says the token is valid: remembered (by its hash, in this process)
  for a few minutes, so that the dashboard's retries do not ask again.

The Bot API puts the token in the URL path (`/bot<token>/getMe`), so the
token is registered for redaction before any request, and no error message
here holds the URL or the underlying exception's text: only its kind and
Telegram's status and description.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import httpx

from core.cloud.rachel8 import ConfigError
from core.errors import RachelError
from core.security.redaction import register_secret

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 5.0
#: How long a token Telegram called valid is taken as valid without asking again.
CACHE_SECONDS = 300.0
CACHE_CAPACITY = 4096
#: Telegram's answers that mean "no bot has this token".
_REJECTED = frozenset({401, 404})


class TelegramUnreachable(RachelError):
    """Telegram's Bot API could not be asked, or did not answer as the Bot API does."""

    code = "telegram_unreachable"
    transient = True


class TelegramTokenRejected(ConfigError):
    """Telegram says no bot has this token (getMe answered 401 or 404)."""

    code = "telegram_token_rejected"

    def __init__(self, status: int, description: str) -> None:
        super().__init__(
            "telegram_bot_token",
            f"Telegram does not know this bot token (getMe answered {status} "
            f"{description}); copy the token from @BotFather again",
        )


@dataclass(frozen=True)
class Bot:
    """Who a token belongs to, as `getMe` says."""

    id: int
    username: str | None


class BotApi:
    """An asynchronous client of the Bot API's `getMe`.

    Args:
        api_url: the Bot API's base URL (RACHEL_TELEGRAM_API_URL).
        timeout: seconds for connecting and for the answer.
        transport: an httpx transport (tests).
    """

    def __init__(
        self,
        api_url: str = "https://api.telegram.org",
        *,
        timeout: float = TIMEOUT_SECONDS,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.timeout = timeout
        self.transport = transport

    async def get_me(self, token: str) -> Bot:
        """The bot this token belongs to.

        Raises:
            TelegramTokenRejected: Telegram answered 401 or 404 (`ok: false`).
            TelegramUnreachable: no answer, or not a Bot API answer.
        """
        register_secret(token)
        try:
            async with httpx.AsyncClient(timeout=self.timeout, transport=self.transport) as client:
                response = await client.get(f"{self.api_url}/bot{token}/getMe")
        except httpx.HTTPError as exc:
            # Not `from exc`: httpx's errors may carry the URL, and the URL the token.
            raise TelegramUnreachable(
                f"Telegram Bot API unreachable ({type(exc).__name__})"
            ) from None
        body = _json(response)
        if body.get("ok") is True and response.status_code == 200:
            result = body.get("result")
            if isinstance(result, dict) and isinstance(result.get("id"), int):
                username = result.get("username")
                return Bot(result["id"], username if isinstance(username, str) else None)
        description = _description(body)
        if body.get("ok") is False and response.status_code in _REJECTED:
            raise TelegramTokenRejected(response.status_code, description)
        raise TelegramUnreachable(
            f"Telegram Bot API answered {response.status_code} ({description})"
        )


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _description(body: dict[str, Any]) -> str:
    text = body.get("description")
    return str(text)[:200] if text else "no description"


class Verdict(StrEnum):
    """What the check concluded about a token it did not refuse."""

    VALID = "valid"  # Telegram said so just now
    CACHED = "cached"  # Telegram said so a moment ago
    UNCHECKED = "unchecked"  # Telegram could not be asked: accepted, with a warning


class TokenCheck:
    """The deploy's bot token check: `getMe`, its policy, and a brief memory of valid tokens.

    Args:
        api: the Bot API client.
        ttl: seconds a valid answer is remembered.
        capacity: how many valid tokens are remembered at most (the oldest go first).
        clock: monotonic seconds (tests).
    """

    def __init__(
        self,
        api: BotApi,
        *,
        ttl: float = CACHE_SECONDS,
        capacity: int = CACHE_CAPACITY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.api = api
        self.ttl = ttl
        self.capacity = capacity
        self.clock = clock
        # Hashes only: this memory must not become a store of tokens.
        self._valid: OrderedDict[str, float] = OrderedDict()

    async def check(self, token: str, *, customer_id: str) -> Verdict:
        """Whether the deploy may go ahead with this token.

        Raises:
            TelegramTokenRejected: Telegram says no bot has it.
        """
        key = hashlib.sha256(token.encode("utf-8")).hexdigest()
        now = self.clock()
        until = self._valid.get(key)
        if until is not None and until > now:
            return Verdict.CACHED
        try:
            bot = await self.api.get_me(token)
        except TelegramUnreachable as exc:
            log.warning(
                "customer %s: could not check the bot token with Telegram (%s); "
                "the deploy goes ahead unchecked (Rachel8 checks it again at start)",
                customer_id,
                exc,
                extra={"customer_id": customer_id},
            )
            return Verdict.UNCHECKED
        except TelegramTokenRejected:
            self._valid.pop(key, None)
            log.info(
                "customer %s: Telegram rejected the bot token; deploy refused",
                customer_id,
                extra={"customer_id": customer_id},
            )
            raise
        self._valid[key] = now + self.ttl
        self._valid.move_to_end(key)
        while len(self._valid) > self.capacity:
            self._valid.popitem(last=False)
        log.info(
            "customer %s: Telegram knows the bot token (bot %s, @%s)",
            customer_id,
            bot.id,
            bot.username or "?",
            extra={"customer_id": customer_id},
        )
        return Verdict.VALID

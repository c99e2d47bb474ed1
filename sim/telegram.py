"""The simulated Telegram Bot API: the methods the control plane, the agent and Rachel8 use.

Served on the simulator's port under `/telegram` (RACHEL_TELEGRAM_API_URL
`http://127.0.0.1:4010/telegram`), with the Bot API's URL shape
`/telegram/bot<token>/<method>` and its answers, byte for byte where it
matters: `{"ok": true, "result": ...}`, or `{"ok": false, "error_code": 401,
"description": "Unauthorized"}` for a token no bot has.

- every method: a well-formed token (`<bot id>:<35 or more of A-Z a-z 0-9 _ ->`)
  belongs to bot `<bot id>` unless it was revoked; anything else that looks
  like a token is 401 (a revoked token is 401 to everything), a path that is
  not `bot<token>/<method>` is 404;
- `getMe`: the bot;
- `sendMessage`: recorded (bot id, chat id, text), so that notifications can
  be asserted on; needs `chat_id` and `text` (400 as Telegram words it);
- `setWebhook`, `deleteWebhook`, `getWebhookInfo`: the bot's webhook (per
  bot: a new token of the bot keeps it), with the Bot API's checks (an
  HTTPS URL on port 443, 80, 88 or 8443; an empty `url` deletes it) and
  descriptions ("Webhook was set", "Webhook is already deleted"...);
- `getUpdates`: 409 while a webhook is set; otherwise no update. A call is
  another poller of the bot: the long poll of whoever polled before (the
  simulated Rachel8) ends with 409 Conflict.

Rachel8's own traffic (`sim.rachel8_service`) does not go over HTTP: it
calls `authorized`, `delete_webhook`, `set_webhook` and `send` here directly, as its
process would call Telegram. A `BotWatcher` (the simulator) hears of every
change a running Rachel8 would notice: a token revoked, a webhook set,
another poller.

The simulator's admin API gets `/_sim/telegram/...`: `POST revoke` and
`POST restore` with `{"token": ...}` (a revoked token answers 401, as after
BotFather's /revoke), `GET messages`, `DELETE messages`. Tokens are kept as
hashes only.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol
from urllib.parse import parse_qsl, urlsplit

import msgspec

from sim.errors import ApiError
from sim.http import Request, Response
from sim.routes import Route

PREFIX = "/telegram"
#: What Telegram issues: the bot's id, a colon, the secret part.
_WELL_FORMED = re.compile(r"^(\d{8,}):[A-Za-z0-9_-]{35,}$")
#: What reaches a bot at all (anything else is not a Bot API path: 404).
_PATH = re.compile(r"^/bot(?P<token>[^/]*)/(?P<method>[A-Za-z]+)$")
_SECRET_TOKEN = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
WEBHOOK_PORTS = (443, 80, 88, 8443)
MAX_MESSAGES = 10_000
#: The Bot API's words for a poll that cannot be served.
WEBHOOK_ACTIVE = (
    "Conflict: can't use getUpdates method while webhook is active; "
    "use deleteWebhook to delete the webhook first"
)
OTHER_POLLER = (
    "Conflict: terminated by other getUpdates request; "
    "make sure that only one bot instance is running"
)


@dataclass(frozen=True)
class SentMessage:
    """One message a bot sent (the admin API lists them)."""

    message_id: int
    bot_id: int
    chat_id: str
    text: str
    date: int


@dataclass(frozen=True)
class BotEvent:
    """A change a bot's long-polling process notices.

    Attributes:
        kind: `revoked` (this token), `webhook_set`, or `polled` (another poller).
        bot_id: the bot.
        token_hash: the hash of the token the change came with.
    """

    kind: Literal["revoked", "webhook_set", "polled"]
    bot_id: int
    token_hash: str


class BotWatcher(Protocol):
    """Who runs bots against this Telegram (the simulator's VPSs)."""

    def settle(self, bot_id: int) -> None:
        """Bring every process of the bot up to now, before Telegram changes."""

    def changed(self, event: BotEvent) -> None:
        """Telegram changed for the bot: its processes react."""


@dataclass
class Webhook:
    """A bot's webhook, as getWebhookInfo reports it."""

    url: str
    max_connections: int = 40
    has_secret: bool = False


def token_hash(token: str) -> str:
    """How a token is kept (never in clear)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def bot_id_of(token: str) -> int | None:
    """The bot a well-formed token names, else None."""
    found = _WELL_FORMED.fullmatch(token)
    return int(found[1]) if found else None


def _failure(status: int, description: str) -> Response:
    return Response(status, {"ok": False, "error_code": status, "description": description})


def _ok(result: Any, description: str | None = None) -> Response:
    body: dict[str, Any] = {"ok": True, "result": result}
    if description is not None:
        body["description"] = description
    return Response(200, body)


@dataclass
class TelegramSim:
    """The simulated Bot API's state: revoked tokens (hashed), webhooks, sent messages."""

    revoked: set[str] = field(default_factory=set)
    webhooks: dict[int, Webhook] = field(default_factory=dict)
    messages: list[SentMessage] = field(default_factory=list)
    watcher: BotWatcher | None = None
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    _next_id: int = 1

    def reset(self) -> None:
        """No revoked token, no webhook, no message."""
        with self.lock:
            self.revoked.clear()
            self.webhooks.clear()
            self.messages.clear()

    def _change(self, bot_id: int | None, event: BotEvent | None, apply: Any) -> Any:
        # Processes catch up with the past first (a restart replayed now must not see
        # the change), then the change, then they react to it.
        if self.watcher is not None and bot_id is not None:
            self.watcher.settle(bot_id)
        with self.lock:
            result = apply()
        if self.watcher is not None and event is not None:
            self.watcher.changed(event)
        return result

    # -- what a bot's own process calls (Rachel8, in-process) -------------------

    def authorized(self, token: str) -> bool:
        """Whether Telegram accepts the token (getMe would answer 200)."""
        with self.lock:
            return bot_id_of(token) is not None and token_hash(token) not in self.revoked

    def delete_webhook(self, token: str) -> None:
        """deleteWebhook with this token (grammY's `bot.start()` calls it)."""
        bot_id = bot_id_of(token)
        if bot_id is not None and self.authorized(token):
            with self.lock:
                self.webhooks.pop(bot_id, None)

    def set_webhook(self, token: str, url: str) -> bool:
        """setWebhook with this token by the bot's own process (a Rachel8 in webhook
        mode), with the Bot API's checks; whether Telegram took it.

        No watcher hears of it: the process that sets it is the one that would.
        """
        bot_id = bot_id_of(token)
        if bot_id is None or not self.authorized(token) or _webhook_problem(url, {}):
            return False
        with self.lock:
            self.webhooks[bot_id] = Webhook(url)
        return True

    def send(self, token: str, chat_id: str, text: str) -> bool:
        """sendMessage with this token; False when Telegram refuses it."""
        bot_id = bot_id_of(token)
        if bot_id is None or not self.authorized(token):
            return False
        with self.lock:
            return self._send(bot_id, {"chat_id": chat_id, "text": text}).status == 200

    # -- the HTTP API ------------------------------------------------------------

    def answer(self, method: str, path: str, params: dict[str, str]) -> Response:
        """The Bot API's answer to `method` on `path` (below the prefix)."""
        found = _PATH.fullmatch(path)
        if found is None:
            return _failure(404, "Not Found")
        token, name = found["token"], found["method"].lower()
        if not self.authorized(token):
            return _failure(401, "Unauthorized")
        bot_id = bot_id_of(token)
        assert bot_id is not None  # authorized
        methods: dict[str, Callable[[], Response]] = {
            "getme": lambda: _ok(_bot(bot_id)),
            "getwebhookinfo": lambda: _ok(self._webhook_info(bot_id)),
            "deletewebhook": lambda: self._delete_webhook(bot_id),
            "setwebhook": lambda: self._set_webhook(bot_id, token, params),
            "getupdates": lambda: self._get_updates(bot_id, token),
            "sendmessage": lambda: self._send(bot_id, params),
        }
        method_answer = methods.get(name)
        if method_answer is None:
            return _failure(404, "Not Found")
        with self.lock:
            if name not in ("setwebhook", "getupdates"):  # these tell the watcher, unlocked
                return method_answer()
        return method_answer()

    def _delete_webhook(self, bot_id: int) -> Response:
        with self.lock:
            gone = self.webhooks.pop(bot_id, None)
        return _ok(True, "Webhook was deleted" if gone else "Webhook is already deleted")

    def _webhook_info(self, bot_id: int) -> dict[str, Any]:
        hook = self.webhooks.get(bot_id)
        info: dict[str, Any] = {
            "url": hook.url if hook else "",
            "has_custom_certificate": False,
            "pending_update_count": 0,
        }
        if hook is not None:
            info["max_connections"] = hook.max_connections
        return info

    def _set_webhook(self, bot_id: int, token: str, params: dict[str, str]) -> Response:
        url = params.get("url", "").strip()
        if not url:
            return self._delete_webhook(bot_id)
        problem = _webhook_problem(url, params)
        if problem is not None:
            return _failure(400, f"Bad Request: {problem}")
        hook = Webhook(
            url,
            int(params.get("max_connections") or 40),
            has_secret=bool(params.get("secret_token")),
        )

        def apply() -> Response:
            same = self.webhooks.get(bot_id) == hook
            self.webhooks[bot_id] = hook
            return _ok(True, "Webhook is already set" if same else "Webhook was set")

        event = BotEvent("webhook_set", bot_id, token_hash(token))
        answer: Response = self._change(bot_id, event, apply)
        return answer

    def _get_updates(self, bot_id: int, token: str) -> Response:
        with self.lock:
            if bot_id in self.webhooks:
                return _failure(409, WEBHOOK_ACTIVE)
        self._change(bot_id, BotEvent("polled", bot_id, token_hash(token)), lambda: None)
        return _ok([])

    def revoke(self, token: str) -> None:
        """BotFather's /revoke: the token answers 401 from now on."""
        event = BotEvent("revoked", bot_id_of(token) or 0, token_hash(token))
        self._change(bot_id_of(token), event, lambda: self.revoked.add(token_hash(token)))

    def _send(self, bot_id: int, params: dict[str, str]) -> Response:
        # Called with the lock held.
        chat_id = params.get("chat_id", "").strip()
        text = params.get("text", "")
        if not chat_id:
            return _failure(400, "Bad Request: chat_id is empty")
        if not text.strip():
            return _failure(400, "Bad Request: message text is empty")
        message = SentMessage(self._next_id, bot_id, chat_id, text, int(time.time()))
        self._next_id += 1
        self.messages.append(message)
        del self.messages[:-MAX_MESSAGES]
        chat: dict[str, Any] = {"id": int(chat_id) if chat_id.lstrip("-").isdigit() else chat_id}
        chat["type"] = "private"
        return _ok(
            {
                "message_id": message.message_id,
                "from": _bot(bot_id),
                "chat": chat,
                "date": message.date,
                "text": text,
            }
        )


def _webhook_problem(url: str, params: dict[str, str]) -> str | None:
    """Why the Bot API refuses a webhook, or None."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        parts, port = urlsplit(""), None
    connections = params.get("max_connections", "40") or "40"
    secret = params.get("secret_token")
    problems = (
        (parts.scheme != "https", "bad webhook: An HTTPS URL must be provided for webhook"),
        (not parts.hostname, "bad webhook: Failed to resolve host: Name or service not known"),
        (
            port is not None and port not in WEBHOOK_PORTS,
            "bad webhook: Webhook can be set up only on ports 80, 88, 443 or 8443",
        ),
        (
            not connections.isdigit() or not 1 <= int(connections) <= 100,
            "bad webhook: max_connections must be between 1 and 100",
        ),
        (
            bool(secret) and not _SECRET_TOKEN.fullmatch(secret or ""),
            "secret token contains unallowed characters",
        ),
    )
    return next((message for failed, message in problems if failed), None)


def _bot(bot_id: int) -> dict[str, Any]:
    return {
        "id": bot_id,
        "is_bot": True,
        "first_name": f"Rachel8 {bot_id}",
        "username": f"rachel8_{bot_id}_bot",
        "can_join_groups": True,
        "can_read_all_group_messages": False,
        "supports_inline_queries": False,
    }


def parameters(request: Request) -> dict[str, str]:
    """A Bot API call's parameters: the query, then a JSON or form body over it."""
    params = dict(request.query)
    body = request.body.strip()
    if not body:
        return params
    content_type = request.headers.get("content-type", "")
    if "json" in content_type:
        try:
            decoded = msgspec.json.decode(body)
        except msgspec.DecodeError:
            return params
        if isinstance(decoded, dict):
            params.update({str(k): str(v) for k, v in decoded.items() if v is not None})
    elif "x-www-form-urlencoded" in content_type:
        params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    return params


# --- admin: /_sim/telegram/... ------------------------------------------------------


def _token_of(request: Request) -> str:
    token = request.json().get("token")
    if not isinstance(token, str) or not token:
        raise ApiError("invalid_input", 'a JSON body {"token": "<bot token>"} is expected')
    return token


def revoke(state: TelegramSim, request: Request) -> Response:
    """POST /_sim/telegram/revoke: this token answers 401 from now on."""
    state.revoke(_token_of(request))
    return Response(200, {"revoked": True})


def restore(state: TelegramSim, request: Request) -> Response:
    """POST /_sim/telegram/restore: this token is valid again."""
    token = _token_of(request)
    with state.lock:
        state.revoked.discard(token_hash(token))
    return Response(200, {"revoked": False})


def list_messages(state: TelegramSim, request: Request) -> Response:
    """GET /_sim/telegram/messages: every message sent, oldest first (`?chat_id=` filters)."""
    chat = request.arg("chat_id")
    with state.lock:
        sent = [asdict(m) for m in state.messages if chat is None or m.chat_id == chat]
    return Response(200, {"messages": sent})


def clear_messages(state: TelegramSim, request: Request) -> Response:
    """DELETE /_sim/telegram/messages."""
    with state.lock:
        state.messages.clear()
    return Response(200, {"messages": []})


ADMIN_ROUTES = [
    Route("POST", "/telegram/revoke", "sim_telegram_revoke", revoke),
    Route("POST", "/telegram/restore", "sim_telegram_restore", restore),
    Route("GET", "/telegram/messages", "sim_telegram_messages", list_messages),
    Route("DELETE", "/telegram/messages", "sim_telegram_clear_messages", clear_messages),
]

"""The simulated Telegram Bot API: the few methods the control plane and Rachel8 call.

Served on the simulator's port under `/telegram` (RACHEL_TELEGRAM_API_URL
`http://127.0.0.1:4010/telegram`), with the Bot API's URL shape
`/telegram/bot<token>/<method>` and its answers, byte for byte where it
matters: `{"ok": true, "result": ...}`, or `{"ok": false, "error_code": 401,
"description": "Unauthorized"}` for a token no bot has.

- `getMe`: a well-formed token (`<bot id>:<35 or more of A-Z a-z 0-9 _ ->`)
  belongs to bot `<bot id>` unless it was revoked; anything else that looks
  like a token is 401, a path that is not `bot<token>/<method>` is 404;
- `sendMessage`: recorded (bot id, chat id, text), so that notifications can
  be asserted on; needs `chat_id` and `text` (400 as Telegram words it);
- `getWebhookInfo`: no webhook set (Rachel8 polls).

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
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import msgspec

from sim.errors import ApiError
from sim.http import Request, Response
from sim.routes import Route

PREFIX = "/telegram"
#: What Telegram issues: the bot's id, a colon, the secret part.
_WELL_FORMED = re.compile(r"^(\d{8,}):[A-Za-z0-9_-]{35,}$")
#: What reaches a bot at all (anything else is not a Bot API path: 404).
_PATH = re.compile(r"^/bot(?P<token>[^/]*)/(?P<method>[A-Za-z]+)$")
MAX_MESSAGES = 10_000


@dataclass(frozen=True)
class SentMessage:
    """One message a bot sent (the admin API lists them)."""

    message_id: int
    bot_id: int
    chat_id: str
    text: str
    date: int


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _failure(status: int, description: str) -> Response:
    return Response(status, {"ok": False, "error_code": status, "description": description})


def _ok(result: Any) -> Response:
    return Response(200, {"ok": True, "result": result})


@dataclass
class TelegramSim:
    """The simulated Bot API's state: revoked tokens (hashed) and sent messages."""

    revoked: set[str] = field(default_factory=set)
    messages: list[SentMessage] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _next_id: int = 1

    def reset(self) -> None:
        """No revoked token, no message."""
        with self.lock:
            self.revoked.clear()
            self.messages.clear()

    def answer(self, method: str, path: str, params: dict[str, str]) -> Response:
        """The Bot API's answer to `method` on `path` (below the prefix)."""
        found = _PATH.fullmatch(path)
        if found is None:
            return _failure(404, "Not Found")
        token, name = found["token"], found["method"].lower()
        well_formed = _WELL_FORMED.fullmatch(token)
        with self.lock:
            if well_formed is None or _hash(token) in self.revoked:
                return _failure(401, "Unauthorized")
            bot_id = int(well_formed[1])
            if name == "getme":
                return _ok(_bot(bot_id))
            if name == "getwebhookinfo":
                return _ok({"url": "", "has_custom_certificate": False, "pending_update_count": 0})
            if name == "sendmessage":
                return self._send(bot_id, params)
        return _failure(404, "Not Found")

    def _send(self, bot_id: int, params: dict[str, str]) -> Response:
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
    token = _token_of(request)
    with state.lock:
        state.revoked.add(_hash(token))
    return Response(200, {"revoked": True})


def restore(state: TelegramSim, request: Request) -> Response:
    """POST /_sim/telegram/restore: this token is valid again."""
    token = _token_of(request)
    with state.lock:
        state.revoked.discard(_hash(token))
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

"""The heartbeat route's hot path, answered before Litestar's request machinery.

`POST /heartbeats/{id}` is the web app's busiest request (each ready server
every RACHEL_HEARTBEAT_INTERVAL: 333/s at 10,000 servers) and its handler does
one Redis round trip; Litestar's per-request machinery around it (its
`Request`, the signature model and kwargs, the `Response`) cost a quarter of
the web process's Python time (BENCHMARKS.md, "Heartbeats"). `install` puts
this in front of the app: a well-formed heartbeat (the route's path and id
range, a JSON body within MAX_HEARTBEAT_BYTES that decodes into a `Heartbeat`,
a bearer credential, a sender address) is checked and recorded here with the
route's own helpers (`webhook.heartbeats`) and answered as the route answers:
202 `{"accepted": true}`, or the route's refusal through the app's error
mapping (`webhook.errors.rachel_error_answer`: same status, body, headers and
log line). Every other request, and every malformed heartbeat, goes to
Litestar untouched (the body read so far replayed), which answers it as
before: its 400, 404, 413, and the route's 401 for a missing credential.
`HeartbeatController` stays the route's definition and its OpenAPI schema.
"""

from __future__ import annotations

import re

import msgspec
from litestar import Litestar
from litestar.enums import ScopeType
from litestar.types import (
    ASGIApp,
    HTTPRequestEvent,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    Receive,
    ReceiveMessage,
    Scope,
    Send,
)

from core.domain import heartbeats
from core.domain.heartbeats import MAX_HEARTBEAT_BYTES, Recorded
from core.errors import RachelError
from webhook import heartbeats as route
from webhook.context import WebContext, client_address
from webhook.errors import heartbeat_refused, rachel_error_answer

#: The route's path with an id within its range's digits (1 to 2**31 - 1, checked after).
_PATH = re.compile(r"/heartbeats/([1-9][0-9]{0,9})")
_MAX_ID = 2**31 - 1
_JSON = b"application/json"


def install(app: Litestar, ctx: WebContext) -> None:
    """Answer well-formed heartbeats before `app`'s routing (see the module)."""
    app.asgi_handler = fast_path(app.asgi_handler, ctx)


def _server_id(scope: Scope) -> int | None:
    if scope["type"] != ScopeType.HTTP or scope.get("method") != "POST" or scope.get("root_path"):
        return None
    match = _PATH.fullmatch(scope["path"])
    server_id = int(match.group(1)) if match else 0
    return server_id if 1 <= server_id <= _MAX_ID else None


async def _read(receive: Receive) -> tuple[bytes, bool] | None:
    """(the body read, whether it is whole); stops past MAX_HEARTBEAT_BYTES. None: gone."""
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunk = message.get("body", b"")
        parts.append(chunk)
        size += len(chunk)
        whole = not message.get("more_body", False)
        if whole or size > MAX_HEARTBEAT_BYTES:
            return b"".join(parts), whole


def _replay(body: bytes, whole: bool, receive: Receive) -> Receive:
    """`receive` with `body` given back first (for Litestar, after we read it)."""
    given = False

    async def again() -> ReceiveMessage:
        nonlocal given
        if given:
            return await receive()
        given = True
        first: HTTPRequestEvent = {"type": "http.request", "body": body, "more_body": not whole}
        return first

    return again


async def _answer(send: Send, status: int, body: bytes, headers: dict[str, str]) -> None:
    raw = [(b"content-type", _JSON), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    start: HTTPResponseStartEvent = {
        "type": "http.response.start",
        "status": status,
        "headers": raw,
    }
    done: HTTPResponseBodyEvent = {"type": "http.response.body", "body": body, "more_body": False}
    await send(start)
    await send(done)


def fast_path(app: ASGIApp, ctx: WebContext) -> ASGIApp:
    """`app` (Litestar's ASGI handler) with well-formed heartbeats answered first."""

    async def handle(scope: Scope, receive: Receive, send: Send) -> None:
        server_id = _server_id(scope)
        headers = dict(scope["headers"]) if server_id is not None else {}
        length = headers.get(b"content-length", b"0")
        if (
            server_id is None
            or headers.get(b"content-type", _JSON) != _JSON
            or not length.isdigit()
            or int(length) > MAX_HEARTBEAT_BYTES
        ):
            await app(scope, receive, send)
            return
        read = await _read(receive)
        if read is None:
            return  # the client left
        body, whole = read
        authorization = headers.get(b"authorization")
        credential = route.bearer(authorization.decode("latin-1") if authorization else None)
        forwarded = headers.get(b"x-forwarded-for")
        client = scope.get("client")
        source = client_address(
            client[0] if client else None,
            forwarded.decode("latin-1") if forwarded else None,
            ctx.trusted_proxies,
        )
        try:
            data = heartbeats.decode(body) if whole else None
        except (msgspec.ValidationError, msgspec.DecodeError):
            data = None
        if data is None or credential is None or source is None:
            await app(scope, _replay(body, whole, receive), send)
            return
        try:
            result = await route.record(
                ctx, server_id=server_id, credential=credential, source=source, data=data, body=body
            )
            if result is not Recorded.OK:
                raise heartbeat_refused(result)
        except RachelError as exc:
            status, error, extra = rachel_error_answer("POST", scope["path"], exc)
            await _answer(send, status, msgspec.json.encode(error), extra)
            return
        await _answer(send, 202, route.ACCEPTED, {})

    return handle

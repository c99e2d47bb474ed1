"""The simulator's ASGI application: Hetzner API under `/v1`, admin under `/_sim`,
the simulated Telegram Bot API under `/telegram` (`sim.telegram`).

Plain ASGI rather than Litestar: every byte of every answer must be
Hetzner's (error bodies for unknown routes, malformed ids and bad JSON,
`RateLimit-*` and `X-Correlation-Id` on every response), and the operation a
request maps to must be known before dispatch for auth, rate limiting, fault
injection and counting. A framework would add its own 404/405/validation
answers that we would have to override one by one; a 30-line router keeps
the wire format entirely ours.
"""

from __future__ import annotations

import asyncio
import hmac
import inspect
import logging
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl

import msgspec

from sim import (
    admin,
    api_actions,
    api_catalog,
    api_firewalls,
    api_images,
    api_servers,
    api_ssh_keys,
    telegram,
)
from sim.engine import Simulator
from sim.errors import ApiError
from sim.http import Request, Response
from sim.routes import Route, match, order

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

API_PREFIX = "/v1"
ADMIN_PREFIX = "/_sim"
#: Bodies beyond this are refused before parsing (user data is capped at 32 KiB).
MAX_BODY_BYTES = 1024 * 1024

API_ROUTES: list[Route] = order(
    [
        *api_servers.ROUTES,
        *api_ssh_keys.ROUTES,
        *api_firewalls.ROUTES,
        *api_actions.ROUTES,
        *api_catalog.ROUTES,
        *api_images.ROUTES,
    ]
)
ADMIN_ROUTES: list[Route] = order(admin.ROUTES)
TELEGRAM_ADMIN_ROUTES: list[Route] = order(telegram.ADMIN_ROUTES)


class SimulatorApp:
    """ASGI app serving one `Simulator`."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.telegram = sim.telegram

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.sim.attach(asyncio.get_running_loop())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.sim.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _read_body(self, receive: Receive) -> bytes | None:
        chunks, size = [], 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                return None
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.sim.loop is None:  # servers run without lifespan still work
            self.sim.attach(asyncio.get_running_loop())
        body = await self._read_body(receive)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        path: str = scope["path"]
        host = headers.get("host", "127.0.0.1")
        prefix = ADMIN_PREFIX
        for candidate in (API_PREFIX, telegram.PREFIX):
            if path.startswith(candidate + "/"):
                prefix = candidate
        request = Request(
            method=scope["method"],
            path=path[len(prefix) :] if path.startswith(prefix + "/") else path,
            query=parse_qsl(
                scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True
            ),
            headers=headers,
            body=body or b"",
            base_url=f"{scope.get('scheme', 'http')}://{host}{prefix}",
        )
        if body is None:
            response = _error(ApiError("invalid_input", "request body too large"))
        elif path.startswith(API_PREFIX + "/"):
            response = await self._api(request)
        elif path.startswith(ADMIN_PREFIX + "/"):
            response = await self._admin(request)
        elif path.startswith(telegram.PREFIX + "/"):
            # The token in the path is the Bot API's only credential: no bearer here.
            response = self.telegram.answer(
                request.method, request.path, telegram.parameters(request)
            )
        else:
            response = _error(ApiError("not_found", f"no such path {path!r}; the API is under /v1"))
        await self._send(send, response)

    def _authorized(self, request: Request) -> bool:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            token.strip().encode(), self.sim.config.token.encode()
        )

    async def _api(self, request: Request) -> Response:
        route, params, path_exists = match(API_ROUTES, request.method, request.path)
        operation = route.operation if route else "unknown"
        if not self._authorized(request):
            response = _error(ApiError("unauthorized"))
        elif not self.sim.take_rate_token():
            response = _error(ApiError("rate_limit_exceeded"))
        elif (injected := self.sim.injected_error(operation)) is not None:
            fault_code, message = injected
            response = _error(ApiError(fault_code, message or f"{fault_code} (simulated fault)"))
        elif route is None:
            response = _route_missing(request, path_exists)
        else:
            response = await self._run(route, request, params)
        code: str | None = None
        if response.status >= 400 and response.body:
            code = str(response.body["error"]["code"])
        with self.sim.lock:
            self.sim.stats.record(operation, response.status, code)
        response.headers.update(self.sim.rate_headers())
        return response

    async def _admin(self, request: Request) -> Response:
        if not self._authorized(request):
            return _error(ApiError("unauthorized"))
        if request.path.startswith(telegram.PREFIX + "/"):
            route, params, path_exists = match(TELEGRAM_ADMIN_ROUTES, request.method, request.path)
            if route is None:
                return _route_missing(request, path_exists)
            try:
                return route.handler(self.telegram, request, **params)  # type: ignore[return-value]
            except ApiError as exc:
                return _error(exc)
        route, params, path_exists = match(ADMIN_ROUTES, request.method, request.path)
        if route is None:
            return _route_missing(request, path_exists)
        return await self._run(route, request, params)

    async def _run(self, route: Route, request: Request, params: dict[str, str]) -> Response:
        try:
            with self.sim.lock:
                result = route.handler(self.sim, request, **params)
            if inspect.isawaitable(result):
                result = await result
            assert isinstance(result, Response)
            return result
        except ApiError as exc:
            return _error(exc)
        except Exception:
            # A bug in the simulator still answers in Hetzner's format.
            log.exception("simulator handler %s failed", route.operation)
            return _error(ApiError("server_error"))

    async def _send(self, send: Send, response: Response) -> None:
        headers = dict(response.headers)
        headers["X-Correlation-Id"] = uuid.uuid4().hex[:16]
        content = b""
        if response.body is not None:
            content = msgspec.json.encode(response.body)
            headers["Content-Type"] = "application/json"
        headers["Content-Length"] = str(len(content))
        await send(
            {
                "type": "http.response.start",
                "status": response.status,
                "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
            }
        )
        await send({"type": "http.response.body", "body": content})


def _error(exc: ApiError) -> Response:
    return Response(exc.status, exc.body())


def _route_missing(request: Request, path_exists: bool) -> Response:
    if path_exists:
        return _error(
            ApiError("not_found", f"method {request.method} is not allowed on {request.path}")
        )
    return _error(ApiError("not_found", f"no such endpoint {request.path}"))

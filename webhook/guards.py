"""Guards: they run before Litestar parses anything, on the raw request.

- `signed`: reads the raw body (size-limited), verifies the Standard Webhooks
  signature on those bytes, then checks the JSON nesting depth; only then does
  Litestar decode the body into its Struct.
- `json_limits`: the depth check alone, for unsigned JSON endpoints.
- `api_key`: the `X-API-Key` header of the status API.
"""

from __future__ import annotations

import re
from typing import Any, cast

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler

from webhook.context import WebContext
from webhook.errors import RequestRejected

#: Deepest JSON nesting accepted (our bodies are flat objects: depth 1).
MAX_JSON_DEPTH = 8
API_KEY_HEADER = "X-API-Key"
#: Escapes (a backslash and what it escapes), quotes and brackets: the tokens that matter.
_TOKENS = re.compile(rb'\\.|["\[\]{}]', re.DOTALL)


def json_depth(body: bytes) -> int:
    """The deepest nesting of objects and arrays in a JSON text (strings skipped).

    One linear pass, no parsing. Malformed text gives some number; the parser
    rejects it afterwards.
    """
    depth = deepest = 0
    in_string = False
    for match in _TOKENS.finditer(body):
        token = match.group()
        if token == b'"':
            in_string = not in_string
        elif in_string or len(token) > 1:
            continue
        elif token in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def context_of(connection: ASGIConnection[Any, Any, Any, Any]) -> WebContext:
    """The app's WebContext."""
    ctx = connection.app.state["ctx"]
    assert isinstance(ctx, WebContext)
    return ctx


def _check_depth(body: bytes) -> None:
    if json_depth(body) > MAX_JSON_DEPTH:
        raise RequestRejected(
            f"JSON nested deeper than {MAX_JSON_DEPTH} levels", code="json_too_deep", status=400
        )


async def signed(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Verify the webhook signature on the raw body.

    Raises:
        SignatureRejected: 401, missing, stale, future or wrong signature.
        RequestRejected: 400, JSON nested too deep.
        HTTPException: 413, the body is larger than RACHEL_MAX_BODY_BYTES.
    """
    request = cast(Request[Any, Any, Any], connection)
    body = await request.body()
    verified = context_of(connection).verifier.verify(body, dict(connection.headers))
    connection.state["webhook"] = verified
    _check_depth(body)


async def json_limits(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Read the body (size-limited) and check its nesting depth before parsing."""
    request = cast(Request[Any, Any, Any], connection)
    _check_depth(await request.body())


async def api_key(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
    """Require a valid `X-API-Key` header.

    Raises:
        RequestRejected: 401 `unauthorized`.
    """
    if not context_of(connection).api_key_valid(connection.headers.get(API_KEY_HEADER)):
        raise RequestRejected(
            f"a valid {API_KEY_HEADER} header is required", code="unauthorized", status=401
        )

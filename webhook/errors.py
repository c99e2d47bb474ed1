"""One mapping from errors to JSON error responses: `{"error": {"code", "message"}}`.

Our errors (`RachelError`) carry their code, never an HTTP status: the web
app's own `RequestRejected` names its status, every other error is mapped by
its class (and, where one class covers several answers, its code) in
`_STATUSES`, the one place core's errors meet HTTP. Litestar's own errors
(validation, 404, 405, body too large) get the same shape. Anything
unexpected is a 500 `internal_error` whose message says nothing about the
cause (the log has it, redacted).
"""

from __future__ import annotations

import logging
from typing import Any

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi.datastructures import ResponseSpec
from litestar.types import ExceptionHandlersMap

from core.cloud.rachel8 import ConfigError
from core.domain.callbacks import CallbackRejected
from core.domain.deliveries import DeliveryConflict
from core.domain.deploys import DeployRefused
from core.domain.heartbeats import Recorded
from core.domain.subscriptions import SubscriptionRejected
from core.domain.vps_requests import VpsRequestFailed, VpsRequestRefused
from core.errors import DatabaseError, RachelError, RedisUnavailable, SettingsError
from core.security.redaction import redact
from core.security.signing import SignatureRejected
from webhook.structs import ErrorBody, ErrorInfo

log = logging.getLogger(__name__)

MAX_DETAILS = 20


class RequestRejected(RachelError):
    """A request refused by the web app itself (auth, limits, lookups).

    Attributes:
        status: the HTTP status to answer with.
        headers: response headers to add (e.g. `Retry-After`).
    """

    def __init__(
        self, message: str, *, code: str, status: int, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message, code=code)
        self.status = status
        self.headers = headers or {}


def not_found(what: str) -> RequestRejected:
    """A 404 `not_found`."""
    return RequestRejected(f"{what} not found", code="not_found", status=404)


#: A refused heartbeat, by `core.domain.heartbeats.Recorded` answer: (status, code,
#: message). Every way the credential can be wrong (missing, wrong, from another
#: address, for an unknown or deleted server) gets the one 401: nothing tells them apart.
HEARTBEAT_REFUSALS: dict[Recorded, tuple[int, str, str]] = {
    Recorded.UNKNOWN: (401, "unauthorized", "a valid heartbeat credential is required"),
    Recorded.DENIED: (401, "unauthorized", "a valid heartbeat credential is required"),
    Recorded.STALE: (409, "stale_sequence", "the sequence is not above the last one received"),
}


def heartbeat_refused(answer: Recorded) -> RequestRejected:
    """The error answering a heartbeat `record` refused."""
    status, code, message = HEARTBEAT_REFUSALS[answer]
    return RequestRejected(message, code=code, status=status)


#: (class, code or None for any, HTTP status): the first row that matches wins.
#: Unlisted errors are 503 when transient (retrying may work), else 500.
_STATUSES: tuple[tuple[type[RachelError], str | None, int], ...] = (
    # A signature problem is an authentication problem, whichever check failed.
    (SignatureRejected, None, 401),
    # 402, so that the sender retries once billing has caught up.
    (DeployRefused, None, 402),
    (DeliveryConflict, None, 409),
    (SubscriptionRejected, None, 422),
    # A value Rachel8 would refuse at start (and a bot token Telegram does not know).
    (ConfigError, None, 422),
    (CallbackRejected, "unauthorized", 401),
    (CallbackRejected, "conflict", 409),
    (CallbackRejected, "invalid_host_key", 422),
    (VpsRequestRefused, "not_found", 404),
    (VpsRequestRefused, "server_not_ready", 409),
    # The VPS is the upstream of a restart or a logs request: a bad gateway.
    (VpsRequestFailed, None, 502),
    (DatabaseError, None, 503),
    (RedisUnavailable, None, 503),
    (SettingsError, None, 500),
)
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
}


def status_for(exc: RachelError) -> int:
    """The HTTP status of one of our errors."""
    if isinstance(exc, RequestRejected):
        return exc.status
    for cls, code, status in _STATUSES:
        if isinstance(exc, cls) and code in (None, exc.code):
            return status
    return 503 if exc.transient else 500


def error_body(
    code: str, message: str, details: list[str] | None = None, *, field: str | None = None
) -> ErrorBody:
    """The JSON error body (message and details redacted)."""
    return ErrorBody(
        error=ErrorInfo(
            code=code,
            message=redact(message),
            details=[redact(d) for d in details[:MAX_DETAILS]] if details else None,
            field=field,
        )
    )


def error_response(
    status: int,
    code: str,
    message: str,
    details: list[str] | None = None,
    headers: dict[str, str] | None = None,
    *,
    field: str | None = None,
) -> Response[ErrorBody]:
    """The JSON error response (message and details redacted)."""
    body = error_body(code, message, details, field=field)
    return Response(body, status_code=status, media_type=MediaType.JSON, headers=headers)


def rachel_error_answer(
    method: str, path: str, exc: RachelError
) -> tuple[int, ErrorBody, dict[str, str]]:
    """What one of our errors answers (status, body, headers), logged as it is answered."""
    status = status_for(exc)
    # A refusal that asks the client to come back (a capacity limit) is logged where it is made.
    retry_later = isinstance(exc, RequestRejected) and "Retry-After" in exc.headers
    if status >= 500 and not retry_later:
        log.error("%s %s: %s (%s)", method, path, exc.code, exc)
    else:
        log.info("%s %s: %d %s", method, path, status, exc.code)
    headers = {"WWW-Authenticate": _challenge(path)} if status == 401 else {}
    if isinstance(exc, RequestRejected):
        headers.update(exc.headers)
    field = exc.field if isinstance(exc, ConfigError) else None
    return status, error_body(exc.code, exc.message, field=field), headers


def handle_rachel_error(request: Request[Any, Any, Any], exc: RachelError) -> Response[ErrorBody]:
    """Our errors: their code and message, their status."""
    status, body, headers = rachel_error_answer(request.method, request.url.path, exc)
    return Response(body, status_code=status, media_type=MediaType.JSON, headers=headers or None)


def _challenge(path: str) -> str:
    if path.startswith(("/callbacks/", "/heartbeats/")):
        return "Bearer"
    if path.startswith("/webhooks/"):
        return 'StandardWebhooks headers="webhook-id webhook-timestamp webhook-signature"'
    return 'ApiKey header="X-API-Key"'


def handle_http_exception(
    request: Request[Any, Any, Any], exc: HTTPException
) -> Response[ErrorBody]:
    """Litestar's errors (validation, routing, limits) in our shape."""
    status = exc.status_code
    if isinstance(exc, ValidationException):
        return error_response(
            400, "validation_error", _validation_message(exc), _validation_details(exc.extra)
        )
    if status >= 500:
        log.error("%s %s: %s", request.method, request.url.path, exc.detail)
        return error_response(status, "internal_error", "internal error")
    code = _HTTP_CODES.get(status, "bad_request")
    if status == 400 and (exc.detail or "").startswith("JSON is malformed"):
        code = "invalid_json"
    headers = {"Allow": exc.headers["allow"]} if exc.headers and "allow" in exc.headers else None
    return error_response(status, code, exc.detail or code.replace("_", " "), headers=headers)


def handle_unexpected(request: Request[Any, Any, Any], exc: Exception) -> Response[ErrorBody]:
    """A bug: logged with its traceback (redacted), answered without details."""
    log.exception("%s %s: unexpected error", request.method, request.url.path)
    return error_response(500, "internal_error", "internal error")


def _validation_message(exc: ValidationException) -> str:
    detail = exc.detail or "invalid request"
    if detail.startswith("Validation failed for"):
        return "the request does not match the schema"
    return detail


def _validation_details(extra: Any) -> list[str] | None:
    if not isinstance(extra, list):
        return None
    details = []
    for item in extra:
        if isinstance(item, dict):
            key = item.get("key")
            message = str(item.get("message", "invalid"))
            details.append(f"{key}: {message}" if key else message)
    return details or None


EXCEPTION_HANDLERS: ExceptionHandlersMap = {
    RachelError: handle_rachel_error,
    HTTPException: handle_http_exception,
    Exception: handle_unexpected,
}


def responses(*statuses: int) -> dict[int, ResponseSpec]:
    """OpenAPI error responses (the ErrorBody schema) for these statuses."""
    descriptions = {
        400: "Malformed JSON, a schema violation, an unknown field or too deep nesting.",
        401: "Missing or invalid credentials (signature, API key, callback token or heartbeat "
        "credential).",
        402: "The customer has no active subscription.",
        404: "No such resource.",
        409: "Conflicts with the current state (webhook-id reused for another body; "
        "server not waiting for a callback; a heartbeat's sequence not above the last one, "
        "`stale_sequence`; a server not ready, `server_not_ready`, or being restarted "
        "already, `restart_in_progress`).",
        413: "The request body is larger than RACHEL_MAX_BODY_BYTES (a heartbeat: 4096 bytes).",
        422: "Well-formed but unacceptable: a deploy Rachel8 would refuse at start "
        "(`invalid_rachel8_config`, `expired`, `credentials_form`, `telegram_token_rejected`; "
        "`field` names the value), a host key, an event time.",
        500: "Internal error.",
        502: "The server's VPS did not answer over SSH (`vps_unreachable`: down, refusing, "
        "timed out or its host key changed) or the command failed there (`vps_command_failed`).",
        503: "A dependency (database, Redis) is unavailable, or the process serves as many "
        "SSE streams (RACHEL_SSE_MAX_STREAMS) or VPS requests (`busy`) as it can: retry "
        "after `Retry-After` seconds.",
    }
    return {
        status: ResponseSpec(
            data_container=ErrorBody, description=descriptions[status], generate_examples=False
        )
        for status in statuses
    }

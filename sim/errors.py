"""Hetzner Cloud API errors: codes, their HTTP statuses and the error body.

The table follows the rules in `../shared/hetzner/README.md`; every error the
simulator sends goes through `ApiError` so the body and status always agree.
"""

from __future__ import annotations

from typing import Any

from core.errors import RachelError

#: Error code -> HTTP status, as documented by Hetzner.
ERROR_STATUS: dict[str, int] = {
    "json_error": 400,
    "unauthorized": 401,
    "token_readonly": 401,
    "forbidden": 403,
    "maintenance": 403,
    "resource_limit_exceeded": 403,
    "not_found": 404,
    "uniqueness_error": 409,
    "conflict": 409,
    "resource_unavailable": 412,
    "invalid_input": 422,
    "service_error": 422,
    "placement_error": 422,
    "locked": 423,
    "protected": 423,
    "rate_limit_exceeded": 429,
    "server_error": 500,
    "unavailable": 503,
    "timeout": 504,
}

_DEFAULT_MESSAGES: dict[str, str] = {
    "json_error": "invalid JSON in request body",
    "unauthorized": "unable to authenticate",
    "token_readonly": "the token is read-only",
    "forbidden": "insufficient permissions for this request",
    "maintenance": "operation temporarily unavailable due to maintenance",
    "resource_limit_exceeded": "resource limit exceeded",
    "not_found": "resource not found",
    "uniqueness_error": "one or more fields must be unique",
    "conflict": "the resource has changed during the request, please retry",
    "resource_unavailable": "the requested resource is currently unavailable",
    "invalid_input": "invalid input",
    "service_error": "an error occurred in a service used by this request",
    "placement_error": "an error during the placement occurred",
    "locked": "the item is locked by another action",
    "protected": "the resource is protected",
    "rate_limit_exceeded": "limit of 3600 requests per hour reached",
    "server_error": "an internal server error occurred",
    "unavailable": "the service is currently unavailable",
    "timeout": "the request timed out",
}


class ApiError(RachelError):
    """An error answer of the simulated API.

    Attributes:
        code: the Hetzner error code (a key of `ERROR_STATUS`).
        status: its HTTP status.
        details: the `details` object of the error body, or None.
    """

    def __init__(
        self, code: str, message: str | None = None, details: dict[str, Any] | None = None
    ) -> None:
        if code not in ERROR_STATUS:
            raise ValueError(f"unknown Hetzner error code {code!r}")
        super().__init__(message or _DEFAULT_MESSAGES[code], code=code)
        self.status = ERROR_STATUS[code]
        self.details = details

    def body(self) -> dict[str, Any]:
        """The JSON error body Hetzner sends."""
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


def invalid_field(name: str, message: str) -> ApiError:
    """An `invalid_input` error naming one field, as Hetzner reports them."""
    return ApiError(
        "invalid_input",
        f"invalid input in field '{name}'",
        {"fields": [{"name": name, "messages": [message]}]},
    )


def not_found(kind: str, ident: object) -> ApiError:
    """A `not_found` error for a resource kind and id."""
    return ApiError("not_found", f"{kind} with ID '{ident}' not found")


def uniqueness(field: str) -> ApiError:
    """A `uniqueness_error` naming the duplicated field."""
    return ApiError(
        "uniqueness_error",
        f"{field} is already used",
        {"fields": [{"name": field}]},
    )

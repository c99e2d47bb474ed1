"""Request and response types of the simulated API, plus input helpers.

Handlers receive a parsed `Request` and return a `Response`; anything wrong
with the input raises `sim.errors.ApiError` so the client always gets the
Hetzner error format, never a traceback.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import msgspec

from sim.errors import ApiError, invalid_field
from sim.labels import SelectorError, parse_selector, valid_label_key, valid_label_value
from sim.labels import matches as labels_match
from sim.pagination import PageError, link_header, paginate, parse_page_request, sort_items

T = TypeVar("T")


@dataclass
class Request:
    """One HTTP request.

    Attributes:
        path: the path below the API prefix (`/servers/1`).
        query: query parameters in order, repeated keys kept.
        base_url: scheme, host and prefix, for `Link` headers.
    """

    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    body: bytes
    base_url: str

    def arg(self, name: str) -> str | None:
        """The first value of query parameter `name`."""
        return next((v for k, v in self.query if k == name), None)

    def args(self, name: str) -> list[str]:
        """Every value of query parameter `name`."""
        return [v for k, v in self.query if k == name]

    def json(self) -> dict[str, Any]:
        """The body as a JSON object.

        Raises:
            ApiError: json_error for malformed JSON, invalid_input for a non-object.
        """
        if not self.body.strip():
            raise ApiError("json_error", "request body is empty, a JSON object is expected")
        try:
            data = msgspec.json.decode(self.body)
        except msgspec.DecodeError as exc:
            raise ApiError("json_error", f"invalid JSON in request body: {exc}") from None
        if not isinstance(data, dict):
            raise ApiError("invalid_input", "the request body must be a JSON object")
        return data


@dataclass
class Response:
    """An HTTP response; `body` None sends no content (204)."""

    status: int
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)


def parse_id(raw: str, name: str = "id") -> int:
    """A path id as an int.

    Raises:
        ApiError: invalid_input when it is not a positive whole number.
    """
    if not raw.isdigit() or int(raw) < 1:
        raise invalid_field(name, "must be a positive integer")
    return int(raw)


def text_field(body: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    """A string field of a request body."""
    value = body.get(name)
    if value is None:
        if required:
            raise invalid_field(name, "is required")
        return None
    if not isinstance(value, str):
        raise invalid_field(name, "must be a string")
    if required and not value.strip():
        raise invalid_field(name, "must not be empty")
    return value


def bool_field(body: dict[str, Any], name: str, default: bool) -> bool:
    """A boolean field of a request body."""
    value = body.get(name, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise invalid_field(name, "must be a boolean")
    return value


def list_field(body: dict[str, Any], name: str) -> list[Any]:
    """A list field of a request body (missing means empty)."""
    value = body.get(name)
    if value is None:
        return []
    if not isinstance(value, list):
        raise invalid_field(name, "must be a list")
    return value


def labels_field(body: dict[str, Any], name: str = "labels") -> dict[str, str] | None:
    """A labels object, validated against Hetzner's label rules (None if absent)."""
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise invalid_field(name, "must be an object of string keys and values")
    for key, label in value.items():
        if not isinstance(label, str) or not valid_label_key(key) or not valid_label_value(label):
            raise invalid_field(name, f"invalid label {key!r}: {label!r}")
    return dict(value)


def ref_field(value: Any, name: str) -> str:
    """A reference given as an id or a name (server_type, image, ssh_keys...)."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise invalid_field(name, "must be an ID or a name")
    return str(value)


def select(req: Request, items: Sequence[T], labels: Callable[[T], dict[str, str]]) -> list[T]:
    """Filter by the `label_selector` query parameter."""
    selector = req.arg("label_selector")
    if selector is None:
        return list(items)
    try:
        requirements = parse_selector(selector)
    except SelectorError as exc:
        raise invalid_field("label_selector", str(exc)) from None
    return [item for item in items if labels_match(requirements, labels(item))]


def list_response(
    req: Request,
    key: str,
    items: Sequence[T],
    render: Callable[[T], dict[str, Any]],
    sort_fields: dict[str, Callable[[T], Any]] | None = None,
) -> Response:
    """A paginated, optionally sorted list answer with `meta` and a `Link` header."""
    try:
        ordered = sort_items(items, req.args("sort"), sort_fields) if sort_fields else list(items)
        page_request = parse_page_request(req.arg("page"), req.arg("per_page"))
    except PageError as exc:
        raise ApiError("invalid_input", str(exc)) from None
    page, pagination = paginate(ordered, page_request)
    headers = {}
    link = link_header(req.base_url + req.path, req.query, pagination)
    if link:
        headers["Link"] = link
    return Response(
        200, {key: [render(i) for i in page], "meta": {"pagination": pagination}}, headers
    )

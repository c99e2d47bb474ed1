"""Pagination, sorting and the `Link` header of Hetzner list endpoints (pure)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlencode

T = TypeVar("T")

DEFAULT_PER_PAGE = 25
MAX_PER_PAGE = 50


class PageError(ValueError):
    """`page`, `per_page` or `sort` is invalid; the message names the parameter."""


@dataclass(frozen=True)
class PageRequest:
    """The page the client asked for."""

    page: int = 1
    per_page: int = DEFAULT_PER_PAGE


def parse_page_request(page: str | None, per_page: str | None) -> PageRequest:
    """Validate the `page` and `per_page` query parameters.

    `per_page` above the maximum is clamped to it, as the API does.

    Raises:
        PageError: a parameter is not a positive whole number.
    """

    def positive(name: str, raw: str | None, default: int) -> int:
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise PageError(f"{name} must be a whole number") from None
        if value < 1:
            raise PageError(f"{name} must be at least 1")
        return value

    return PageRequest(
        positive("page", page, 1),
        min(positive("per_page", per_page, DEFAULT_PER_PAGE), MAX_PER_PAGE),
    )


def paginate(items: Sequence[T], request: PageRequest) -> tuple[list[T], dict[str, Any]]:
    """Slice `items` to the requested page.

    Returns:
        The page's items and the `meta.pagination` object.
    """
    total = len(items)
    last_page = max(1, math.ceil(total / request.per_page))
    start = (request.page - 1) * request.per_page
    pagination = {
        "page": request.page,
        "per_page": request.per_page,
        "previous_page": request.page - 1 if request.page > 1 else None,
        "next_page": request.page + 1 if request.page < last_page else None,
        "last_page": last_page,
        "total_entries": total,
    }
    return list(items[start : start + request.per_page]), pagination


def link_header(base_url: str, query: Sequence[tuple[str, str]], pagination: dict[str, Any]) -> str:
    """The RFC 8288 `Link` header for a page: prev, next and last relations."""
    kept = [(k, v) for k, v in query if k != "page"]
    links = []
    for rel, key in (("prev", "previous_page"), ("next", "next_page"), ("last", "last_page")):
        page = pagination.get(key)
        if page is not None:
            links.append(f'<{base_url}?{urlencode([*kept, ("page", str(page))])}>; rel="{rel}"')
    return ", ".join(links)


def sort_items(
    items: Sequence[T],
    sorts: Sequence[str],
    allowed: dict[str, Callable[[T], Any]],
) -> list[T]:
    """Sort by `field[:asc|:desc]` specifications, first one most significant.

    Unsorted lists are ordered by id, which callers pass already.

    Raises:
        PageError: a sort field is not allowed for this resource.
    """
    result = list(items)
    # Python's sort is stable, so applying the least significant key first
    # yields a multi-key sort.
    for spec in reversed(sorts):
        field, _, direction = spec.partition(":")
        if field not in allowed or direction not in ("", "asc", "desc"):
            raise PageError(f"invalid sort {spec!r}; allowed: {', '.join(sorted(allowed))}")
        result.sort(key=allowed[field], reverse=direction == "desc")
    return result

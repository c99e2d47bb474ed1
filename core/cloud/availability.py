"""What the API last said of each server type's availability, shared by every worker.

A create is one Hetzner call in the usual case, so availability is not read
before it; it is read after a capacity refusal (`GET /server_types/{id}`,
`HetznerAdapter.server_type_availability`) and remembered here for a minute.
While a location is out of room, every other deploy then skips it without
spending a create call on it, and a location that has room again is used
again within the minute.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping

import redis

log = logging.getLogger(__name__)

_KEY = "rachel-cloud:hcloud:availability:{}"

#: How long what the API said is believed without asking again.
AVAILABILITY_TTL_SECONDS = 60


def remember(store: redis.Redis, server_type: str, where: Mapping[str, bool]) -> None:
    """Keep `server_type`'s availability per location (best effort)."""
    try:
        store.set(_KEY.format(server_type), json.dumps(dict(where)), ex=AVAILABILITY_TTL_SECONDS)
    except redis.RedisError as exc:
        log.debug("could not remember the availability of %s: %s", server_type, exc)


def recall(store: redis.Redis, server_types: Iterable[str]) -> dict[str, dict[str, bool]]:
    """The remembered availability of each of `server_types` that has one (fresh only)."""
    names = list(dict.fromkeys(server_types))
    if not names:
        return {}
    try:
        raw = store.mget([_KEY.format(name) for name in names])
    except redis.RedisError as exc:
        log.debug("could not read remembered availability: %s", exc)
        return {}
    found: dict[str, dict[str, bool]] = {}
    for name, value in zip(names, raw, strict=True):
        if value is None:
            continue
        try:
            data = json.loads(value)
        except ValueError:
            continue
        if isinstance(data, dict):
            found[name] = {str(k): bool(v) for k, v in data.items()}
    return found

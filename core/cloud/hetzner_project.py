"""The adapter's project objects: the shared firewall and the fleet SSH key.

Mixed into `core.cloud.hetzner.HetznerAdapter`, which provides the SDK client,
the Redis client and `_call` (errors translated at the edge: `HetznerError`).
Every server is created behind one firewall (SSH only) and with one project
SSH key; both are get-or-create by name, creation races handled, and their
ids cached in this process and in Redis for every worker. When a create says
a cached id no longer exists (`stale_reference`: deleted in the console, or
cached by a previous simulator), the adapter drops the cache (`forget_cached`)
and looks them up again.
"""

from __future__ import annotations

import contextlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

import redis
from hcloud import Client
from hcloud.firewalls import FirewallRule

from core.cloud.provider import LABEL_MANAGED, HetznerError

log = logging.getLogger(__name__)

_CACHE_TTL_SECONDS = 86400


#: The request fields of a server create that name our cached project objects.
_CACHED_FIELDS = frozenset({"ssh_keys", "firewalls"})


def stale_reference(error: HetznerError) -> bool:
    """Whether a failed create says a firewall or SSH key it named does not exist.

    Hetzner answers `invalid_input` naming the field (`ssh_keys`, `firewalls`)
    in `details.fields`; `not_found` is read the same way. Other invalid input
    (user data too long, an unknown image) is not about the cache.
    """
    if error.code == "not_found":
        return True
    if error.code != "invalid_input":
        return False
    details = getattr(error.__cause__, "details", None)
    fields = details.get("fields") if isinstance(details, dict) else None
    if isinstance(fields, list):
        return any(isinstance(f, dict) and f.get("name") in _CACHED_FIELDS for f in fields)
    return any(f"'{name}'" in error.message for name in _CACHED_FIELDS)


class ProjectObjects(ABC):
    """The shared firewall and the fleet SSH key, over the adapter's client and `_call`."""

    client: Client
    store: redis.Redis | None  # shared by workers: the cached ids
    _ids: dict[str, int]

    @abstractmethod
    def _call(self, operation: str, func: Callable[[], Any]) -> Any:
        """Run `func` with the adapter's error translation (`HetznerAdapter`'s)."""

    def _cached_id(self, kind: str, name: str) -> int | None:
        key = f"{kind}:{name}"
        if key in self._ids:
            return self._ids[key]
        if self.store is not None:
            try:
                value = self.store.get(f"rachel-cloud:hcloud:{key}")
            except redis.RedisError:
                value = None
            if value is not None:
                self._ids[key] = int(value)
                return self._ids[key]
        return None

    def _remember_id(self, kind: str, name: str, object_id: int) -> None:
        self._ids[f"{kind}:{name}"] = object_id
        if self.store is not None:
            try:
                self.store.set(
                    f"rachel-cloud:hcloud:{kind}:{name}", object_id, ex=_CACHE_TTL_SECONDS
                )
            except redis.RedisError as exc:
                log.debug("could not cache %s %s: %s", kind, name, exc)

    def forget_cached(self) -> None:
        """Drop cached firewall and key ids (after an error that says they are gone)."""
        for key in list(self._ids):
            if self.store is not None:
                with contextlib.suppress(redis.RedisError):
                    self.store.delete(f"rachel-cloud:hcloud:{key}")
        self._ids.clear()

    def ensure_firewall(self, name: str, source_ranges: tuple[str, ...]) -> int:
        """The id of the shared firewall admitting SSH only, creating it once."""
        cached = self._cached_id("firewall", name)
        if cached is not None:
            return cached
        rules = [
            FirewallRule(
                direction="in",
                protocol="tcp",
                port="22",
                source_ips=list(source_ranges),
                description="SSH from the control plane",
            )
        ]
        existing = self._call("get firewall", lambda: self.client.firewalls.get_by_name(name))
        if existing is None:
            try:
                created = self._call(
                    "create firewall",
                    lambda: self.client.firewalls.create(
                        name=name,
                        rules=rules,
                        # The SDK annotates labels as str, but sends the dict the API wants.
                        labels={LABEL_MANAGED: "true"},  # type: ignore[arg-type]
                    ),
                )
                existing = created.firewall
                log.info("created the shared firewall %s (id %s)", name, existing.id)
            except HetznerError as exc:
                if exc.code != "uniqueness_error":
                    raise
                # Another worker created it between our lookup and our create.
                existing = self._call(
                    "get firewall", lambda: self.client.firewalls.get_by_name(name)
                )
                if existing is None:
                    raise
        self._remember_id("firewall", name, int(existing.id))
        return int(existing.id)

    def ensure_fleet_key(self, name: str, public_key: Callable[[], str]) -> int:
        """The id of the project SSH key every server is created with.

        Its only job is to stop Hetzner from issuing a root password; each
        server's own key comes through cloud-init. `public_key` is called only
        when the key has to be created.
        """
        cached = self._cached_id("ssh_key", name)
        if cached is not None:
            return cached
        existing = self._call("get ssh key", lambda: self.client.ssh_keys.get_by_name(name))
        if existing is None:
            try:
                existing = self._call(
                    "create ssh key",
                    lambda: self.client.ssh_keys.create(
                        name=name, public_key=public_key(), labels={LABEL_MANAGED: "true"}
                    ),
                )
            except HetznerError as exc:
                if exc.code != "uniqueness_error":
                    raise
                existing = self._call("get ssh key", lambda: self.client.ssh_keys.get_by_name(name))
                if existing is None:
                    raise
        self._remember_id("ssh_key", name, int(existing.id))
        return int(existing.id)

"""The simulator's in-memory project: records of servers, images, keys, firewalls, actions.

Plain data plus the bookkeeping (ids, uniqueness); the asynchronous lifecycle
lives in `sim.lifecycle` and the JSON shapes in `sim.render`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sim.faults import ServerFaults


def utc_now() -> str:
    """The current time as the API writes it (ISO 8601, UTC, seconds)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Action:
    """An asynchronous Hetzner action.

    Attributes:
        scope: the resource family whose `/actions` lists it (`servers`, `firewalls`).
    """

    id: int
    command: str
    scope: str
    resources: list[dict[str, Any]]
    status: str = "running"
    progress: int = 0
    started: str = field(default_factory=utc_now)
    finished: str | None = None
    error: dict[str, str] | None = None

    def succeed(self) -> None:
        """Mark the action finished successfully."""
        self.status, self.progress, self.finished = "success", 100, utc_now()

    def fail(self, code: str = "action_failed", message: str = "Action failed") -> None:
        """Mark the action finished with an error."""
        self.status, self.progress, self.finished = "error", 100, utc_now()
        self.error = {"code": code, "message": message}


@dataclass
class Server:
    """A simulated server as the API sees it (the VPS behind it is `sim.vps.Vps`)."""

    id: int
    name: str
    server_type: dict[str, Any]
    image: dict[str, Any]
    location: str
    labels: dict[str, str]
    user_data: str | None
    public_keys: list[str]
    ipv4: str | None
    ipv6: str | None
    ipv4_id: int
    ipv6_id: int
    faults: ServerFaults
    status: str = "initializing"
    created: str = field(default_factory=utc_now)
    firewall_ids: list[int] = field(default_factory=list)
    root_password: str | None = None
    #: The image a running `create_image` is making of it: the server is locked.
    imaging: int | None = None
    #: The snapshot's disk it was made from (`sim.disk.Disk`); None: a system image's.
    disk: Any = None


@dataclass
class Image:
    """A snapshot image made of a server (system images are `sim.catalog`'s).

    Attributes:
        disk: the server's files when it was taken (`sim.disk.Disk`); None for
            a server that never booted (its disk is the stock image's).
        image_size: GB in Hetzner's storage, known once the image is available.
        disk_size: GB of the disk it holds: servers made from it need as much.
        created_from: (id, name) of the server it was made of.
        base: the system image that server was made from (OS flavour, version).
    """

    id: int
    type: str
    description: str
    labels: dict[str, str]
    architecture: str
    disk_size: float
    created_from: tuple[int, str]
    base: dict[str, Any]
    disk: Any = None
    status: str = "creating"
    image_size: float | None = None
    created: str = field(default_factory=utc_now)


@dataclass
class SshKey:
    """A project SSH key."""

    id: int
    name: str
    public_key: str
    fingerprint: str
    labels: dict[str, str]
    created: str = field(default_factory=utc_now)


@dataclass
class Firewall:
    """A firewall with its rules and what it is applied to.

    Attributes:
        servers: ids of servers it is applied to directly.
        selectors: label selectors it is applied to.
    """

    id: int
    name: str
    labels: dict[str, str]
    rules: list[dict[str, Any]]
    servers: list[int] = field(default_factory=list)
    selectors: list[str] = field(default_factory=list)
    created: str = field(default_factory=utc_now)


class Store:
    """Every record of the simulated project, with id generators.

    Not thread-safe by itself: `sim.engine.Simulator` guards it with its lock.
    """

    def __init__(self) -> None:
        self.servers: dict[int, Server] = {}
        self.ssh_keys: dict[int, SshKey] = {}
        self.firewalls: dict[int, Firewall] = {}
        self.actions: dict[int, Action] = {}
        self.images: dict[int, Image] = {}
        # Hetzner ids are large and per resource type; distinct ranges make a
        # mixed-up id fail loudly with not_found instead of hitting another object.
        self._server_ids = itertools.count(10_000_001)
        self._key_ids = itertools.count(20_000_001)
        self._firewall_ids = itertools.count(30_000_001)
        self._action_ids = itertools.count(40_000_001)
        self._ip_ids = itertools.count(50_000_001)
        # Above the catalogue's system images (1xx_xxx_xxx): never one of theirs.
        self._image_ids = itertools.count(310_000_001)

    def next_server_id(self) -> int:
        """A new server id."""
        return next(self._server_ids)

    def next_key_id(self) -> int:
        """A new SSH key id."""
        return next(self._key_ids)

    def next_firewall_id(self) -> int:
        """A new firewall id."""
        return next(self._firewall_ids)

    def next_ip_id(self) -> int:
        """A new primary IP id."""
        return next(self._ip_ids)

    def next_image_id(self) -> int:
        """A new image id."""
        return next(self._image_ids)

    def new_action(self, command: str, scope: str, resources: list[tuple[str, int]]) -> Action:
        """Record a new running action on the given (type, id) resources."""
        action = Action(
            id=next(self._action_ids),
            command=command,
            scope=scope,
            resources=[{"id": rid, "type": rtype} for rtype, rid in resources],
        )
        self.actions[action.id] = action
        return action

    def server_named(self, name: str) -> Server | None:
        """The server called `name`, if any."""
        return next((s for s in self.servers.values() if s.name == name), None)

    def key_named(self, name: str) -> SshKey | None:
        """The SSH key called `name`, if any."""
        return next((k for k in self.ssh_keys.values() if k.name == name), None)

    def key_with_fingerprint(self, fingerprint: str) -> SshKey | None:
        """The SSH key with this MD5 fingerprint, if any."""
        return next((k for k in self.ssh_keys.values() if k.fingerprint == fingerprint), None)

    def firewall_named(self, name: str) -> Firewall | None:
        """The firewall called `name`, if any."""
        return next((f for f in self.firewalls.values() if f.name == name), None)

    def actions_for(self, rtype: str, rid: int) -> list[Action]:
        """Every action on resource (rtype, rid), oldest first."""
        return [
            a
            for a in self.actions.values()
            if any(r["type"] == rtype and r["id"] == rid for r in a.resources)
        ]

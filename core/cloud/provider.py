"""What the control plane knows of Hetzner Cloud, apart from the client that talks to it.

The labels that mark our servers, the error every Hetzner failure becomes
(code, transient or not, correlation id; `CapacityError` for a location
without room), the records of a server and of an image on Hetzner and the
spec of a server to create. The reconciler's pure decisions use
these without the adapter (`core.cloud.hetzner`) and its SDK client.
"""

from __future__ import annotations

from dataclasses import dataclass

from hcloud import APIException
from hcloud.images import BoundImage
from hcloud.servers import BoundServer

from core.errors import RachelError

LABEL_MANAGED = "rachel-cloud/managed"
LABEL_SERVER = "rachel-cloud/server"
LABEL_CUSTOMER = "rachel-cloud/customer"
LABEL_ENV = "rachel-cloud/env"

#: API error codes that a later retry may get past.
TRANSIENT_CODES = frozenset(
    {
        "rate_limit_exceeded",
        "conflict",
        "locked",
        "timeout",
        "unavailable",
        "server_error",
        "service_error",
        "maintenance",
        "bad_gateway",
        "rate_limit_reserve",
    }
)


class HetznerError(RachelError):
    """An error from the Hetzner Cloud API (or from reaching it).

    Attributes:
        code: the API's error code (`rate_limit_exceeded`, `not_found`, ...),
            `network_error` when the API could not be reached.
        transient: whether a retry later may succeed.
        retry_after: seconds the API asked us to wait, when it said.
        fields: the request's fields an `invalid_input` names (`image`, ...).
    """

    code = "hetzner_error"

    def __init__(
        self,
        message: str,
        *,
        code: str,
        transient: bool,
        correlation_id: str | None = None,
        retry_after: float | None = None,
        fields: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message, code=code, transient=transient, correlation_id=correlation_id)
        self.retry_after = retry_after
        self.fields = fields

    @property
    def image_refused(self) -> bool:
        """Hetzner refused the request's image: it does not exist (any more) or does not fit."""
        return self.code == "invalid_input" and "image" in self.fields


#: What Hetzner answers a create when the location has no room for the server type.
CAPACITY_CODES = frozenset({"resource_unavailable", "placement_error"})


class CapacityError(HetznerError):
    """Hetzner has no room for this server type in this location now
    (`resource_unavailable`, 412) or failed to place it (`placement_error`, 422).

    Not transient: retrying the same location and type is not the answer; the
    creating job tries the next location or type.
    """


def translate(exc: APIException, operation: str) -> HetznerError:
    """Our error for an SDK `APIException` (codes are strings, or an HTTP status)."""
    code = str(exc.code)
    transient = code in TRANSIENT_CODES or (code.isdigit() and int(code) >= 500)
    where = f" (correlation id {exc.correlation_id})" if exc.correlation_id else ""
    kind = CapacityError if code in CAPACITY_CODES else HetznerError
    details = exc.details if isinstance(exc.details, dict) else {}
    named = details.get("fields")
    fields = tuple(
        str(f["name"])
        for f in (named if isinstance(named, list) else [])
        if isinstance(f, dict) and f.get("name")
    )
    return kind(
        f"{operation}: {code}: {exc.message}{where}",
        code=code,
        transient=transient,
        correlation_id=exc.correlation_id,
        fields=fields,
    )


@dataclass(frozen=True)
class ProviderServer:
    """What we need to know of a server on Hetzner."""

    id: int
    name: str
    status: str
    ipv4: str | None
    ipv6: str | None
    labels: dict[str, str]
    created: str | None = None

    @property
    def server_id(self) -> int | None:
        """Our server id, from its label; None for a server we did not label."""
        value = self.labels.get(LABEL_SERVER, "")
        return int(value) if value.isdigit() else None

    @classmethod
    def from_bound(cls, server: BoundServer) -> ProviderServer:
        net = server.public_net
        ipv4 = net.ipv4.ip if net is not None and net.ipv4 is not None else None
        ipv6 = net.ipv6.ip if net is not None and net.ipv6 is not None else None
        created = server.created.isoformat() if server.created is not None else None
        return cls(
            id=int(server.id or 0),
            name=str(server.name),
            status=str(server.status),
            ipv4=ipv4,
            ipv6=ipv6,
            labels=dict(server.labels or {}),
            created=created,
        )


@dataclass(frozen=True)
class ProviderImage:
    """What we need to know of an image on Hetzner (a snapshot, mostly).

    Attributes:
        status: `creating`, `available` or `unavailable`.
        image_size: GB billed for its storage (None while it is being made).
        disk_size: GB of disk a server made from it needs at least.
        created_from: the id of the server it was made of.
    """

    id: int
    type: str
    status: str
    description: str
    labels: dict[str, str]
    architecture: str
    disk_size: float
    image_size: float | None = None
    created: str | None = None
    created_from: int | None = None

    @classmethod
    def from_bound(cls, image: BoundImage) -> ProviderImage:
        origin = image.created_from
        return cls(
            id=int(image.id or 0),
            type=str(image.type),
            status=str(image.status),
            description=str(image.description or ""),
            labels=dict(image.labels or {}),
            architecture=str(image.architecture),
            disk_size=float(image.disk_size or 0),
            image_size=float(image.image_size) if image.image_size is not None else None,
            created=image.created.isoformat() if image.created is not None else None,
            created_from=int(origin.id) if origin is not None and origin.id else None,
        )


@dataclass(frozen=True)
class CreateSpec:
    """A server to create: everything but secrets (none are ever sent to Hetzner)."""

    server_id: int
    customer_id: int
    name: str
    server_type: str
    #: A system image's name, or an image's id (a snapshot has no name).
    image: str
    location: str
    user_data: str
    env: str
    #: An earlier attempt may have reached Hetzner: look it up before creating.
    maybe_exists: bool = False

    def labels(self) -> dict[str, str]:
        return {
            LABEL_MANAGED: "true",
            LABEL_SERVER: str(self.server_id),
            LABEL_CUSTOMER: str(self.customer_id),
            LABEL_ENV: self.env,
        }

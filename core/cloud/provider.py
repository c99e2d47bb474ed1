"""What the control plane knows of Hetzner Cloud, apart from the client that talks to it.

The labels that mark our servers, the error every Hetzner failure becomes
(code, transient or not, correlation id), the record of a server on
Hetzner and the spec of one to create. The reconciler's pure decisions use
these without the adapter (`core.cloud.hetzner`) and its SDK client.
"""

from __future__ import annotations

from dataclasses import dataclass

from hcloud import APIException
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
    ) -> None:
        super().__init__(message, code=code, transient=transient, correlation_id=correlation_id)
        self.retry_after = retry_after


def translate(exc: APIException, operation: str) -> HetznerError:
    """Our error for an SDK `APIException` (codes are strings, or an HTTP status)."""
    code = str(exc.code)
    transient = code in TRANSIENT_CODES or (code.isdigit() and int(code) >= 500)
    where = f" (correlation id {exc.correlation_id})" if exc.correlation_id else ""
    return HetznerError(
        f"{operation}: {code}: {exc.message}{where}",
        code=code,
        transient=transient,
        correlation_id=exc.correlation_id,
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
class CreateSpec:
    """A server to create: everything but secrets (none are ever sent to Hetzner)."""

    server_id: int
    customer_id: int
    name: str
    server_type: str
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

"""Controllers of the status API (API key): server status, customer's server, SSE events."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get
from litestar.concurrency import sync_to_thread
from litestar.di import NamedDependency
from litestar.params import Parameter
from litestar.response import ServerSentEvent

from webhook import services
from webhook.context import Ctx
from webhook.errors import responses
from webhook.guards import api_key
from webhook.sse import server_events
from webhook.structs import DeployStatus, ServerStatus

ServerId = Annotated[int, Parameter(ge=1, le=2**31 - 1, description="The server's id.")]
CustomerId = Annotated[
    str,
    Parameter(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$",
        max_length=128,
        description="The dashboard's id of the customer.",
    ),
]

DeliveryId = Annotated[
    str,
    Parameter(
        min_length=1,
        max_length=129,
        description="The `webhook-id` the deploy was delivered under (URL-escaped).",
    ),
]


class StatusController(Controller):
    """Where a server is: status, phase timings, last error, live events."""

    path = "/api"
    tags = ["status"]  # noqa: RUF012 - Litestar's class attribute
    guards = [api_key]  # noqa: RUF012
    security = [{"apiKey": []}]  # noqa: RUF012

    @get(
        "/servers/{server_id:int}",
        sync_to_thread=True,
        summary="A server's status",
        responses=responses(400, 401, 404, 500, 503),
    )
    def server(self, ctx: Ctx, server_id: ServerId) -> ServerStatus:
        """Status, phase timings (pending, creating, cloud_init, injecting_secrets), last error."""
        return services.server_status(ctx, server_id)

    @get(
        "/customers/{customer_id:str}/server",
        sync_to_thread=True,
        summary="A customer's server",
        responses=responses(400, 401, 404, 500, 503),
    )
    def customer_server(self, ctx: Ctx, customer_id: CustomerId) -> ServerStatus:
        """The customer's live server, else their most recent one."""
        return services.customer_server(ctx, customer_id)

    @get(
        "/deploys/{webhook_id:path}",
        sync_to_thread=True,
        summary="What became of a deploy webhook",
        responses=responses(400, 401, 404, 500, 503),
    )
    def deploy(self, ctx: Ctx, webhook_id: DeliveryId) -> DeployStatus:
        """Accepted, done (with the server), refused or failed (with the reason)."""
        return services.deploy_status(ctx, webhook_id.lstrip("/"))

    @get(
        "/servers/{server_id:int}/events",
        media_type="text/event-stream",
        summary="A server's live events (Server-Sent Events)",
        response_description="`text/event-stream`: a `snapshot` event (the server's status), "
        "then a `transition` event per status change, and `: keepalive` comments.",
        responses=responses(400, 401, 404, 500, 503),
    )
    async def events(
        self, ctx: Ctx, server_id: ServerId, heartbeat: NamedDependency[float]
    ) -> ServerSentEvent:
        """Stream the server's status changes as they happen (Redis pub/sub, no polling).

        Streams share the process's one subscription; past RACHEL_SSE_MAX_STREAMS
        of them a new one is refused with 503 and `Retry-After`.
        """
        feed = await ctx.hub.subscribe(server_id)
        try:
            snapshot = await sync_to_thread(services.server_status, ctx, server_id)
        except BaseException:
            feed.close()
            raise
        stream = server_events(feed, snapshot, heartbeat)
        feed.bind(stream)
        return ServerSentEvent(stream)

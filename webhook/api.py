"""Controllers of the status API (API key): server status (with health), customer's server,
SSE events, and the customer's own operations on their assistant: restart, logs."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get, post
from litestar.concurrency import sync_to_thread
from litestar.di import NamedDependency
from litestar.params import Parameter
from litestar.response import ServerSentEvent

from core.cloud.vps_ops import MAX_LOG_LINES
from webhook import health_services, services
from webhook.context import Ctx
from webhook.errors import responses
from webhook.guards import api_key
from webhook.sse import server_events
from webhook.structs import DeployStatus, LogLines, Restarted, ServerStatus

ServerId = Annotated[int, Parameter(ge=1, le=2**31 - 1, description="The server's id.")]
CustomerId = Annotated[
    str,
    Parameter(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$",
        max_length=128,
        description="The dashboard's id of the customer.",
    ),
]

LineCount = Annotated[
    int,
    Parameter(
        ge=1,
        le=MAX_LOG_LINES,
        description=f"How many of the journal's last lines, 1 to {MAX_LOG_LINES}.",
    ),
]
DEFAULT_LOG_LINES = 100

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
        """Status, phase timings (pending, creating, cloud_init, injecting_secrets), last error;
        health (state, reason, since), uptime over 30 days and the last heartbeat."""
        return services.server_status(ctx, server_id)

    @post(
        "/servers/{server_id:int}/restart",
        status_code=200,
        sync_to_thread=True,
        summary="Restart the server's assistant (Rachel8)",
        responses=responses(400, 401, 404, 409, 500, 502, 503),
    )
    def restart(self, ctx: Ctx, server_id: ServerId) -> Restarted:
        """Restart Rachel8 on a ready server's VPS (over SSH, within about 20 s) and answer
        with the unit's state right after; its next heartbeats tell whether it stays up.
        Recorded on the server's timeline."""
        return health_services.restart(ctx, server_id)

    @get(
        "/servers/{server_id:int}/logs",
        sync_to_thread=True,
        summary="The last lines of the assistant's log",
        responses=responses(400, 401, 404, 409, 500, 502, 503),
    )
    def logs(self, ctx: Ctx, server_id: ServerId, lines: LineCount = DEFAULT_LOG_LINES) -> LogLines:
        """Rachel8's journal on a ready server's VPS, oldest first, with secrets masked
        (tokens, keys, the customer's own credentials)."""
        return health_services.logs(ctx, server_id, lines)

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

"""The Litestar application: routes, limits, error mapping, OpenAPI at `/schema`.

`create_app(ctx)` builds it from a `WebContext`; `rachel-cloud web` serves it
with uvicorn, and the tests use it directly or serve it the same way.
"""

from __future__ import annotations

from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, YamlRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme

from webhook.api import StatusController
from webhook.context import WebContext
from webhook.errors import EXCEPTION_HANDLERS
from webhook.guards import API_KEY_HEADER
from webhook.heartbeat_asgi import install as install_heartbeat_path
from webhook.heartbeats import HeartbeatController
from webhook.observe import count_results
from webhook.ops import OpsController
from webhook.sse import HEARTBEAT_SECONDS
from webhook.webhooks import CallbackController, WebhookController

DESCRIPTION = """\
The rachel-cloud control plane's HTTP API.

- Webhooks (`/webhooks/*`) are signed with Standard Webhooks (`webhook-id`,
  `webhook-timestamp`, `webhook-signature`); `webhook-id` is the idempotency key.
- The cloud-init callback takes the server's one-time bearer token.
- Heartbeats (`/heartbeats/{id}`) take the server's heartbeat credential as a bearer
  token, from the server's own address.
- The status API takes an `X-API-Key` header.
- Every error is `{"error": {"code": "...", "message": "..."}}`.
- Request bodies are limited in size (RACHEL_MAX_BODY_BYTES) and nesting depth;
  unknown fields are rejected.
"""


def create_app(
    ctx: WebContext, *, heartbeat: float = HEARTBEAT_SECONDS, debug: bool = False
) -> Litestar:
    """The web app over `ctx`.

    Args:
        ctx: settings, keys and Redis clients shared by the handlers.
        heartbeat: seconds between SSE keepalive comments.
        debug: Litestar debug mode (never in production: it shows tracebacks).
    """

    async def close_context() -> None:
        await ctx.close()

    openapi = OpenAPIConfig(
        title="rachel-cloud",
        version="1",
        description=DESCRIPTION,
        path="/schema",
        render_plugins=[JsonRenderPlugin(), YamlRenderPlugin()],
        components=Components(
            security_schemes={
                "apiKey": SecurityScheme(
                    type="apiKey", name=API_KEY_HEADER, security_scheme_in="header"
                ),
                "callbackToken": SecurityScheme(
                    type="http",
                    scheme="bearer",
                    description="The server's one-time callback token.",
                ),
                "heartbeatCredential": SecurityScheme(
                    type="http",
                    scheme="bearer",
                    description="The server's heartbeat credential (issued by each injection, "
                    "bound to the server's address).",
                ),
            }
        ),
    )
    app = Litestar(
        route_handlers=[
            WebhookController,
            CallbackController,
            HeartbeatController,
            StatusController,
            OpsController,
        ],
        dependencies={
            "ctx": Provide(lambda: ctx, use_cache=True, sync_to_thread=False),
            "heartbeat": Provide(lambda: heartbeat, use_cache=True, sync_to_thread=False),
        },
        state=State({"ctx": ctx}),
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[count_results],
        request_max_body_size=ctx.settings.max_body_bytes,
        # Litestar's default config would replace the process's redacting log
        # setup (core.platform.logs) with its own handlers and format.
        logging_config=None,
        openapi_config=openapi,
        on_shutdown=[close_context],
        debug=debug,
    )
    install_heartbeat_path(app, ctx)
    return app

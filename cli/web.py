"""`rachel-cloud web`: serve the webhook app (Litestar) with uvicorn."""

from __future__ import annotations

import click

from cli.common import runtime


@click.command("web")
@click.option("--host", default=None, help="Address to bind (default: RACHEL_WEB_HOST).")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Port to listen on (default: RACHEL_WEB_PORT; 0 picks a free one).",
)
def web_command(host: str | None, port: int | None) -> None:
    """Serve the webhooks, cloud-init callbacks, status API, health and metrics."""
    import uvicorn

    from webhook.app import create_app
    from webhook.context import WebContext

    rt = runtime("web")
    settings = rt.settings
    ctx = WebContext.build(settings)
    app = create_app(ctx)
    uvicorn.run(
        app,
        host=host or settings.web_host,
        port=settings.web_port if port is None else port,
        # Our logging setup (redacted) handles uvicorn's records too.
        log_config=None,
        # X-Forwarded-For is honoured only from RACHEL_TRUSTED_PROXIES, by the app.
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=10,
    )

"""`rachel-cloud web`: serve the webhook app (Litestar) with uvicorn."""

from __future__ import annotations

import contextlib
import gc
import socket
from typing import TYPE_CHECKING, Any

import click

from cli.common import runtime

if TYPE_CHECKING:
    from litestar import Litestar

    from cli.runtime import Runtime


def app_factory(rt: Runtime | None = None) -> Litestar:
    """The web app on this process's settings (each uvicorn worker calls it)."""
    from jobs.work import RQWork
    from webhook.app import create_app
    from webhook.context import WebContext

    rt = rt or runtime("web")
    # The composition root: the web app reaches the job system through this port only.
    app = create_app(WebContext.build(rt.settings, RQWork()))
    # Everything built so far lives as long as the process: out of the
    # collector's reach, full collections stay short. They were the deploy
    # webhook's latency tail: p99 85 ms without, 39-48 ms with (bench/webhook.py).
    gc.collect()
    gc.freeze()
    return app


@click.command("web")
@click.option("--host", default=None, help="Address to bind (default: RACHEL_WEB_HOST).")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Port to listen on (default: RACHEL_WEB_PORT; 0 picks a free one).",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Processes serving the app (uvicorn workers); about one per core.",
)
def web_command(host: str | None, port: int | None, workers: int) -> None:
    """Serve the webhooks, cloud-init callbacks, status API, health and metrics."""
    import uvicorn

    rt = runtime("web")
    settings = rt.settings
    options: dict[str, Any] = {
        "host": host or settings.web_host,
        "port": settings.web_port if port is None else port,
        # Our logging setup (redacted) handles uvicorn's records too.
        "log_config": None,
        # X-Forwarded-For is honoured only from RACHEL_TRUSTED_PROXIES, by the app.
        "proxy_headers": False,
        "server_header": False,
        "access_log": settings.access_log,
        "timeout_graceful_shutdown": 10,
    }
    if workers == 1:
        uvicorn.run(app_factory(rt), **options)
        return
    # Several processes: each builds its own app (its own connections) with
    # `app_factory`, on a socket bound here.
    from uvicorn.supervisors import Multiprocess

    config = uvicorn.Config("cli.web:app_factory", factory=True, workers=workers, **options)
    sock = config.bind_socket()
    # The workers get this socket with proto 0, and asyncio sets TCP_NODELAY only
    # on sockets that say IPPROTO_TCP: every answer written in two parts would
    # wait out the client's delayed ACK (~40 ms). Accepted sockets inherit it.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with contextlib.suppress(KeyboardInterrupt):
        Multiprocess(config, sockets=[sock]).run()

"""The trivial Litestar endpoints `bench/webhook.py` and `bench/heartbeat.py` measure beside ours.

Each reads the body and answers 202, doing nothing else: the floor of the
framework and the server.

    python bench/_trivial.py --port 8001 --workers 2

Served the way `rachel-cloud web` serves (uvicorn; with several workers, on a
socket bound first, with TCP_NODELAY), so that the two differ only in the app.
"""

from __future__ import annotations

import argparse
import contextlib
import socket

import uvicorn
from litestar import Litestar, Request, get, post
from uvicorn.supervisors import Multiprocess


@post("/webhooks/deploy", status_code=202)
async def deploy(request: Request) -> dict[str, bool]:  # type: ignore[type-arg]
    """Read the body and answer 202, doing nothing else."""
    await request.body()
    return {"accepted": True}


@post("/heartbeats/{server_id:int}", status_code=202)
async def heartbeat(request: Request, server_id: int) -> dict[str, bool]:  # type: ignore[type-arg]
    """The heartbeat route's floor (bench/heartbeat.py): read the body and answer 202."""
    await request.body()
    return {"accepted": True}


@get("/healthz")
async def healthz() -> dict[str, bool]:
    """Up."""
    return {"ok": True}


app = Litestar(route_handlers=[deploy, heartbeat, healthz], logging_config=None)


def main() -> None:
    parser = argparse.ArgumentParser(description="the trivial endpoint")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    options = {"host": "127.0.0.1", "port": args.port, "log_level": "warning", "access_log": False}
    if args.workers == 1:
        uvicorn.run(app, **options)  # type: ignore[arg-type]
        return
    config = uvicorn.Config("_trivial:app", workers=args.workers, **options)  # type: ignore[arg-type]
    sock = config.bind_socket()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    with contextlib.suppress(KeyboardInterrupt):
        Multiprocess(config, sockets=[sock]).run()


if __name__ == "__main__":
    main()

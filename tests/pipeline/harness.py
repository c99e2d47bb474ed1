"""An end-to-end stack for pipeline tests: database, Redis, simulator, workers, web.

Everything is real: the database of the `db` fixture, the test Redis server,
the simulator on loopback, RQ's SimpleWorker in burst mode (driven in a loop
until a condition holds, scheduled jobs included) and, when `web=True`, the
webhook app served by uvicorn so that simulated VPSs can call back.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import redis
import uvicorn
from rq import SimpleWorker

from core.platform.settings import Settings
from core.security.crypto import KeyRing, generate_key_entry
from core.store.models import Customer, Server
from jobs.context import JobContext, use_context
from jobs.queues import WORKER_QUEUES, queue
from sim.server import SimulatorServer
from tests.conftest import make_settings


@dataclass
class Stack:
    settings: Settings
    redis: redis.Redis
    sim: SimulatorServer
    ring: KeyRing
    ctx: JobContext
    customers: list[Customer] = field(default_factory=list)

    def worker(self) -> SimpleWorker:
        return SimpleWorker([queue(self.redis, n) for n in WORKER_QUEUES], connection=self.redis)

    def drain(
        self, until: Callable[[], bool], timeout: float = 30.0, what: str = "the condition"
    ) -> None:
        """Run burst workers (and the scheduler) until `until()` holds."""
        deadline = time.monotonic() + timeout
        worker = self.worker()
        while True:
            worker.work(burst=True, with_scheduler=True, logging_level="ERROR")
            if until():
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.02)

    def status(self, server_id: int) -> str:
        status: str = Server.get_by_id(server_id).status
        return status

    def wait_status(self, server_id: int, *statuses: str, timeout: float = 30.0) -> Server:
        self.drain(
            lambda: self.status(server_id) in statuses,
            timeout,
            f"server {server_id} to be {' or '.join(statuses)}",
        )
        found: Server = Server.get_by_id(server_id)
        return found

    def provider_servers(self) -> list[int]:
        return [s.id for s in self.ctx.hetzner.list_managed()]


def build_stack(
    tmp_path: Path,
    redis_client: redis.Redis,
    sim: SimulatorServer,
    public_url: str = "http://127.0.0.1:9/",
    **env: str,
) -> Stack:
    entry = generate_key_entry()
    settings = make_settings(
        tmp_path,
        RACHEL_MASTER_KEYS=entry,
        RACHEL_SIM_PORT=str(sim.port),
        RACHEL_PUBLIC_URL=public_url,
        RACHEL_BOOT_TIMEOUT=env.pop("RACHEL_BOOT_TIMEOUT", "5s"),
        RACHEL_RETRY_BASE=env.pop("RACHEL_RETRY_BASE", "0.05s"),
        # Long enough to see the simulated Rachel8 (at the simulator's test time
        # scale) crash and be restarted, short enough for a test.
        RACHEL_SERVICE_SETTLE=env.pop("RACHEL_SERVICE_SETTLE", "0.3s"),
        # The agents' heartbeats, at the simulator's time scale, every 36 s of a
        # test's time unless a test watches health: a test of provisioning
        # then spends no CPU on them (the first one still goes out).
        RACHEL_HEARTBEAT_INTERVAL=env.pop("RACHEL_HEARTBEAT_INTERVAL", "1h"),
        RACHEL_NAME_PREFIX="test",
        **env,
    )
    ring = KeyRing([entry])
    ctx = JobContext(settings=settings, keyring=ring, redis=redis_client)
    use_context(ctx)
    return Stack(settings=settings, redis=redis_client, sim=sim, ring=ring, ctx=ctx)


@contextmanager
def served_stack(
    tmp_path: Path,
    redis_client: redis.Redis,
    redis_url: str,
    sim: SimulatorServer,
    web: WebServer | None = None,
    **env: str,
) -> Iterator[Stack]:
    """`build_stack` with the web app served, so that the VPSs' callbacks reach it.

    The web server is stopped afterwards when this made it (a `web` passed in
    is its owner's to stop), and the job context is reset.
    """
    own = web is None
    server = web if web is not None else WebServer()
    built = build_stack(
        tmp_path, redis_client, sim, public_url=server.url, REDIS_URL=redis_url, **env
    )
    server.start(built.settings, redis_url)
    try:
        yield built
    finally:
        if own:
            server.stop()
        use_context(None)


class WebServer:
    """The webhook app served by uvicorn on a loopback port, in a thread."""

    def __init__(self) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(("127.0.0.1", 0))
        self.port: int = self.socket.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self, settings: Settings, redis_url: str) -> None:
        from jobs.work import RQWork
        from webhook.app import create_app
        from webhook.context import WebContext

        app = create_app(WebContext.build(settings, RQWork(), url=redis_url))
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self.socket]}, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the web app did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.socket.close()

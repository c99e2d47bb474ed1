"""Run the simulator: in-process on a background thread (tests) or in the foreground.

```python
with SimulatorServer(SimConfig(create_seconds=0.1)) as sim:
    client = hcloud.Client(token=sim.token, api_endpoint=sim.endpoint, poll_interval=0.1)
    ...
    sim.set_faults({"errors": {"create_server": {"code": "unavailable"}}})
    print(sim.stats()["requests"])
```
"""

from __future__ import annotations

import contextlib
import logging
import resource
import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

import msgspec
import uvicorn

from core.errors import RachelError
from sim.app import SimulatorApp
from sim.config import SimConfig
from sim.engine import Simulator
from sim.faults import Faults, parse_faults
from sim.vps import Vps

log = logging.getLogger(__name__)


class SimulatorError(RachelError):
    """The simulator cannot start (port in use, bad configuration)."""

    code = "simulator_error"


def bind_socket(host: str, port: int) -> socket.socket:
    """Bind the API's listening socket up front so a taken port is a clear error.

    Raises:
        SimulatorError: the address cannot be bound.
    """
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise SimulatorError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    # Accepted sockets inherit TCP_NODELAY on Linux; without it every small
    # answer waits out the client's delayed ACK (about 40 ms per request).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def raise_open_file_limit() -> None:
    """Lift the soft open-file limit to the hard one.

    One SSH listener per VPS: a thousand VPSs need more than the usual 1024.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = 65536 if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def _uvicorn_server(app: SimulatorApp) -> uvicorn.Server:
    config = uvicorn.Config(
        app,
        lifespan="on",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=2,
        # Benchmarks open many connections; do not cap them below the kernel's.
        backlog=2048,
    )
    return uvicorn.Server(config)


class SimulatorServer:
    """The simulator running in this process on a background thread.

    Attributes:
        config: the configuration (port 0 means an ephemeral port).
        simulator: the simulator core, for direct access to its state.
    """

    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config or SimConfig()
        self.simulator = Simulator(self.config)
        self._socket: socket.socket | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------

    def start(self, timeout: float = 10.0) -> SimulatorServer:
        """Start serving; returns when the API answers.

        Raises:
            SimulatorError: the port is taken or the server did not come up.
        """
        raise_open_file_limit()
        self._socket = bind_socket(self.config.host, self.config.port)
        self._server = _uvicorn_server(SimulatorApp(self.simulator))
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._socket]},
            name="rachel-sim",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise SimulatorError("the simulator did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        """Stop serving, destroy every VPS and free the port."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(15)
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._socket.close()
        self._server = self._thread = self._socket = None

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- where to reach it --------------------------------------------------

    @property
    def port(self) -> int:
        """The API's port."""
        if self._socket is None:
            raise SimulatorError("the simulator is not running")
        return int(self._socket.getsockname()[1])

    @property
    def url(self) -> str:
        """Base URL without the API prefix (`http://127.0.0.1:PORT`)."""
        return f"http://{self.config.host}:{self.port}"

    @property
    def endpoint(self) -> str:
        """The Hetzner API endpoint to give `hcloud.Client(api_endpoint=...)`."""
        return f"{self.url}/v1"

    @property
    def token(self) -> str:
        """The accepted bearer token."""
        return self.config.token

    # -- programmatic control -----------------------------------------------

    def set_faults(self, faults: Faults | dict[str, Any] | str) -> None:
        """Replace the active faults (a `Faults`, a dict or a JSON document).

        Raises:
            sim.faults.FaultError: the document is invalid.
        """
        if isinstance(faults, dict):
            faults = parse_faults(msgspec.json.encode(faults))
        elif isinstance(faults, str):
            faults = parse_faults(faults)
        self.simulator.set_faults(faults)

    def clear_faults(self) -> None:
        """No faults at all."""
        self.simulator.set_faults(Faults())

    def stats(self) -> dict[str, Any]:
        """Counters: `requests` per operation, `errors`, `rate_limited`, per-server timings."""
        with self.simulator.lock:
            return self.simulator.stats.as_dict()

    def vps(self, server_id: int) -> Vps | None:
        """The VPS of a server, once it has booted."""
        with self.simulator.lock:
            return self.simulator.vpss.get(server_id)

    def vps_list(self) -> list[dict[str, Any]]:
        """A summary of every VPS (as `/_sim/vps`)."""
        with self.simulator.lock:
            return [v.describe() for v in self.simulator.vpss.values()]

    def reset(self) -> None:
        """Back to an empty project (servers, keys, firewalls, stats, faults)."""
        self.simulator.call_soon(self.simulator.reset())

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Poll `predicate` until it is true.

        Raises:
            TimeoutError: it stayed false for `timeout` seconds.
        """
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise TimeoutError("condition not met in time")
            time.sleep(0.01)


def serve_forever(config: SimConfig) -> None:
    """Run the simulator in the foreground until interrupted (Ctrl-C).

    Raises:
        SimulatorError: the port is taken.
    """
    raise_open_file_limit()
    sock = bind_socket(config.host, config.port)
    try:
        _uvicorn_server(SimulatorApp(Simulator(config))).run(sockets=[sock])
    finally:
        sock.close()

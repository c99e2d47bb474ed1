"""Fixtures for the pipeline: the simulator in-process and an adapter on it."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import peewee
import pytest
import redis

from core.cloud.hetzner import HetznerAdapter
from sim.config import SimConfig
from sim.server import SimulatorServer
from tests.pipeline.harness import Stack, WebServer, served_stack
from tests.stand_ins import Receiver


@pytest.fixture
def sim() -> Iterator[SimulatorServer]:
    """A fast simulator on an ephemeral port (VPS SSH on port 2222 of their own addresses)."""
    with SimulatorServer(SimConfig(seed=7, time_scale=0.01)) as server:
        yield server


@pytest.fixture
def adapter(sim: SimulatorServer, redis_client: redis.Redis) -> HetznerAdapter:
    return HetznerAdapter.connect(sim.endpoint, sim.token, env="test", redis_client=redis_client)


@pytest.fixture
def web() -> Iterator[WebServer]:
    """The webhook app on a loopback port (started by the test's stack fixture)."""
    server = WebServer()
    yield server
    server.stop()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """The operators' webhook: what alerts reach (`Receiver.bodies`)."""
    found = Receiver()
    yield found
    found.close()


@pytest.fixture
def served(
    db: peewee.Database,
    sim: SimulatorServer,
    web: WebServer,
    redis_client: redis.Redis,
    redis_server_url: str,
    tmp_path: Path,
) -> Iterator[Stack]:
    """The whole stack with the web app served, so VPSs call back (boot deadline 8 s)."""
    with served_stack(
        tmp_path, redis_client, redis_server_url, sim, web, RACHEL_BOOT_TIMEOUT="8s"
    ) as built:
        yield built


@pytest.fixture
def timed_sim() -> Iterator[SimulatorServer]:
    """Per-path timings: the stock install is long (180 s), cloud-init from an image short."""
    config = SimConfig(seed=7, time_scale=0.01, install_seconds=180, cloud_init_seconds=10)
    with SimulatorServer(config) as server:
        yield server


@pytest.fixture
def timed_stack(
    db: peewee.Database,
    timed_sim: SimulatorServer,
    web: WebServer,
    redis_client: redis.Redis,
    redis_server_url: str,
    tmp_path: Path,
) -> Iterator[Callable[..., Stack]]:
    """Builds the served stack on `timed_sim` with the settings given (once per test)."""
    with contextlib.ExitStack() as exits:

        def build(**env: str) -> Stack:
            return exits.enter_context(
                served_stack(tmp_path, redis_client, redis_server_url, timed_sim, web, **env)
            )

        yield build

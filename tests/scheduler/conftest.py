"""Fixtures of the scheduler tests: the simulator (as in tests/pipeline), a stack."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import peewee
import pytest
import redis

from jobs.context import use_context
from sim.config import SimConfig
from sim.server import SimulatorServer
from tests.pipeline.harness import Stack, build_stack


@pytest.fixture
def sim() -> Iterator[SimulatorServer]:
    """A fast simulator on an ephemeral port."""
    with SimulatorServer(SimConfig(seed=11)) as server:
        yield server


@pytest.fixture
def stack(
    db: peewee.Database, tmp_path: Path, redis_client: redis.Redis, sim: SimulatorServer
) -> Iterator[Stack]:
    yield build_stack(tmp_path, redis_client, sim, RACHEL_BOOT_TIMEOUT="60s")
    use_context(None)

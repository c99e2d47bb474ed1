"""`rachel-cloud pool list|refill`, run as a real subprocess."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.test_cli import run


@pytest.fixture
def env(redis_server_url: str) -> dict[str, str]:
    return {"REDIS_URL": redis_server_url, "RACHEL_PRICES": "cx23=7.3"}


def test_pool_list_and_refill_of_a_disabled_empty_pool(tmp_path: Path, env: dict[str, str]) -> None:
    assert run("db", "upgrade", cwd=tmp_path).returncode == 0
    listed = run("pool", "list", cwd=tmp_path, env=env)
    assert listed.returncode == 0, listed.stderr
    assert "STATE" in listed.stdout
    assert "idle: 0 billed, EUR 0.000/h, EUR 0.00/month" in listed.stdout
    assert run("pool", "list", "--json", cwd=tmp_path, env=env).stdout == ""
    refilled = run("pool", "refill", cwd=tmp_path, env=env)
    assert refilled.returncode == 0, refilled.stderr
    assert refilled.stdout.startswith("pool:"), refilled.stdout  # nothing to do, nothing done
    bad = run("pool", "list", cwd=tmp_path, env={**env, "RACHEL_PRICES": "cx23"})
    assert bad.returncode == 2 and "RACHEL_PRICES" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_pool_list_shows_each_place_and_its_target(tmp_path: Path, env: dict[str, str]) -> None:
    assert run("db", "upgrade", cwd=tmp_path).returncode == 0
    places = {**env, "RACHEL_POOL": "true", "RACHEL_POOL_PLACES": "fsn1/cx23=2..4,nbg1/cx33"}
    listed = run("pool", "list", cwd=tmp_path, env=places)
    assert listed.returncode == 0, listed.stderr
    assert "fsn1/cx23: 0 warm, 0 being made; target 2 (2..4)" in listed.stdout
    assert "nbg1/cx33: 0 warm, 0 being made; target 1 (1..5)" in listed.stdout  # the defaults
    off = run("pool", "list", cwd=tmp_path, env=env)
    assert "the pool is off" in off.stdout
    bad = run("pool", "list", cwd=tmp_path, env={**places, "RACHEL_POOL_PLACES": "fsn1/cx23=4..2"})
    assert bad.returncode == 2 and "RACHEL_POOL_PLACES" in bad.stderr and "MIN <= MAX" in bad.stderr
    assert "Traceback" not in bad.stderr

"""The planted-secrets search (tests/leaks.py) finds a secret in each place it looks."""

from __future__ import annotations

import zlib
from pathlib import Path

import peewee
import pytest
import redis
from rq import Queue

from core.domain.lifecycle import record_event
from tests import factories
from tests.conftest import make_settings
from tests.leaks import LeakSearch, search_everything

SECRET = "LEAK7391"


def test_each_haystack_finds_a_planted_secret(
    db: peewee.Database, redis_client: redis.Redis, tmp_path: Path
) -> None:
    owner = factories.customer(email=f"{SECRET}@example.com")
    server = factories.server(owner, status="failed", last_error=f"boom {SECRET}")
    record_event(server.id, "note", f"said {SECRET}")
    redis_client.set("plain", SECRET)
    redis_client.set("packed", zlib.compress(SECRET.encode()))
    Queue("rc-finish", connection=redis_client).enqueue("os.getcwd", SECRET, job_id="leaky")
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "worker.log").write_text(f"line {SECRET}\n")
    (tmp_path / "vps" / "etc").mkdir(parents=True)
    (tmp_path / "vps" / "etc" / "cloud.cfg").write_text(SECRET)
    search = search_everything(
        [SECRET],
        client=redis_client,
        log_paths=[tmp_path / "logs"],
        vps_roots=[tmp_path / "vps"],
        settings=make_settings(tmp_path),
        tui_servers=[server.id],
    )
    found = {where for where, _ in search.hits()}
    assert found == {"logs", "events", "database", "redis", "jobs", "user data", "tui"}
    with pytest.raises(AssertionError, match="secret #0 in"):
        search.check()


def test_an_empty_haystack_proves_nothing() -> None:
    search = LeakSearch(["long-enough-secret"], {"logs": ""})
    with pytest.raises(AssertionError, match="haystack logs has 0 characters"):
        search.check({"logs": 100})

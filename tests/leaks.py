"""The planted-secrets search: every place a customer secret must never reach.

A test plants known secret values (customers' bot tokens and Claude
credentials, through the vault or the deploy webhook), runs the system, then
gathers every haystack below and fails on any planted value found in one:

- logs: pytest's caplog text and every child process's log file;
- events: every Event row (kind, message, actor, statuses);
- database: every column of every table except the encrypted ones;
- redis: every key and every value of every type, with RQ's zlib-compressed
  job data decompressed;
- jobs: every RQ job's arguments, keyword arguments, meta, result and
  traceback, decoded through RQ itself;
- user data: every file on the simulated VPSs except the secrets file (the
  one place the secrets belong);
- tui: the operator TUI's rendered screens (fleet, each server's screen, the
  jobs screen), as text and as the exported SVG, run with Textual's pilot on
  the same database and Redis.

Each collector returns plain text; `LeakSearch.check` names the haystack a
secret was found in without printing the secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import io
import re
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import redis
from rq.job import Job

from core.cloud import vps_contract as vps
from core.store.models import ENCRYPTED_COLUMNS, MODELS, Event

#: Where the secrets legitimately live on a VPS: Rachel8's `.env` and the Claude
#: credentials (for any user name: the paths end the same way). `.env` is in each
#: release dir (`~/rachel8` links to the running one), seen here by its real path.
_LAYOUT = vps.Layout()
SECRETS_FILES = (
    _LAYOUT.env_path.removeprefix(_LAYOUT.home),
    _LAYOUT.credentials_path.removeprefix(_LAYOUT.home),
)
_RELEASE_ENV = re.compile(
    re.escape(_LAYOUT.release_dir("").removeprefix(_LAYOUT.home)) + r"[0-9a-f]{40}/\.env$"
)


@dataclass
class LeakSearch:
    """Planted secrets and the haystacks gathered so far."""

    planted: list[str]
    haystacks: dict[str, str] = field(default_factory=dict)

    def add(self, where: str, text: str) -> None:
        """Add (or extend) the haystack `where`."""
        self.haystacks[where] = self.haystacks.get(where, "") + "\n" + text

    def hits(self) -> list[tuple[str, int]]:
        """(haystack, index of the planted secret) for every leak found."""
        found = []
        for where, text in self.haystacks.items():
            for n, secret in enumerate(self.planted):
                if secret and secret in text:
                    found.append((where, n))
        return found

    def check(self, minimum: dict[str, int] | None = None) -> None:
        """Fail on any leak; `minimum` asserts each named haystack holds that many characters.

        Raises:
            AssertionError: a planted secret was found, or a haystack was (nearly) empty,
                which would make the search prove nothing.
        """
        assert self.planted, "no secrets were planted"
        assert all(len(s) >= 8 for s in self.planted), "planted secrets must be distinctive"
        for where, size in (minimum or {}).items():
            got = len(self.haystacks.get(where, ""))
            assert got >= size, f"haystack {where} has {got} characters, expected {size}+"
        leaks = self.hits()
        assert not leaks, "planted secrets leaked: " + ", ".join(
            f"secret #{n} in {where}" for where, n in leaks
        )


# --- collectors -------------------------------------------------------------------


def _encrypted_column_names(model: type) -> set[str]:
    for encrypted_model, columns in ENCRYPTED_COLUMNS.items():
        if encrypted_model is model:
            return set(columns)
    return set()


def database_text() -> str:
    """Every row of every table, every column but the encrypted ones."""
    rows = []
    for model in MODELS:
        skip = _encrypted_column_names(model)
        columns = [name for name in model._meta.sorted_field_names if name not in skip]
        query = model.select(*[getattr(model, name) for name in columns]).tuples()
        rows.extend(f"{model.__name__} {values!r}" for values in query)
    return "\n".join(rows)


def events_text() -> str:
    """Every Event, as the TUI and the status API would show it."""
    return "\n".join(
        f"{e.server_id} {e.kind} {e.actor} {e.from_status}->{e.to_status} {e.message}"
        for e in Event.select().order_by(Event.id)
    )


def _redis_values(client: redis.Redis, key: bytes) -> list[bytes]:
    kind = client.type(key).decode()
    if kind == "string":
        return [client.get(key) or b""]
    if kind == "hash":
        return [b"%s=%s" % kv for kv in client.hgetall(key).items()]
    if kind == "list":
        return list(client.lrange(key, 0, -1))
    if kind == "set":
        return list(client.smembers(key))
    if kind == "zset":
        return [m for m, _ in client.zrange(key, 0, -1, withscores=True)]
    if kind == "stream":
        out = []
        for _, fields in client.xrange(key):
            out.extend(b"%s=%s" % kv for kv in fields.items())
        return out
    return []


def redis_text(client: redis.Redis) -> str:
    """Every key and value in the client's database (job data decompressed)."""
    dump = []
    for key in client.scan_iter(count=1000):
        for value in [key, *_redis_values(client, key)]:
            dump.append(value.decode("latin-1"))
            with contextlib.suppress(zlib.error):  # RQ keeps job data zlib-compressed
                dump.append(zlib.decompress(value).decode("latin-1"))
    return "\n".join(dump)


def jobs_text(client: redis.Redis) -> str:
    """Every RQ job's arguments, meta, result and traceback, decoded by RQ."""
    out = []
    for key in client.scan_iter(match="rq:job:*", count=1000):
        jid = key.decode().removeprefix("rq:job:")
        if ":" in jid:
            continue
        try:
            job = Job.fetch(jid, connection=client)
            out.append(f"{jid} {job.func_name} {job.args!r} {job.kwargs!r} {job.meta!r}")
            for result in job.results():
                out.append(f"{jid} result {result.return_value!r} {result.exc_string or ''}")
        except Exception as exc:  # a job whose function cannot be imported here, say
            out.append(f"{jid} undecodable: {exc}")
    return "\n".join(out)


def files_text(paths: Iterable[Path]) -> str:
    """The text of every file under `paths` (files or directories)."""
    chunks = []
    for path in paths:
        candidates = [path] if path.is_file() else sorted(p for p in path.rglob("*"))
        for candidate in candidates:
            if candidate.is_file():
                with contextlib.suppress(OSError):
                    chunks.append(candidate.read_text(errors="replace"))
    return "\n".join(chunks)


def vps_text(roots: Iterable[Path]) -> str:
    """Every file of the given VPS root filesystems except Rachel8's two secret files."""
    chunks = []
    for root in roots:
        for path in sorted(root.rglob("*")):
            secret = str(path).endswith(SECRETS_FILES) or _RELEASE_ENV.search(str(path))
            if path.is_file() and not secret:
                with contextlib.suppress(OSError):
                    chunks.append(path.read_text(errors="replace"))
    return "\n".join(chunks)


_TAG = re.compile(r"<[^>]+>")


def _svg_text(svg: str) -> str:
    # Textual's SVG splits the screen into positioned <text> spans: strip the
    # markup and unescape, so that a secret on screen is found in one piece.
    return html.unescape(_TAG.sub("", svg)).replace("\xa0", " ")


async def _tui_screens(
    client: redis.Redis, settings: object, server_ids: Sequence[int]
) -> list[str]:
    from rich.console import Console

    from cli.tui import operations
    from core.platform.settings import Settings
    from tui.app import RachelApp
    from tui.backend import Backend
    from tui.screens.jobs import JobsScreen
    from tui.screens.server import ServerScreen

    assert isinstance(settings, Settings)
    backend = Backend(client, operations(client, settings), settings.sla_seconds, "operator:leaks")
    app = RachelApp(backend, refresh_seconds=3600.0, summary_seconds=3600.0)
    screens: list[str] = []

    def grab() -> None:
        console = Console(
            width=app.size.width, height=app.size.height, file=io.StringIO(), record=True
        )
        console.print(app.screen._compositor.render_update(full=True))
        screens.append(console.export_text())
        screens.append(_svg_text(app.export_screenshot()))

    async def settle(pilot: object, done: object, timeout: float = 10.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not done() and loop.time() < deadline:  # type: ignore[operator]
            await pilot.pause(0.05)  # type: ignore[attr-defined]
        await pilot.pause(0.1)  # type: ignore[attr-defined]

    async with app.run_test(size=(200, 60)) as pilot:
        await settle(pilot, lambda: app.fleet.refreshes >= 1)
        app.fleet.action_toggle_deleted()
        await pilot.pause(0.1)
        grab()
        for server_id in server_ids:
            screen = ServerScreen(server_id)
            await app.push_screen(screen)
            await settle(pilot, lambda s=screen: s.loads >= 1)
            assert screen.loads >= 1, f"the TUI's screen of server {server_id} never loaded"
            grab()
            app.pop_screen()
            await pilot.pause()
        jobs = JobsScreen()
        await app.push_screen(jobs)
        await pilot.pause(0.5)
        grab()
    return screens


def tui_text(client: redis.Redis, settings: object, server_ids: Sequence[int]) -> str:
    """The TUI's rendered screens (text and SVG) for the fleet, these servers and the jobs.

    Runs the real app with Textual's pilot, on the current database and `client`.
    """
    return "\n".join(asyncio.run(_tui_screens(client, settings, server_ids)))


def search_everything(
    planted: Sequence[str],
    *,
    client: redis.Redis,
    logs: str = "",
    log_paths: Iterable[Path] = (),
    vps_roots: Iterable[Path] = (),
    settings: object | None = None,
    tui_servers: Sequence[int] = (),
) -> LeakSearch:
    """Gather every haystack (the TUI's only when `settings` is given)."""
    search = LeakSearch(list(planted))
    search.add("logs", logs + "\n" + files_text(log_paths))
    search.add("events", events_text())
    search.add("database", database_text())
    search.add("redis", redis_text(client))
    search.add("jobs", jobs_text(client))
    search.add("user data", vps_text(vps_roots))
    if settings is not None:
        search.add("tui", tui_text(client, settings, tui_servers))
    return search

"""TUI benchmark: the fleet screen with 1,000, 10,000 and 50,000 servers.

Each size runs in a fresh child process (so that its peak memory is its own)
on a seeded SQLite database and a private embedded Redis, with the real
backend, headless (`App.run_test`, 160x40). It measures:

- first paint: from starting the app to the first rows rendered (a fleet
  larger than a first page shows its newest servers first);
- full load: until every server is in the table and rendered;
- a burst of 100 status changes (100 servers move creating -> cloud_init in
  the database and each transition is published on the events channel, as
  workers do): the UI-thread time to apply them (model diff + table update,
  summed over the batches the live listener delivered) and the time from the
  first publish until all 100 rows show the new status;
- peak resident memory of the process (seeding included, which is small).

    uv run python bench/tui.py                 # 1,000, 10,000 and 50,000
    uv run python bench/tui.py --quick         # 1,000 and 10,000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import _common as c

c.ensure_repo_on_path()

import redis  # noqa: E402

from cli.embedded_redis import EmbeddedRedis  # noqa: E402
from cli.tui import operations  # noqa: E402
from core.domain.events import publish  # noqa: E402
from core.platform.clock import SYSTEM_CLOCK, utcnow  # noqa: E402
from core.platform.settings import Settings  # noqa: E402
from core.store import migrations  # noqa: E402
from core.store.db import init_database  # noqa: E402
from core.store.models import Customer, Event, Server  # noqa: E402
from tui.app import RachelApp  # noqa: E402
from tui.backend import Backend  # noqa: E402
from tui.widgets import FleetTable  # noqa: E402

BURST = 100
SIZE = (160, 40)
STATUSES = ("ready", "creating", "cloud_init", "failed")


def seed(n: int) -> None:
    """n customers and servers (a quarter each ready, creating, cloud_init, failed)."""
    now = utcnow()
    ago = lambda s: now - timedelta(seconds=s)  # noqa: E731
    with Customer._meta.database.atomic():
        for start in range(0, n, 500):
            batch = range(start + 1, min(n, start + 500) + 1)
            Customer.insert_many(
                [
                    {"id": i, "external_id": f"cus_{i:05d}", "email": f"c{i}@example.com"}
                    for i in batch
                ]
            ).execute()
            Server.insert_many(
                [
                    {
                        "id": i,
                        "customer": i,
                        "name": f"rachel-{i}",
                        "status": STATUSES[i % 4],
                        "location": "fsn1" if i % 3 else "nbg1",
                        "server_type": "cx23",
                        "image": "debian-12",
                        "created_at": ago(300),
                        "updated_at": ago(100),
                        "status_changed_at": ago(100),
                        "ipv4": f"10.{i // 65536}.{i // 256 % 256}.{i % 256}",
                        "provisioning_seconds": 90.0 if i % 4 == 0 else None,
                        "ready_at": ago(200) if i % 4 == 0 else None,
                    }
                    for i in batch
                ]
            ).execute()
            Event.insert_many(
                [
                    {
                        "server": i,
                        "at": ago(100),
                        "kind": "transition",
                        "message": "seeded",
                        "actor": "system",
                        "to_status": STATUSES[i % 4],
                    }
                    for i in batch
                ]
            ).execute()


async def measure(app: Any, n: int, redis_client: Any) -> dict[str, Any]:
    """First paint, then the burst; the figures in seconds."""
    started = time.perf_counter()
    async with app.run_test(size=SIZE) as pilot:
        table = app.fleet.query_one(FleetTable)
        # First paint: the compositor asks the table for a line while it has rows.
        painted: list[float] = []
        render_line = table.render_line

        def timed_render_line(y: int) -> Any:
            if table.row_count and not painted:
                painted.append(time.perf_counter() - started)
            return render_line(y)

        table.render_line = timed_render_line  # type: ignore[method-assign]
        while not painted:
            await pilot.pause(0.002)
        first_paint = painted[0]
        while app.fleet.refreshes < 1:
            await pilot.pause(0.002)
        await pilot.pause()  # the frame with every row
        full_load = time.perf_counter() - started
        assert table.row_count == n, table.row_count
        while not app.live_connected:
            await pilot.pause(0.01)

        applied: list[tuple[float, int]] = []
        original = app.fleet._apply_rows

        def timed(rows: list[Any], ids: list[int]) -> None:
            t = time.perf_counter()
            original(rows, ids)
            applied.append((time.perf_counter() - t, len(ids)))

        app.fleet._apply_rows = timed
        moved = [i for i in range(1, 4 * BURST + 1) if i % 4 == 1]  # creating ones
        now = utcnow()
        Server.update(status="cloud_init", status_changed_at=now).where(
            Server.id.in_(moved)
        ).execute()
        burst_start = time.perf_counter()
        for i in moved:
            publish(
                redis_client,
                {
                    "type": "transition",
                    "server_id": i,
                    "from": "creating",
                    "to": "cloud_init",
                    "at": now.isoformat(),
                    "actor": "system",
                    "message": "booted",
                },
            )
        deadline = time.monotonic() + 60
        while not all(str(table.get_cell(str(i), "status")) == "cloud_init" for i in moved):
            if time.monotonic() > deadline:
                raise RuntimeError("the burst was not applied within 60 s")
            await pilot.pause(0.002)
        await pilot.pause()  # rendered
        visible = time.perf_counter() - burst_start
    return {
        "servers": n,
        "first_paint_s": first_paint,
        "full_load_s": full_load,
        "burst_apply_s": sum(t for t, _ in applied),
        "burst_batches": [k for _, k in applied],
        "burst_visible_s": visible,
    }


def one(n: int) -> dict[str, Any]:
    """Seed n servers and measure the app (in this process)."""
    with tempfile.TemporaryDirectory(prefix="rc-bench-tui-") as tmp:
        db = init_database(f"sqlite:///{tmp}/tui.db")
        db.connect(reuse_if_open=True)
        migrations.upgrade(db)
        seed(n)
        embedded = EmbeddedRedis(Path(tmp) / "redis")
        try:
            client = redis.Redis.from_url(embedded.ensure_running())
            settings = Settings.load(environ={"RACHEL_DATA_DIR": f"{tmp}/data"}, env_file=None)
            backend = Backend(
                client,
                operations(client, settings),
                settings.sla_seconds,
                "operator:bench",
                SYSTEM_CLOCK,
            )
            app = RachelApp(backend, refresh_seconds=3600.0, summary_seconds=3600.0)
            rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            figures = asyncio.run(measure(app, n, client))
        finally:
            embedded.stop()
    figures["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    figures["rss_before_app_mb"] = rss_before / 1024
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,50000")
    parser.add_argument("--quick", action="store_true", help="1,000 and 10,000 only")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # child mode
    parser.add_argument("--name", default="tui")
    args = parser.parse_args(argv)
    if args.one:
        with c.sigterm_as_interrupt():
            print(json.dumps(one(args.one)))
        return 0
    sizes = [1000, 10000] if args.quick else [int(s) for s in args.sizes.split(",")]
    results = []
    with c.sigterm_as_interrupt():
        try:
            for n in sizes:
                print(f"TUI with {n} servers...", file=sys.stderr)
                proc = subprocess.Popen(
                    [sys.executable, __file__, "--one", str(n)],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                try:
                    stdout, stderr = proc.communicate(timeout=600)
                except BaseException:
                    proc.terminate()  # the child stops its redis-server and cleans up
                    proc.communicate(timeout=30)
                    raise
                if proc.returncode != 0:
                    print(stderr[-3000:], file=sys.stderr)
                    return 1
                results.append(json.loads(stdout.strip().splitlines()[-1]))
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130
    rows = [
        [
            f"{r['servers']:,}",
            c.ms(r["first_paint_s"]),
            c.ms(r["full_load_s"]),
            c.ms(r["burst_apply_s"]),
            c.ms(r["burst_visible_s"]),
            f"{r['peak_rss_mb']:.0f} MB",
            "+".join(map(str, r["burst_batches"])),
        ]
        for r in results
    ]
    headers = [
        "servers",
        "first paint",
        "full load",
        "100 changes applied",
        "publish->visible",
        "peak RSS",
        "batches",
    ]
    return c.publish(args.name, args, c.table(headers, rows), results)


if __name__ == "__main__":
    raise SystemExit(main())

"""`rachel-cloud web` for `bench/heartbeat.py`: as it is, or with the baseline's store, or profiled.

    python bench/_heartbeat_web.py --store database -- --port 8000 --workers 1
    python bench/_heartbeat_web.py --store redis --profile web.prof -- --port 8000

Runs `rachel-cloud web` (the same command, app, middleware and uvicorn options)
in this process. With `--store database` the heartbeat endpoint keeps its
route (its hot path before Litestar's too), body decoding, credential and
address checks and answers, but records
each heartbeat with one UPDATE of the server's row instead of the Redis
script: the obvious alternative design, measured beside ours. It lives here,
in the benchmark, not in the product. The row's heartbeat columns
(`BASELINE_COLUMNS`) are added to the benchmark's own database by
`bench/heartbeat.py`. With `--store stub` it records nothing and answers 202:
the web app's cost without the store's round trip (the difference to `redis`
is what the Redis call costs the web process).

With `--profile FILE`, the process runs under cProfile, timed by CPU time (its
wall clock would count the event loop's idle waits), and writes the stats to
FILE when it stops (SIGTERM: uvicorn shuts down, then the stats are written).
It profiles the event loop's thread, where the product's async handler runs.
Its cost per function call inflates call-heavy code: read its shares as
where to look, the `stub` and `trivial` runs' CPU as what things cost.
"""

from __future__ import annotations

import argparse
import cProfile
import signal
import sys
import time
from typing import Any

import _common as c

c.ensure_repo_on_path()

from litestar.concurrency import sync_to_thread  # noqa: E402

import webhook.heartbeats  # noqa: E402
from cli.main import main as rachel_cloud  # noqa: E402
from core.domain import heartbeats  # noqa: E402
from core.domain.heartbeats import Heartbeat, Recorded  # noqa: E402
from core.store.db import connection  # noqa: E402
from webhook.context import WebContext  # noqa: E402

#: What the baseline adds to the `server` table (the latest heartbeat, on the row).
BASELINE_COLUMNS = (
    ("hb_seq", "BIGINT"),
    ("hb_received_at", "DOUBLE PRECISION"),
    ("hb_body", "TEXT"),
)
ARMED = webhook.heartbeats.ARMED


def record_in_row(
    server_id: int, credential_hash: str, source: str, seq: int, body: bytes
) -> Recorded:
    """The baseline's `record`: one UPDATE when the heartbeat is good, a SELECT to say why not."""
    with connection() as db:
        p = db.param
        updated = db.execute_sql(
            f"UPDATE server SET hb_seq = {p}, hb_received_at = {p}, hb_body = {p} "
            f"WHERE id = {p} AND status IN ({p}, {p}) AND heartbeat_credential_hash = {p} "
            f"AND ipv4 = {p} AND (hb_seq IS NULL OR hb_seq < {p})",
            (seq, time.time(), body.decode(), server_id, *ARMED, credential_hash, source, seq),
        ).rowcount
        if updated:
            return Recorded.OK
        row = db.execute_sql(
            f"SELECT status, heartbeat_credential_hash, ipv4 FROM server WHERE id = {p}",
            (server_id,),
        ).fetchone()
    if row is None or row[0] not in ARMED:
        return Recorded.UNKNOWN
    if row[1] != credential_hash or row[2] != source:
        return Recorded.DENIED
    return Recorded.STALE


async def record_in_database(
    ctx: WebContext, *, server_id: int, credential: str, source: str, data: Heartbeat, body: bytes
) -> Recorded:
    """Replaces `webhook.heartbeats.record`: the database in a worker thread, as the app does."""
    digest = heartbeats.hash_credential(credential)
    return await sync_to_thread(record_in_row, server_id, digest, source, data.seq, body)


async def record_nothing(
    ctx: WebContext, *, server_id: int, credential: str, source: str, data: Heartbeat, body: bytes
) -> Recorded:
    """Replaces `webhook.heartbeats.record` for `--store stub`: the endpoint without its store."""
    return Recorded.OK


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", choices=["redis", "database", "stub"], default="redis")
    parser.add_argument("--profile", default="", help="write cProfile stats here on exit")
    parser.add_argument("web_args", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    web_args = [a for a in args.web_args if a != "--"]
    if args.store != "redis":
        stores = {"database": record_in_database, "stub": record_nothing}
        webhook.heartbeats.record = stores[args.store]  # type: ignore[assignment]
    run: Any = lambda: rachel_cloud(["web", *web_args])  # noqa: E731
    if not args.profile:
        run()
        return
    # uvicorn re-raises the SIGTERM it shut down on once it has restored the
    # previous handler: this one, so that the stats are written before the exit.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    profiler = cProfile.Profile(time.process_time)  # CPU, not the loop's idle waits
    try:
        profiler.runcall(run)
    except SystemExit:
        pass
    finally:
        profiler.dump_stats(args.profile)
        print(f"profile written to {args.profile}", file=sys.stderr)


if __name__ == "__main__":
    main()

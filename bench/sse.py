"""SSE benchmark: 1,000 concurrent `GET /api/servers/{id}/events` streams on one web process.

Serves `rachel-cloud web` (1 uvicorn worker) on an embedded Redis and a SQLite
file of its own, opens N streams at once over S seeded servers, and measures:
how many streams open (and with which status), the Redis connections the web
process holds while they are open (and how many are subscribed), `/readyz`
meanwhile, the answer to one stream more than RACHEL_SSE_MAX_STREAMS, and,
over a few rounds of one event published per server, the time from publish
until each stream has it. The same load then runs against the baseline commit
(a subscription per stream, from a pool of 100) in a temporary git worktree,
in the same run.

    uv run python bench/sse.py                    # N=1,000 over 100 servers, then the baseline
    uv run python bench/sse.py --streams 300 --no-baseline
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import _common as c

c.ensure_repo_on_path()

import httpx  # noqa: E402
import redis  # noqa: E402

from cli.embedded_redis import EmbeddedRedis  # noqa: E402
from core.domain.events import channel_for  # noqa: E402
from core.platform.dev_secrets import api_keys  # noqa: E402
from core.platform.settings import Settings  # noqa: E402
from core.store import migrations  # noqa: E402
from core.store.db import connection, init_database  # noqa: E402
from core.store.models import Customer, Server  # noqa: E402

#: The last commit whose streams each took a pooled Redis connection (the baseline).
BASELINE = "80b90f4"
OPEN_TIMEOUT = 60.0
DELIVERY_TIMEOUT = 10.0


class Stream:
    """One SSE client on a raw socket: its status, and when each marker arrived."""

    def __init__(self, port: int, server_id: int, api_key: str) -> None:
        self.request = (
            f"GET /api/servers/{server_id}/events HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n"
            f"x-api-key: {api_key}\r\naccept: text/event-stream\r\n\r\n"
        ).encode()
        self.port = port
        self.server_id = server_id
        self.status = 0
        self.retry_after: str | None = None
        self.arrived: dict[str, float] = {}
        self.snapshot = asyncio.Event()
        self.wanted: set[str] = set()
        self.changed = asyncio.Event()
        self.writer: asyncio.StreamWriter | None = None

    async def run(self) -> None:
        """Connect, read the answer, then record markers until cancelled or closed."""
        try:
            reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
            self.writer.write(self.request)
            head = await reader.readuntil(b"\r\n\r\n")
        except (OSError, asyncio.IncompleteReadError):
            self.status = -1  # refused or reset: counted as "no answer"
            self.snapshot.set()
            return
        self.status = int(head.split(b" ", 2)[1])
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"retry-after:"):
                self.retry_after = line.split(b":", 1)[1].strip().decode()
        if self.status != 200:
            self.snapshot.set()  # an error answer: nothing will stream
            return
        buffer = b""
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                self.snapshot.set()
                return
            now = time.monotonic()
            buffer = buffer[-200:] + chunk
            if b"event: snapshot" in buffer:
                self.snapshot.set()
            for marker in list(self.wanted):
                if marker.encode() in buffer:
                    self.arrived[marker] = now
                    self.wanted.discard(marker)
                    self.changed.set()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def seed(servers: int) -> list[int]:
    """`servers` servers in `creating` (streams stay open on them), a customer each; their ids."""
    ids = []
    with connection() as db, db.atomic():
        for i in range(servers):
            owner = Customer.create(external_id=f"bench-sse-{i}", email=f"sse{i}@bench.invalid")
            server = Server.create(
                customer=owner,
                location="fsn1",
                server_type="cx23",
                image="debian-12",
                status="creating",
            )
            ids.append(server.id)
    return ids


def redis_clients(admin: redis.Redis) -> dict[str, int]:
    """Clients of Redis but `admin`: all, and those subscribed (pub/sub)."""
    own = admin.client_id()
    clients = [cl for cl in admin.client_list() if int(cl["id"]) != own]
    subscribed = [cl for cl in clients if int(cl.get("sub", 0)) or int(cl.get("psub", 0))]
    return {"connections": len(clients), "subscribed": len(subscribed)}


async def measure(
    port: int, server_ids: list[int], n: int, api_key: str, admin: redis.Redis, rounds: int
) -> dict[str, Any]:
    """Open `n` streams over `server_ids`, look at everything, publish, and time delivery."""
    base = redis_clients(admin)
    streams = [Stream(port, server_ids[i % len(server_ids)], api_key) for i in range(n)]
    began = time.monotonic()
    tasks = [asyncio.create_task(s.run()) for s in streams]
    try:
        await asyncio.wait_for(
            asyncio.gather(*(s.snapshot.wait() for s in streams)), timeout=OPEN_TIMEOUT
        )
        opened_in = time.monotonic() - began
        statuses = Counter(s.status for s in streams)
        figures: dict[str, Any] = {
            "streams": n,
            "statuses": dict(sorted(statuses.items())),
            "opened_in_s": round(opened_in, 3),
            "redis_before": base,
            "redis_while_open": redis_clients(admin),
        }
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            sent = time.monotonic()
            ready = await client.get("/readyz")
            figures["readyz"] = {
                "status": ready.status_code,
                "took_ms": round((time.monotonic() - sent) * 1000, 1),
            }
        extra = Stream(port, server_ids[0], api_key)
        extra_task = asyncio.create_task(extra.run())
        await asyncio.wait_for(extra.snapshot.wait(), timeout=OPEN_TIMEOUT)
        figures["one_more"] = {"status": extra.status, "retry_after": extra.retry_after}
        extra.close()
        extra_task.cancel()
        figures["delivery"] = await deliver(
            [s for s in streams if s.status == 200], server_ids, admin, rounds
        )
    finally:
        for s in streams:
            s.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return figures


async def deliver(
    open_streams: list[Stream], server_ids: list[int], admin: redis.Redis, rounds: int
) -> dict[str, Any]:
    """Rounds of one event per server; per stream, seconds from the round's publish to arrival."""
    channel = channel_for(admin)
    latencies: list[float] = []
    missed = 0
    for round_no in range(rounds):
        marker = f"bench-round-{round_no}-{os.getpid()}"
        for s in open_streams:
            s.wanted.add(marker)
        published = time.monotonic()
        pipe = admin.pipeline(transaction=False)
        for sid in server_ids:
            message = {"type": "transition", "server_id": sid, "to": "creating", "tag": marker}
            pipe.publish(channel, json.dumps(message))
        pipe.execute()
        deadline = published + DELIVERY_TIMEOUT
        while any(marker in s.wanted for s in open_streams) and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for s in open_streams:
            if marker in s.arrived:
                latencies.append(s.arrived[marker] - published)
            else:
                missed += 1
                s.wanted.discard(marker)
        await asyncio.sleep(0.5)
    summary = c.summary(latencies)
    return {
        "rounds": rounds,
        "events_per_round": len(server_ids),
        "deliveries": len(latencies),
        "missed": missed,
        "seconds": {k: round(v, 4) if isinstance(v, float) else v for k, v in summary.items()},
        "all_within_1s": missed == 0 and bool(latencies) and max(latencies) <= 1.0,
    }


@contextlib.contextmanager
def baseline_tree(ref: str, tmp: Path) -> Iterator[Path]:
    """A detached git worktree of `ref`, removed afterwards."""
    path = tmp / "baseline"
    subprocess.run(
        ["git", "-C", str(c.REPO), "worktree", "add", "--detach", str(path), ref],
        check=True,
        capture_output=True,
    )
    try:
        yield path
    finally:
        subprocess.run(
            ["git", "-C", str(c.REPO), "worktree", "remove", "--force", str(path)],
            check=False,
            capture_output=True,
        )


def run_one(
    label: str, code: Path, args: argparse.Namespace, tmp: Path, redis_url: str
) -> dict[str, Any]:
    """Serve `code`'s web app and measure it."""
    data = tmp / f"data-{label}"
    db_url = f"sqlite:///{tmp}/{label}.db"
    env = {
        **os.environ,
        "RACHEL_DATA_DIR": str(data),
        "DATABASE_URL": db_url,
        "REDIS_URL": redis_url,
        "RACHEL_LOG_LEVEL": "warning",
        "RACHEL_SSE_MAX_STREAMS": str(args.streams),
        "PYTHONPATH": str(code),
    }
    with c.environment({k: env[k] for k in ("RACHEL_DATA_DIR", "DATABASE_URL", "REDIS_URL")}):
        api_key = api_keys(Settings.load(env_file=None))[0]
    init_database(db_url)
    with connection():
        migrations.upgrade()
    server_ids = seed(args.servers)
    port = c.free_port()
    argv = [sys.executable, "-m", "cli.main", "web", "--port", str(port), "--workers", "1"]
    admin = redis.Redis.from_url(redis_url)
    try:
        with c.serve(argv, env, port, tmp / f"{label}.log", cwd=code):
            print(f"{label}: {args.streams} streams over {args.servers} servers", file=sys.stderr)
            figures = asyncio.run(
                measure(port, server_ids, args.streams, api_key, admin, args.rounds)
            )
    finally:
        admin.close()
    figures["code"] = label
    return figures


def run(args: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    embedded = EmbeddedRedis(tmp / "redis")
    try:
        redis_url = embedded.ensure_running()
        results = [run_one("hub", c.REPO, args, tmp, redis_url)]
        if args.baseline:
            with baseline_tree(args.baseline, tmp) as code:
                results.append(run_one(f"baseline {args.baseline}", code, args, tmp, redis_url))
        return results
    finally:
        embedded.stop()


def report(results: list[dict[str, Any]]) -> str:
    rows = []
    for r in results:
        d, seconds = r["delivery"], r["delivery"]["seconds"]
        statuses = ",".join(f"{k}:{v}" for k, v in r["statuses"].items())
        rows.append(
            [
                r["code"],
                statuses,
                f"{r['opened_in_s']:.2f} s",
                f"{r['redis_while_open']['connections']} ({r['redis_while_open']['subscribed']})",
                r["readyz"]["status"],
                f"{r['one_more']['status']} (Retry-After {r['one_more']['retry_after']})",
                f"{d['deliveries']}/{d['deliveries'] + d['missed']}",
                c.ms(seconds["p50"]),
                c.ms(seconds["p99"]),
                c.ms(seconds["max"]),
            ]
        )
    headers = [
        "code",
        "stream statuses",
        "all open in",
        "redis conns (subscribed)",
        "/readyz",
        "one more",
        "delivered",
        "p50",
        "p99",
        "max",
    ]
    return c.table(headers, rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=1000, help="concurrent streams")
    parser.add_argument("--servers", type=int, default=100, help="servers the streams watch")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of one event per server")
    parser.add_argument(
        "--baseline", default=BASELINE, help="commit to measure the same way (stream per conn)"
    )
    parser.add_argument("--no-baseline", dest="baseline", action="store_const", const="")
    parser.add_argument("--name", default="sse")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="rc-bench-sse-") as tmp:
        return c.run_and_publish(args, lambda: run(args, Path(tmp)), report)


if __name__ == "__main__":
    raise SystemExit(main())

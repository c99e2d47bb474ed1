"""Webhook benchmark: signed deploy webhooks at fixed concurrency against `rachel-cloud web`.

For 1 and 2 uvicorn workers it serves, in turn, a trivial Litestar endpoint
(reads the body, answers 202: the floor of the framework and server) and
`rachel-cloud web`, and drives each with the same load: C keep-alive
connections, each sending the next request as soon as the last one was
answered, for a fixed time after a warm-up. Every deploy is for a distinct,
pre-seeded customer with an active subscription, so each one is really
stored (sealed) and answered 202, and an intake job is queued (no workers
run during the load). After the load on one worker, the intake job is run
here, in one process, over everything the load stored: the work the deploy
webhook used to do inline, measured on its own (deploys/s, CPU per deploy).

    uv run python bench/webhook.py                 # 1 and 2 workers, C=64, 10 s each
    uv run python bench/webhook.py --quick         # 3 s each
    uv run python bench/webhook.py --workers 2 --concurrency 128
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import _common as c
from _http import exchange, signed_request

c.ensure_repo_on_path()

import redis  # noqa: E402

from cli.embedded_redis import EmbeddedRedis  # noqa: E402
from core.platform.dev_secrets import webhook_secrets  # noqa: E402
from core.platform.settings import Settings  # noqa: E402
from core.store import migrations  # noqa: E402
from core.store.db import connection, init_database  # noqa: E402
from core.store.models import Customer, Subscription  # noqa: E402
from core.store.vault import load_keyring  # noqa: E402
from jobs.context import JobContext, use_context  # noqa: E402
from jobs.intake import carry_out_deploys  # noqa: E402


def seed(count: int, prefix: str) -> list[str]:
    """Insert `count` customers with active subscriptions; their external ids."""
    ids = [f"{prefix}{i:06d}" for i in range(count)]
    with connection() as db, db.atomic():
        for start in range(0, count, 1000):
            chunk = ids[start : start + 1000]
            Customer.insert_many(
                [{"external_id": x, "email": f"{x}@bench.invalid"} for x in chunk]
            ).execute()
            rows = Customer.select(Customer.id).where(Customer.external_id.in_(chunk))
            Subscription.insert_many(
                [{"customer": row.id, "status": "active"} for row in rows]
            ).execute()
    return ids


def requests_for(customers: list[str], secret: str, port: int) -> list[bytes]:
    """Pre-signed raw HTTP/1.1 deploy requests, one per customer."""
    out = []
    for cid in customers:
        body = json.dumps(
            {
                "customer_id": cid,
                "email": f"{cid}@bench.invalid",
                "telegram_bot_token": "70000001:" + "A" * 35,
                "owner_telegram_user_id": 123456789,
                "claude_oauth": {
                    "access_token": "sk-ant-oat01-bench-0123456789",
                    "refresh_token": "sk-ant-ort01-bench-0123456789",
                    "expires_at": 4_102_444_800_000,  # 2100
                },
            }
        ).encode()
        out.append(signed_request(port, "/webhooks/deploy", secret, body))
    return out


async def load(
    port: int,
    requests: list[bytes],
    concurrency: int,
    warmup: float,
    duration: float,
    *,
    repeat: bool = False,
) -> dict[str, Any]:
    """Drive the server; latencies and statuses of the requests answered in the window.

    Args:
        repeat: send the requests over and over (the trivial endpoint, which
            stores nothing: seeding a customer per request would not keep up
            with it, and running out of requests mid-window understated it).
    """
    queue = itertools.cycle(requests) if repeat else iter(requests)
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    start = time.monotonic()
    measure_from, stop_at = start + warmup, start + warmup + duration
    ran_out = False
    served = 0

    async def connection_loop() -> None:
        nonlocal ran_out, served
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.monotonic() < stop_at:
                request = next(queue, None)
                if request is None:
                    ran_out = True
                    return
                sent = time.monotonic()
                status, _ = await exchange(reader, writer, request)
                done = time.monotonic()
                served += 1
                if measure_from <= sent and done <= stop_at:
                    latencies.append(done - sent)
                    statuses[status] += 1
        finally:
            writer.close()

    await asyncio.gather(*(connection_loop() for _ in range(concurrency)))
    return {
        "requests": len(latencies),
        "rps": len(latencies) / duration,
        "latency": c.summary(latencies),
        "statuses": dict(statuses),
        "ran_out_of_requests": ran_out,
        "served": served,
    }


def intake_run(settings: Settings, redis_url: str, limit: int) -> dict[str, Any]:
    """Carry out up to `limit` stored deploys in this process, as one worker's intake job would."""
    client = redis.Redis.from_url(redis_url)
    use_context(JobContext(settings=settings, keyring=load_keyring(settings), redis=client))
    try:
        cpu0, pg0, began = time.process_time(), backends_cpu(), time.monotonic()
        handled = carry_out_deploys(limit=limit)
        took = time.monotonic() - began
        cpu, pg = time.process_time() - cpu0, backends_cpu() - pg0
    finally:
        use_context(None)
        client.close()
    print(f"intake: {handled} deploys carried out in {took:.1f} s", file=sys.stderr)
    return {
        "deploys": handled,
        "seconds": round(took, 2),
        "per_second": round(handled / took, 1) if took else None,
        "cpu_ms_per_deploy": {
            "worker": round(cpu * 1000 / max(1, handled), 3),
            "postgres": round(pg * 1000 / max(1, handled), 3),
        },
    }


def backends_cpu() -> float:
    """CPU seconds of the PostgreSQL backends serving this database, but for our own."""
    with connection() as db:
        rows = db.execute_sql(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        ).fetchall()
    return sum(c.cpu_seconds(int(pid)) for (pid,) in rows)


def run(args: argparse.Namespace, tmp: Path, db_url: str) -> list[dict[str, Any]]:
    embedded = None if args.redis_url else EmbeddedRedis(tmp / "redis")
    try:
        redis_url = args.redis_url or embedded.ensure_running()  # type: ignore[union-attr]
        redis_pid = embedded.pid() if embedded is not None else None
        return _run(args, tmp, db_url, redis_url, redis_pid)
    finally:
        if embedded is not None:
            embedded.stop()


def _run(
    args: argparse.Namespace, tmp: Path, db_url: str, redis_url: str, redis_pid: int | None
) -> list[dict[str, Any]]:
    env = {
        **os.environ,
        "RACHEL_DATA_DIR": str(tmp / "data"),
        "DATABASE_URL": db_url,
        "REDIS_URL": redis_url,
        "RACHEL_LOG_LEVEL": args.log_level,
        "PYTHONPATH": str(c.REPO),
    }
    with c.environment({k: env[k] for k in ("RACHEL_DATA_DIR", "DATABASE_URL", "REDIS_URL")}):
        settings = Settings.load(env_file=None)
        secret = webhook_secrets(settings)[0]
    init_database(db_url)
    with connection():
        migrations.upgrade()
    results = []
    budget = args.max_requests
    for workers in args.workers:
        for target in ("trivial", "rachel"):
            port = c.free_port()
            if target == "trivial":
                argv = [
                    sys.executable,
                    str(c.REPO / "bench" / "_trivial.py"),
                    "--port",
                    str(port),
                    "--workers",
                    str(workers),
                ]
            else:
                argv = [
                    sys.executable,
                    "-m",
                    "cli.main",
                    "web",
                    "--port",
                    str(port),
                    "--workers",
                    str(workers),
                ]
            customers = seed(budget, f"bench-{workers}-{target}-")
            reqs = requests_for(customers, secret, port)
            with c.serve(argv, env, port, tmp / f"{target}.log") as pgid:
                print(
                    f"{target}, {workers} worker(s): {args.duration:g} s at C={args.concurrency}",
                    file=sys.stderr,
                )
                cpu0, own0 = c.group_cpu(pgid), time.process_time()
                red0 = c.cpu_seconds(redis_pid) if redis_pid else 0.0
                figures = asyncio.run(
                    load(
                        port,
                        reqs,
                        args.concurrency,
                        args.warmup,
                        args.duration,
                        repeat=target == "trivial",
                    )
                )
                cpu1, own1 = c.group_cpu(pgid), time.process_time()
                red1 = c.cpu_seconds(redis_pid) if redis_pid else 0.0
                pg = backends_cpu() if "postgres" in db_url else 0.0
            # Per request over the whole run (warm-up included): where the CPU went.
            served = figures.pop("served")
            figures["cpu_ms_per_request"] = {
                "server": round((cpu1 - cpu0) * 1000 / max(1, served), 3),
                "postgres": round(pg * 1000 / max(1, served), 3),
                "redis": round((red1 - red0) * 1000 / max(1, served), 3),
                "load client": round((own1 - own0) * 1000 / max(1, served), 3),
            }
            figures.update(target=target, workers=workers, concurrency=args.concurrency)
            if target == "rachel" and workers == args.workers[0] and args.intake_limit:
                figures["intake"] = intake_run(settings, redis_url, args.intake_limit)
            results.append(figures)
            redis.Redis.from_url(redis_url).flushdb()
    return results


def report(results: list[dict[str, Any]]) -> str:
    rows, by = [], {(r["target"], r["workers"]): r for r in results}
    for r in results:
        base = by.get(("trivial", r["workers"]))
        ratio = f"x{base['rps'] / r['rps']:.1f}" if base and r["rps"] else "-"
        rows.append(
            [
                f"{r['target']} ({r['workers']}w)",
                f"{r['rps']:.0f}",
                c.ms(r["latency"]["p50"]),
                c.ms(r["latency"]["p99"]),
                ",".join(f"{k}:{v}" for k, v in sorted(r["statuses"].items())),
                ratio if r["target"] == "rachel" else "",
            ]
        )
    lines = [c.table(["server", "req/s", "p50", "p99", "statuses", "trivial/ours"], rows)]
    for r in results:
        cpu = ", ".join(f"{k} {v}" for k, v in r["cpu_ms_per_request"].items())
        lines.append(f"{r['target']} ({r['workers']}w) CPU ms per request: {cpu}")
        if r.get("ran_out_of_requests"):
            lines.append(
                f"{r['target']} ({r['workers']}w) sent every seeded deploy before the window "
                "ended: its req/s is a lower bound (raise --max-requests)"
            )
    for r in results:
        if "intake" in r:
            i = r["intake"]
            cpu = ", ".join(f"{k} {v}" for k, v in i["cpu_ms_per_deploy"].items())
            lines.append(
                f"intake job (1 process): {i['deploys']} deploys carried out in {i['seconds']} s "
                f"= {i['per_second']}/s; CPU ms per deploy: {cpu}"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="1,2", help="uvicorn worker counts")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument(
        "--max-requests",
        type=int,
        default=60000,
        help="seeded customers per run (more than the run can send: it stops early otherwise)",
    )
    parser.add_argument("--database", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--pg-admin-url", default=c.PG_ADMIN_URL)
    parser.add_argument(
        "--redis-url", default="", help="a Redis database no one else uses (default: embedded)"
    )
    parser.add_argument("--log-level", default="info", help="the web app's log level")
    parser.add_argument(
        "--intake-limit",
        type=int,
        default=5000,
        help="deploys the intake job carries out after the load (0: skip)",
    )
    parser.add_argument("--quick", action="store_true", help="3 s per run")
    parser.add_argument("--name", default="webhook")
    args = parser.parse_args(argv)
    args.workers = [int(w) for w in args.workers.split(",")]
    if args.quick:
        args.duration, args.warmup, args.max_requests = 3.0, 1.0, 15000
    with c.sigterm_as_interrupt(), tempfile.TemporaryDirectory(prefix="rc-bench-web-") as tmp:
        try:
            if args.database == "postgres":
                with c.postgres_database(args.pg_admin_url) as url:
                    results = run(args, Path(tmp), url)
            else:
                results = run(args, Path(tmp), f"sqlite:///{tmp}/web.db")
        except KeyboardInterrupt:
            print("interrupted; everything started was stopped", file=sys.stderr)
            return 130
    return c.publish(args.name, args, report(results), results)


if __name__ == "__main__":
    raise SystemExit(main())

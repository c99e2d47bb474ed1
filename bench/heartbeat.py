"""Heartbeat benchmark: 10,000 ready servers heartbeating every 30 s into one web process.

Issue 22's first target: at 333 heartbeats/s the web process, Redis and the
health task together use at most 0.3 of a core on this 2-core machine.

It seeds N ready servers (a customer each) on a database of its own, each with
a heartbeat credential made and armed as the injection does
(`core.domain.heartbeats.new_credential`, the hash on the row, `register`
bound to the server's own loopback address 127.x.y.z), and one heartbeat
already recorded (a fleet in its steady state). Then it serves, in turn
(`--stores`):

- `trivial`, the floor: `bench/_trivial.py`'s endpoint (reads, answers 202);
- `stub`: ours with the store replaced by "recorded" (no Redis call);
- `redis`, the product: `rachel-cloud web` (one uvicorn process, as the
  Procfile runs it), and the health task's pass every RACHEL_HEALTH_INTERVAL
  in a process of its own (`bench/_health_loop.py`) when `jobs.health` exists;
- `database`, the baseline (the obvious alternative design): the same command
  with the endpoint recording each heartbeat by an UPDATE of the server's row
  (`bench/_heartbeat_web.py`; in the benchmark, not the product),

while the fleet's agents (`bench/_heartbeat_agents.py`, a process of its own,
not counted) send N / period heartbeats a second, each from its server's
address on a new connection (`--proxy N`: over a reverse proxy's N kept-alive
connections instead), spread uniformly over the period. After a warm-up it
measures, over the window: every answer (each must be 202) and its latency;
the CPU seconds of the web process, redis-server, the health process and this
database's PostgreSQL backends as a share of one core; their memory. The
verdict counts the web process, Redis and the health task (`--health none`:
without the task, and no verdict).

    uv run python bench/heartbeat.py       # 10,000 servers every 30 s, 60 s window, all four
    uv run python bench/heartbeat.py --servers 1000 --duration 20 --stores redis
    uv run python bench/heartbeat.py --stores redis --proxy 16 --name heartbeat-proxied
    uv run python bench/heartbeat.py --stores redis --profile --name heartbeat-profile
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import _common as c
import _heartbeat_profile
from _health_loop import REAL_TASK
from _heartbeat_agents import COMMIT, UPTIME_AT_START, agent_body, heartbeat_of
from _heartbeat_web import BASELINE_COLUMNS

c.ensure_repo_on_path()

import redis  # noqa: E402

from cli.embedded_redis import EmbeddedRedis  # noqa: E402
from core.domain import heartbeats  # noqa: E402
from core.domain.heartbeats import HeartbeatStore, Recorded  # noqa: E402
from core.platform.clock import utcnow  # noqa: E402
from core.store import migrations  # noqa: E402
from core.store.db import connection, init_database  # noqa: E402
from core.store.models import Customer, Server  # noqa: E402

TARGET_CORES = 0.3
BENCH = Path(__file__).resolve().parent
#: Seconds the agents' process gets to start before its first heartbeat is due.
STARTUP = 3.0
#: PostgreSQL's own processes, shared by every database of the cluster.
PG_SHARED = "^postgres: .*(checkpointer|background writer|walwriter)"


def address_of(i: int) -> str:
    """Server i's own loopback address (127.0.0.0/8 is all local on Linux)."""
    return f"127.{1 + i // 64516}.{1 + (i // 254) % 254}.{1 + i % 254}"


def seed(count: int, client: redis.Redis) -> list[dict[str, Any]]:
    """`count` ready, healthy servers with armed credentials and a first heartbeat each."""
    now = utcnow()
    names = [f"bench-hb-{i:05d}" for i in range(count)]
    secrets = [heartbeats.new_credential() for _ in range(count)]
    with connection() as db, db.atomic():
        for start in range(0, count, 1000):
            chunk = names[start : start + 1000]
            Customer.insert_many(
                [{"external_id": n, "email": f"{n}@bench.invalid"} for n in chunk]
            ).execute()
            owners = dict(
                Customer.select(Customer.external_id, Customer.id)
                .where(Customer.external_id.in_(chunk))
                .tuples()
            )
            Server.insert_many(
                [
                    {
                        "customer": owners[n],
                        "name": n,
                        "status": "ready",
                        "location": "fsn1",
                        "server_type": "cx23",
                        "image": "debian-12",
                        "ipv4": address_of(start + j),
                        "ready_at": now - timedelta(days=1),
                        "rachel8_commit": COMMIT,
                        "heartbeat_credential_hash": secrets[start + j][1],
                        "health": "healthy",
                        "health_changed_at": now - timedelta(hours=23),
                    }
                    for j, n in enumerate(chunk)
                ]
            ).execute()
        ids = dict(Server.select(Server.name, Server.id).tuples())
    store = HeartbeatStore(client)
    fleet = []
    for i, name in enumerate(names):
        server_id, (credential, digest), address = ids[name], secrets[i], address_of(i)
        heartbeats.register(client, server_id, digest, address)
        first = heartbeat_of(int(time.time() * 1000), UPTIME_AT_START)
        body = agent_body(first)
        answer = store.record(server_id, credential, address, first, body=body, now=time.time())
        if answer is not Recorded.OK:
            raise RuntimeError(f"seeding server {server_id}: its first heartbeat was {answer}")
        fleet.append({"id": server_id, "address": address, "credential": credential})
    return fleet


def add_baseline_columns() -> None:
    """The baseline's heartbeat columns on every row, with a first heartbeat (steady state)."""
    body = agent_body(heartbeat_of(1, UPTIME_AT_START)).decode()
    with connection() as db, db.atomic():
        for column, kind in BASELINE_COLUMNS:
            db.execute_sql(f"ALTER TABLE server ADD COLUMN {column} {kind}")
        p = db.param
        db.execute_sql(
            f"UPDATE server SET hb_seq = 1, hb_received_at = {p}, hb_body = {p}",
            (time.time(), body),
        )


def backend_cpus() -> dict[int, float]:
    """CPU seconds of each PostgreSQL backend serving this database, but for our own."""
    with connection() as db:
        rows = db.execute_sql(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid()"
        ).fetchall()
    return {int(pid): c.cpu_seconds(int(pid)) for (pid,) in rows}


def health_task(args: argparse.Namespace) -> tuple[str | None, str]:
    """The health pass this run measures (None: none) and what it is."""
    if args.health == "none":
        return None, "not run (--health none)"
    return args.health_task, f"the health task ({args.health_task})"


def sample(pgid: int, pids: dict[str, int | None], postgres: bool) -> dict[str, Any]:
    """CPU seconds so far of each measured process."""
    web = [c.cpu_times(pid) for pid in c.pids_in_group(pgid)]
    found: dict[str, Any] = {
        "at": time.monotonic(),
        "web": sum(u + s for u, s in web),
        "web_system": sum(s for _, s in web),
    }
    for name, pid in pids.items():
        found[name] = c.cpu_seconds(pid) if pid else 0.0
    found["postgres"] = backend_cpus() if postgres else {}
    found["postgres_shared"] = (
        sum(c.cpu_seconds(p) for p in c.pids_named(PG_SHARED)) if postgres else 0.0
    )
    return found


def until(moment: float) -> None:
    time.sleep(max(0.0, moment - time.monotonic()))


def web_argv(store: str, port: int, profile: Path | None) -> list[str]:
    """The web process of `store`: ours, the baseline's, or the trivial endpoint."""
    web = ["--port", str(port), "--workers", "1"]
    if store == "trivial":
        return [sys.executable, str(BENCH / "_trivial.py"), *web]
    if store == "redis" and profile is None:
        return [sys.executable, "-m", "cli.main", "web", *web]  # exactly `rachel-cloud web`
    argv = [sys.executable, str(BENCH / "_heartbeat_web.py"), "--store", store]
    argv += ["--profile", str(profile)] if profile else []
    return [*argv, "--", *web]


def spawn(script: str, argv: list[str], env: dict[str, str], **options: Any) -> Any:
    """One of the benchmark's helper processes (`bench/_*.py`), its stdout piped."""
    return subprocess.Popen(
        [sys.executable, str(BENCH / script), *argv], env=env, stdout=subprocess.PIPE, **options
    )


def measure(
    store: str, args: argparse.Namespace, tmp: Path, env: dict[str, str], redis_pid: int
) -> dict[str, Any]:
    """One store's run: serve, load, measure the window."""
    port = c.free_port()
    profiled = args.profile and store != "trivial"
    profile = c.RESULTS / f"{args.name}-{store}.prof" if profiled else None
    c.RESULTS.mkdir(parents=True, exist_ok=True)
    task, task_note = health_task(args) if store == "redis" else (None, f"not run ({store})")
    load_before = os.getloadavg()
    children: list[subprocess.Popen[bytes]] = []
    postgres = "postgres" in env["DATABASE_URL"]
    with c.serve(web_argv(store, port, profile), env, port, tmp / f"web-{store}.log") as pgid:
        start = time.monotonic() + STARTUP
        window = (start + args.warmup, start + args.warmup + args.duration)
        print(f"{store}: {args.servers} servers every {args.period:g} s", file=sys.stderr)
        try:
            agents = spawn(
                "_heartbeat_agents.py",
                [
                    *("--fleet", str(tmp / "fleet.json"), "--port", str(port)),
                    *("--period", str(args.period), "--start-at", str(start)),
                    *("--warmup", str(args.warmup), "--duration", str(args.duration)),
                    *("--proxy", str(args.proxy)),
                ],
                env,
            )
            children.append(agents)
            health = None
            if task is not None:
                with (tmp / "health.log").open("ab") as log:
                    health = spawn(
                        "_health_loop.py",
                        [
                            *("--task", task, "--interval", str(args.health_interval)),
                            *("--first-at", str(window[0] - 1.5 * args.health_interval)),
                            *("--until", str(window[1])),
                        ],
                        env,
                        stdin=subprocess.PIPE,
                        stderr=log,
                    )
                children.append(health)
            pids = {"redis": redis_pid, "health": health and health.pid, "agents": agents.pid}
            until(window[0])
            before = sample(pgid, pids, postgres)
            until(window[1])
            after = sample(pgid, pids, postgres)
            rss = {
                "web": sum(c.rss_bytes(p) for p in c.pids_in_group(pgid)),
                "redis": c.rss_bytes(redis_pid),
                "health_peak": c.rss_bytes(health.pid, "VmHWM") if health else 0,
            }
            load = json.loads(agents.communicate(timeout=args.duration + 60)[0])
            passes = json.loads(health.communicate(timeout=120)[0]) if health else None
        finally:
            for child in children:
                if child.poll() is None:
                    child.kill()
                    child.wait()
    wall = after["at"] - before["at"]
    measured = ("web", "web_system", "redis", "health", "agents", "postgres_shared")
    cpu = {k: after[k] - before[k] for k in measured}
    cpu["postgres"] = sum(v - before["postgres"].get(p, 0.0) for p, v in after["postgres"].items())
    figures: dict[str, Any] = {
        "store": store,
        "client": f"proxy ({args.proxy} kept-alive connections)" if args.proxy else "agents",
        "servers": args.servers,
        "period": args.period,
        "target_rate": args.servers / args.period,
        "window_seconds": round(wall, 3),
        "load_average_before": load_before,
        "load": load,
        "cpu_seconds": {k: round(v, 3) for k, v in cpu.items()},
        "cores": {k: round(v / wall, 4) for k, v in cpu.items()},
        "rss_mib": {k: round(v / 2**20, 1) for k, v in rss.items()},
        "postgres_backends": {
            "at_start": len(before["postgres"]),
            "at_end": len(after["postgres"]),
        },
        "health": {"task": task, "what": task_note, "interval": args.health_interval},
        "profiled": profile is not None,
    }
    if passes is not None:
        inside = [p for p in passes["passes"] if window[0] <= p["at"] < window[1]]
        figures["health"]["passes_in_window"] = inside
        figures["health"]["all_passes"] = len(passes["passes"])
    if profile is not None and profile.exists():
        figures["profile"] = _heartbeat_profile.summary(profile)
    if store == "redis":
        total, text = verdict(figures)
        figures["target"] = {"cores": total, "limit": TARGET_CORES, "verdict": text}
    return figures


def run(args: argparse.Namespace, tmp: Path, db_url: str) -> list[dict[str, Any]]:
    embedded = EmbeddedRedis(tmp / "redis")
    try:
        redis_url = embedded.ensure_running()
        redis_pid = embedded.pid()
        if redis_pid is None:
            raise RuntimeError("the embedded redis-server has no pid")
        env = {
            **os.environ,
            "RACHEL_DATA_DIR": str(tmp / "data"),
            "DATABASE_URL": db_url,
            "REDIS_URL": redis_url,
            "RACHEL_LOG_LEVEL": args.log_level,
            "RACHEL_HEALTH_INTERVAL": f"{args.health_interval:g}s",
            # Through a proxy, the agent's address comes in X-Forwarded-For from loopback.
            "RACHEL_TRUSTED_PROXIES": "127.0.0.1/32" if args.proxy else "",
            "PYTHONPATH": str(c.REPO),
        }
        init_database(db_url)
        with connection():
            migrations.upgrade()
        client = redis.Redis.from_url(redis_url)
        began = time.monotonic()
        (tmp / "fleet.json").write_text(json.dumps(seed(args.servers, client)))
        client.close()
        print(f"seeded {args.servers} servers in {time.monotonic() - began:.1f} s", file=sys.stderr)
        results = []
        for store in args.stores:
            if store == "database":
                add_baseline_columns()
            results.append(measure(store, args, tmp, env, redis_pid))
        return results
    finally:
        embedded.stop()


def verdict(r: dict[str, Any]) -> tuple[float | None, str]:
    """The target's sum and whether it is met (None: not measurable in this run).

    The sum: the web process, Redis, and the health task, that is its process
    and the PostgreSQL work of its queries (the web process makes none on the
    heartbeats' path, so this database's backends are the task's).
    """
    cores, task = r["cores"], r["health"]["task"]
    base = cores["web"] + cores["redis"]
    if task is None:
        return None, f"{base:.3f} + health (not measured): pending"
    total = base + cores["health"] + cores["postgres"]
    return total, f"{total:.3f}: {'met' if total <= TARGET_CORES else 'MISSED'}"


def report(results: list[dict[str, Any]]) -> str:
    rows = []
    for r in results:
        load, cores = r["load"], r["cores"]
        lat = load["latency"]
        accepted = load["window_statuses"].get("202", 0)
        refused = load["window_heartbeats"] - accepted
        rows.append(
            [
                r["store"] + (" (proxied)" if r["client"] != "agents" else ""),
                f"{load['window_rate']:.1f}",
                f"{accepted}/{load['window_heartbeats']}",
                refused,
                c.ms(lat["p50"]),
                c.ms(lat["p95"]),
                c.ms(lat["p99"]),
                f"{cores['web']:.3f} ({cores['web_system']:.3f} sys)",
                f"{cores['redis']:.3f}",
                f"{cores['health']:.3f}" if r["health"]["task"] else "-",
                f"{cores['postgres']:.3f}",
                verdict(r)[1]
                if r["store"] == "redis"
                else f"{cores['web'] + cores['redis'] + cores['postgres']:.3f} (web+redis+pg)",
            ]
        )
    headers = ["store", "hb/s", "202", "not 202", "p50", "p95", "p99", "web", "redis", "health"]
    lines = [c.table([*headers, "postgres", f"cores (target <= {TARGET_CORES})"], rows)]
    for r in results:
        load, rss = r["load"], r["rss_mib"]
        lines.append(
            f"{r['store']}: RSS web {rss['web']} MiB, redis {rss['redis']} MiB"
            + (f", health peak {rss['health_peak']} MiB" if r["health"]["task"] else "")
            + f"; postgres shared processes {r['cores']['postgres_shared']:.3f} cores"
            + f"; agents (not counted) {r['cores']['agents']:.3f} cores, "
            + f"send lag p99 {c.ms(load['send_lag']['p99'])}"
        )
        lines.append(f"{r['store']}: health task: {r['health']['what']}")
        for p in r["health"].get("passes_in_window", []):
            lines.append(f"  pass: {p['wall']:.3f} s wall, {p['cpu']:.3f} s CPU: {p['result']}")
        if load["all_errors"] or load["refusals"] or load["proxy_resent"]:
            lines.append(
                f"{r['store']}: errors {load['all_errors']}, refusals {load['refusals']}, "
                f"resent by the proxy {load['proxy_resent']}"
            )
        if "profile" in r:
            lines.append(f"{r['store']} profile:")
            lines += _heartbeat_profile.lines(r["profile"])
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", type=int, default=10_000)
    parser.add_argument(
        "--period", type=float, default=30.0, help="each server's heartbeat period (s)"
    )
    parser.add_argument("--duration", type=float, default=60.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=20.0)
    parser.add_argument(
        "--stores",
        default="trivial,stub,redis,database",
        help="redis (ours), database (the baseline), trivial (the floor: read, answer 202), "
        "stub (ours recording nothing: what the Redis call costs the web process)",
    )
    parser.add_argument(
        "--health",
        choices=["real", "none"],
        default="real",
        help="the health pass beside the product (none: not run, no verdict)",
    )
    parser.add_argument("--health-task", default=REAL_TASK, help="module:function of its pass")
    parser.add_argument(
        "--health-interval", type=float, default=10.0, help="RACHEL_HEALTH_INTERVAL"
    )
    parser.add_argument(
        "--profile", action="store_true", help="cProfile the web process (inflates its CPU)"
    )
    parser.add_argument(
        "--proxy",
        type=int,
        default=0,
        help="heartbeats through a reverse proxy's N kept-alive connections (X-Forwarded-For) "
        "instead of a connection per heartbeat from each agent (0)",
    )
    parser.add_argument("--database", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--pg-admin-url", default=c.PG_ADMIN_URL)
    parser.add_argument("--log-level", default="info", help="the web app's log level")
    parser.add_argument("--name", default="heartbeat")
    args = parser.parse_args(argv)
    args.stores = [s for s in args.stores.split(",") if s]
    if unknown := set(args.stores) - {"redis", "database", "trivial", "stub"}:
        parser.error(f"unknown store(s): {', '.join(sorted(unknown))}")
    if args.servers > 254 * 254 * 254:
        parser.error("at most 16,387,064 servers (one loopback address each)")
    with tempfile.TemporaryDirectory(prefix="rc-bench-hb-") as tmp:

        def produce() -> list[dict[str, Any]]:
            if args.database == "postgres":
                with c.postgres_database(args.pg_admin_url) as url:
                    return run(args, Path(tmp), url)
            return run(args, Path(tmp), f"sqlite:///{tmp}/heartbeat.db")

        return c.run_and_publish(args, produce, report)


if __name__ == "__main__":
    raise SystemExit(main())

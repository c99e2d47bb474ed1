"""Provisioning benchmark: N concurrent signed deploys through the running stack.

For each size and each callback dispatch mode (`enqueue`, as we are; `poll`,
the baseline that finds called-back servers by polling the database every
5 s), it starts the whole stack (`cli.up.start_stack`: simulator, web, W
workers, cron) on a fresh database, subscribes N customers, sends N signed
deploy webhooks at once, waits for every server to be ready, then
deprovisions them all. It reports:

- throughput (ready servers per second, first deploy sent to last ready),
- end to end (deploy sent -> ready) p50/p95/p99,
- orchestration overhead: end to end minus the simulator's own create, boot
  and cloud-init time for that server (`/_sim/stats`; the time the VPS waited
  for our answer to its callback counts as ours),
- Hetzner API calls per provision and per deprovision, counted by the simulator.

    uv run python bench/provision.py                      # N=100 and 1000, 4 workers
    uv run python bench/provision.py --quick              # N=100 only
    uv run python bench/provision.py --sizes 1000 --modes enqueue --workers 4
    # 1,000 provisions in flight at once: deploys at a sustainable rate, a
    # cloud that takes 42 s per server (the table's "in flight" column)
    uv run python bench/provision.py --sizes 1000 --rate 30 --timings 2s,30s,10s \
        --name provision-concurrent
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import _common as c
from _http import send_all, signed_request

c.ensure_repo_on_path()

import httpx  # noqa: E402
import redis  # noqa: E402

from cli import up  # noqa: E402
from cli.demo import demo_payloads  # noqa: E402
from cli.embedded_redis import embedded_for  # noqa: E402
from cli.supervisor import LogFiles  # noqa: E402
from core.platform.dev_secrets import webhook_secrets  # noqa: E402
from core.platform.settings import Settings  # noqa: E402
from core.store.db import connection  # noqa: E402
from core.store.models import Server, WebhookDelivery  # noqa: E402
from jobs.operator import deprovision  # noqa: E402

DONE = ("ready", "failed")


def _post_all(
    stack: up.LocalStack,
    path: str,
    payloads: list[dict[str, object]],
    concurrency: int,
    rate: float = 0,
) -> tuple[list[tuple[float, float, dict[str, Any]]], int]:
    """POST every payload signed; (sent at, latency, answer) per payload in order, and resends.

    With `rate` (per second), payload i is sent no earlier than i / rate seconds in.
    """
    secret = webhook_secrets(stack.settings)[0]
    port = stack.settings.web_port
    requests = [signed_request(port, path, secret, json.dumps(p).encode()) for p in payloads]
    answers, resent = asyncio.run(send_all(port, requests, concurrency, rate))
    for answer in answers:
        if answer.status >= 300:
            raise RuntimeError(f"{path} answered {answer.status}: {answer.body[:200]!r}")
    return [(a.sent, a.took, json.loads(a.body)) for a in answers], resent


def _sim_stats(settings: Settings) -> dict[str, Any]:
    url = f"http://{settings.sim_host}:{settings.sim_port}/_sim/stats"
    headers = {"authorization": f"Bearer {settings.effective_hcloud_token}"}
    answer: dict[str, Any] = httpx.get(url, headers=headers, timeout=30).json()
    return answer


def _requests_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, int]:
    old, new = before["requests"], after["requests"]
    return {op: n - old.get(op, 0) for op, n in new.items() if n - old.get(op, 0)}


def _servers_of(
    answers: list[tuple[float, float, dict[str, Any]]], timeout: float
) -> dict[int, tuple[float, float]]:
    """{server id: (sent at, webhook latency)} once the intake carried every deploy out."""
    by_delivery = {str(a["webhook_id"]): (t, took) for t, took, a in answers}
    deadline = time.monotonic() + timeout
    # A count on the intake's partial index while waiting (this process shares the
    # stack's cores), then one read of the outcomes. The database is this run's own.
    while time.monotonic() < deadline:
        with connection():
            waiting = WebhookDelivery.select().where(WebhookDelivery.state == "accepted").count()
        if not waiting:
            break
        time.sleep(0.25)
    with connection():
        rows = list(
            WebhookDelivery.select(WebhookDelivery.webhook_id, WebhookDelivery.server_id).where(
                WebhookDelivery.webhook_id.in_(list(by_delivery))
            )
        )
    return {r.server_id: by_delivery[r.webhook_id] for r in rows if r.server_id is not None}


def _wait(ids: list[int], statuses: tuple[str, ...], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with connection():
            left = (
                Server.select()
                .where(Server.id.in_(ids) & Server.status.not_in(list(statuses)))
                .count()
            )
        if not left:
            return True
        time.sleep(0.25)
    return False


def _cpu(stack: up.LocalStack) -> dict[str, float]:
    """CPU seconds so far of each child of the stack, of PostgreSQL and of redis-server."""
    found: dict[str, float] = {}
    for child in stack.supervisor.children:
        name = child.spec.name.split("-")[0]
        found[name] = found.get(name, 0.0) + (c.cpu_seconds(child.pid) if child.pid else 0.0)
    found["postgres"] = sum(
        c.cpu_seconds(p) for p in c.pids_named("^(postgres:|/usr/lib/postgresql)")
    )
    embedded = embedded_for(stack.settings).pid() if stack.owns_redis else None
    redis_pids = [embedded] if embedded else c.pids_named("redis-server")
    found["redis"] = sum(c.cpu_seconds(p) for p in redis_pids)
    # This process: the load generator signing and sending the deploys, and the
    # database polling that watches them. On the same cores as the stack.
    found["bench"] = time.process_time()
    return found


def peak_in_flight(spans: list[tuple[float, float]]) -> int:
    """The most provisions in flight at one instant (deploy sent, server not yet done)."""
    # At equal times a provision that ends (-1) is counted before one that starts.
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    peak = current = 0
    for _, step in events:
        current += step
        peak = max(peak, current)
    return peak


def _stamp(when: datetime | None) -> float | None:
    return when.replace(tzinfo=UTC).timestamp() if when is not None else None


def _measure(stack: up.LocalStack, size: int, args: argparse.Namespace) -> dict[str, Any]:
    settings = stack.settings
    pairs = [demo_payloads(i) for i in range(1, size + 1)]
    _post_all(stack, "/webhooks/subscription", [p[0] for p in pairs], 32)
    before = _sim_stats(settings)
    cpu_before = _cpu(stack)
    answers, resent = _post_all(
        stack, "/webhooks/deploy", [p[1] for p in pairs], args.concurrency, args.rate
    )
    sent = _servers_of(answers, args.timeout)
    ids = sorted(sent)
    finished = _wait(ids, DONE, args.timeout)
    provisioned = _sim_stats(settings)
    cpu_after = _cpu(stack)
    with connection():
        rows = list(Server.select().where(Server.id.in_(ids)))
    sims = provisioned["servers"]
    phases: dict[str, list[float]] = {
        k: [] for k in ("intake", "queued", "creating", "boot+init", "inject")
    }
    e2e, overhead = [], []
    ready_times, ready_ids, sim_own, callbacks = [], [], [], []
    # In flight: from the deploy sent to ready, failed, or (never finished)
    # the end of the wait.
    measured_until = time.time()
    spans = [
        (sent[row.id][0], _stamp(row.ready_at) or _stamp(row.failed_at) or measured_until)
        for row in rows
    ]
    for row in rows:
        ready = _stamp(row.ready_at)
        if row.status != "ready" or ready is None:
            continue
        ready_ids.append(row.id)
        ready_times.append(ready)
        total = ready - sent[row.id][0]
        e2e.append(total)
        sim = sims.get(str(row.provider_id), {})
        own = sum(sim.get(k) or 0.0 for k in ("create", "boot", "cloud_init"))
        own -= sim.get("callback") or 0.0
        overhead.append(total - own)
        sim_own.append(own)
        callbacks.append(sim.get("callback") or 0.0)
        marks = [sent[row.id][0]] + [
            _stamp(x)
            for x in (
                row.created_at,
                row.creating_at,
                row.cloud_init_at,
                row.injecting_secrets_at,
                row.ready_at,
            )
        ]
        for name, start, end in zip(phases, marks, marks[1:], strict=False):
            if start is not None and end is not None:
                phases[name].append(end - start)
    first_sent = min(t for t, _ in sent.values())
    span = (max(ready_times) - first_sent) if ready_times else None
    # Deprovision every ready server, through the operator function the CLI uses.
    conn = redis.Redis.from_url(stack.redis_url)
    for server_id in ready_ids:
        deprovision(conn, server_id, "operator:bench", reason="benchmark teardown")
    deleted = _wait(ready_ids, ("deleted",), args.timeout)
    after = _sim_stats(settings)
    provision_calls = _requests_delta(before, provisioned)
    deprovision_calls = _requests_delta(provisioned, after)
    # Deprovisioned: the rows the control plane marked deleted. The simulator's
    # own flag waits for its delete action, which lasts as long as a boot.
    with connection():
        n_deleted = (
            Server.select().where(Server.id.in_(ready_ids) & (Server.status == "deleted")).count()
        )
    n_ready = len(ready_ids)
    return {
        "size": size,
        "ready": n_ready,
        "failed": sum(1 for r in rows if r.status == "failed"),
        "finished": finished,
        "throughput_per_s": n_ready / span if span else None,
        "wall_seconds": span,
        "peak_in_flight": peak_in_flight(spans),
        "end_to_end": c.summary(e2e),
        "overhead": c.summary(overhead),
        "sim_own": c.summary(sim_own),
        "callback_answer": c.summary(callbacks),
        "phases_p50": {k: c.pct(v, 50) for k, v in phases.items()},
        "phases_p95": {k: c.pct(v, 95) for k, v in phases.items()},
        "deploy_webhook_latency": c.summary([took for _, took in sent.values()]),
        "deploys_resent": resent,
        "api_calls_provision": provision_calls,
        "api_calls_per_provision": sum(provision_calls.values()) / max(1, n_ready),
        "api_calls_deprovision": deprovision_calls,
        "api_calls_per_deprovision": sum(deprovision_calls.values()) / max(1, n_deleted),
        "deprovisioned": n_deleted if deleted else f"{n_deleted} (timed out)",
        "rate_limited": after["rate_limited"],
        "cpu_ms_per_provision": {
            k: round((cpu_after[k] - cpu_before.get(k, 0.0)) * 1000 / max(1, n_ready), 1)
            for k in cpu_after
        },
    }


def run_one(args: argparse.Namespace, size: int, mode: str) -> dict[str, Any]:
    """Start the stack for one (size, mode), measure, stop everything."""
    env = {
        "RACHEL_CALLBACK_DISPATCH": mode,
        "RACHEL_CALLBACK_POLL_INTERVAL": args.poll_interval,
        "RACHEL_WORKER_CLASS": args.worker_class,
        # The settle period is a deliberate wait, not control-plane work: off by
        # default so the figures compare with earlier runs (--settle to include it).
        "RACHEL_SERVICE_SETTLE": args.settle,
    }
    if args.redis_url:  # else the stack starts an embedded redis-server of its own
        env["REDIS_URL"] = args.redis_url
        redis.Redis.from_url(args.redis_url).flushdb()
    try:
        with local_stack(args, env, workers=args.workers) as stack:
            result = _measure(stack, size, args)
    finally:
        if args.redis_url:
            redis.Redis.from_url(args.redis_url).flushdb()
    result.update(mode=mode, workers=args.workers, worker_class=args.worker_class, rate=args.rate)
    return result


@contextlib.contextmanager
def local_stack(
    args: argparse.Namespace, env: dict[str, str], *, workers: int, logs: Path | None = None
) -> Iterator[up.LocalStack]:
    """The whole stack (`cli.up.start_stack`) on a database of its own and free ports.

    `args` gives the database (`--database`, `--pg-admin-url`), the log level and the
    simulated create, boot and cloud-init times (`--timings`); `env` adds settings.
    Everything is stopped, and the database dropped, when the block ends.
    """
    with (
        tempfile.TemporaryDirectory(prefix="rc-bench-") as tmp,
        c.postgres_database(args.pg_admin_url)
        if args.database == "postgres"
        else _sqlite(tmp) as db_url,
    ):
        env = {
            "RACHEL_DATA_DIR": str(Path(tmp) / "data"),
            "DATABASE_URL": db_url,
            "RACHEL_WEB_PORT": str(c.free_port()),
            "RACHEL_SIM_PORT": str(c.free_port()),
            "RACHEL_SIM_SSH_PORT": str(c.free_port()),
            "RACHEL_LOG_LEVEL": args.log_level,
            **env,
        }
        with c.environment(env):
            settings = Settings.load(env_file=None)
            up.TIMINGS["bench"] = tuple(args.timings.split(","))  # type: ignore[assignment]
            sink = LogFiles(logs or Path(tmp) / "logs")
            stack = up.start_stack(settings, sink, workers=workers, timing="bench")
            try:
                yield stack
            finally:
                up.stop_stack(stack)
                sink.close()


def stack_options(
    parser: argparse.ArgumentParser, *, workers: int, timings: str, timeout: float, name: str
) -> None:
    """The options `local_stack` reads, with the workers, the waits and the results' name."""
    parser.add_argument("--workers", type=int, default=workers)
    parser.add_argument("--timings", default=timings, help="create,boot,cloud-init")
    parser.add_argument("--database", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--pg-admin-url", default=c.PG_ADMIN_URL)
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--timeout", type=float, default=timeout, help="seconds for each wait")
    parser.add_argument("--name", default=name, help="bench/results/<name>.json")


class _sqlite:
    def __init__(self, tmp: str) -> None:
        self.url = f"sqlite:///{Path(tmp) / 'bench.db'}"

    def __enter__(self) -> str:
        return self.url

    def __exit__(self, *exc: object) -> None:
        return None


def report(results: list[dict[str, Any]]) -> str:
    """The human table: one line per run, then the enqueue/poll ratios."""
    rows = []
    for r in results:
        rows.append(
            [
                f"N={r['size']} {r['mode']}" + (f" @{r['rate']:g}/s" if r.get("rate") else ""),
                f"{r['ready']}/{r['size']}",
                str(r.get("peak_in_flight", "-")),
                f"{r['throughput_per_s']:.1f}/s" if r["throughput_per_s"] else "-",
                c.ms(r["end_to_end"]["p50"]),
                c.ms(r["end_to_end"]["p95"]),
                c.ms(r["end_to_end"]["p99"]),
                c.ms(r["overhead"]["mean"]),
                c.ms(r["overhead"]["p50"]),
                c.ms(r["overhead"]["p95"]),
                f"{r['api_calls_per_provision']:.3f}",
                f"{r['api_calls_per_deprovision']:.3f}",
            ]
        )
    out = [
        c.table(
            [
                "run",
                "ready",
                "in flight",
                "throughput",
                "e2e p50",
                "e2e p95",
                "e2e p99",
                "ovh mean",
                "ovh p50",
                "ovh p95",
                "API/prov",
                "API/deprov",
            ],
            rows,
        )
    ]
    by = {(r["size"], r["mode"]): r for r in results}
    for size in sorted({r["size"] for r in results}):
        ours, base = by.get((size, "enqueue")), by.get((size, "poll"))
        if ours and base and ours["overhead"]["p50"] and ours["throughput_per_s"]:
            o, b = ours["overhead"], base["overhead"]
            speed = ours["throughput_per_s"] / base["throughput_per_s"]
            out.append(
                f"N={size}: poll/enqueue overhead mean x{b['mean'] / o['mean']:.1f}, "
                f"p50 x{b['p50'] / o['p50']:.1f}, p95 x{b['p95'] / o['p95']:.1f}; "
                f"enqueue/poll throughput x{speed:.2f}"
            )
    for r in results:
        p50 = ", ".join(f"{k} {c.ms(v)}" for k, v in r["phases_p50"].items())
        cpu = ", ".join(f"{k} {v}" for k, v in r["cpu_ms_per_provision"].items())
        out.append(f"N={r['size']} {r['mode']} CPU ms per provision: {cpu}")
        out.append(
            f"N={r['size']} {r['mode']} phase p50: {p50}; sim own p50 "
            f"{c.ms(r['sim_own']['p50'])}, callback answer p50 "
            f"{c.ms(r['callback_answer']['p50'])}; calls {r['api_calls_provision']}"
            f" / {r['api_calls_deprovision']}"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,1000", help="comma-separated N")
    parser.add_argument("--modes", default="enqueue,poll", help="enqueue (as we are), poll")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--worker-class", choices=["fork", "simple"], default="simple")
    parser.add_argument("--concurrency", type=int, default=64, help="deploy requests in flight")
    parser.add_argument(
        "--rate", type=float, default=0, help="deploys per second (0: all at once, a burst)"
    )
    parser.add_argument("--timings", default="0s,0s,0s", help="simulated create,boot,cloud-init")
    parser.add_argument(
        "--settle",
        default="0s",
        help="RACHEL_SERVICE_SETTLE: how long Rachel8 must stay up before ready (0s: checked "
        "once at the injection; production's 15s adds a scheduled second SSH look)",
    )
    parser.add_argument("--poll-interval", default="5s", help="the baseline's polling interval")
    parser.add_argument("--database", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--pg-admin-url", default=c.PG_ADMIN_URL)
    parser.add_argument(
        "--redis-url",
        default="",
        help="a Redis database no one else uses (default: an embedded redis-server, whose "
        "pub/sub no other process on this machine hears)",
    )
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per phase of a run")
    parser.add_argument("--quick", action="store_true", help="N=100 only")
    parser.add_argument("--name", default="provision", help="bench/results/<name>.json")
    args = parser.parse_args(argv)
    sizes = [100] if args.quick else [int(s) for s in args.sizes.split(",")]
    modes = args.modes.split(",")
    results = []
    with c.sigterm_as_interrupt():
        try:
            for size in sizes:
                for mode in modes:
                    print(f"running N={size} {mode} ({args.workers} workers)...", file=sys.stderr)
                    results.append(run_one(args, size, mode))
        except KeyboardInterrupt:
            print("interrupted; everything started was stopped", file=sys.stderr)
            return 130
    return c.publish(args.name, args, report(results), results)


if __name__ == "__main__":
    raise SystemExit(main())

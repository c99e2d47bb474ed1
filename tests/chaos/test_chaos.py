"""Chaos: deploys and deprovisions through the webhook while everything breaks.

The stack runs as in production (supervised web, workers and cron, a real
Redis server, PostgreSQL), once with simple workers (the default) and once
with forking ones, against the simulator, which injects 5% errors on every
API operation, 429 bursts, slow actions and lost callbacks. Meanwhile work
horses (forking workers) and whole workers are SIGKILLed every few seconds, Redis is
restarted once and the web process is killed once (the supervisor restarts
it). Then, with the sweeper and the reconciler run:

- every deploy is ready, or failed with a recorded reason and phase;
- every deprovision (a cancelled subscription past its grace) is deleted;
- no duplicate VPS at any sampled moment, no VPS without a live row, no ready
  server without its VPS; every timeline is complete; the warm pool (on)
  leaves no server its row does not own, and some deploys were served by it;
- no planted secret anywhere (tests/leaks.py).

CI runs a bounded version (40 deploys, 10 deprovisions). The long one:

    RACHEL_CHAOS_LONG=1 uv run pytest tests/chaos -s

prints its figures (and writes them to RACHEL_CHAOS_REPORT when set).
"""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import redis

from core.domain.lifecycle import Status
from core.platform.settings import Settings
from core.security.signing import new_webhook_id, sign
from core.store.db import connection, init_database
from core.store.models import PoolServer, Server, WebhookDelivery
from core.store.vault import load_keyring
from jobs import reconcile, sweeper
from jobs.context import JobContext, use_context
from tests import factories
from tests.chaos.rig import Figures, Stack, postgres_database, start_stack, stop_stack
from tests.leaks import search_everything
from tests.reliability.invariants import (
    provider_problems,
    row_problems,
    sim_servers,
    timeline_problems,
)

pytestmark = [pytest.mark.chaos, pytest.mark.postgres, pytest.mark.timeout(1800)]

LONG = os.environ.get("RACHEL_CHAOS_LONG") == "1"
DEPLOYS, DEPROVISIONS = (200, 50) if LONG else (40, 10)
SPREAD = 60.0 if LONG else 15.0  # seconds over which the deploys arrive
KILL_EVERY = 3.0
SETTLE_TIMEOUT = 900.0 if LONG else 240.0
SEED = 1010
FAULTS = {
    "errors": {"*": {"code": "server_error", "rate": 0.05}},
    "action_delay": 0.5,
    "no_callback": 0.05,
    "seed": SEED,
}


@pytest.fixture(params=["simple", "fork"])
def stack(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Stack]:
    """The stack with each worker kind: simple (the default) and forking (work horses)."""
    admin = os.environ.get("TEST_DATABASE_URL")
    if not admin:
        pytest.skip("the chaos run needs PostgreSQL: set TEST_DATABASE_URL")
    with postgres_database(admin) as url:
        init_database(url)
        running = start_stack(
            tmp_path, url, workers=2, boot_timeout="15s", seed=SEED, worker_class=request.param
        )
        try:
            yield running
        finally:
            stop_stack(running)
            use_context(None)


class Traffic:
    """The dashboard: signed webhooks, retried (same id, same body) until answered."""

    def __init__(self, stack: Stack, figures: Figures) -> None:
        self.stack = stack
        self.figures = figures
        self.client = httpx.Client(base_url=stack.web_url, timeout=15)
        self.deploys: dict[str, str] = {}  # customer -> the webhook-id of their deploy
        self.cancelled: list[str] = []
        self.planted: list[str] = []

    def send(self, path: str, payload: dict[str, object]) -> dict[str, object]:
        body = json.dumps(payload).encode()
        webhook_id = new_webhook_id()
        for _ in range(200):
            headers = {"content-type": "application/json"}
            headers.update(sign(self.stack.webhook_secret, body, webhook_id=webhook_id))
            try:
                response = self.client.post(path, content=body, headers=headers)
                if response.status_code < 300:
                    answer: dict[str, object] = response.json()
                    return answer
                assert response.status_code >= 500, (path, response.status_code, response.text)
            except httpx.HTTPError:
                pass  # the web process is down (killed, restarting) or Redis is
            self.figures.webhook_retries += 1
            time.sleep(0.25)
        raise AssertionError(f"{path}: no answer after 200 attempts")

    def subscription(self, customer: str, status: str) -> None:
        now = datetime.now(UTC).isoformat()
        self.send(
            "/webhooks/subscription",
            {"customer_id": customer, "status": status, "occurred_at": now},
        )

    def run(self) -> None:
        rng = random.Random(SEED)
        cancel_every = DEPLOYS // DEPROVISIONS
        for n in range(DEPLOYS):
            customer = f"cus_chaos_{n:04d}"
            token = f"{80000000 + n}:CHAOS-planted-bot-token-{rng.getrandbits(64):016x}"
            oauth = {
                "access_token": f"sk-ant-oat01-chaos-planted-{rng.getrandbits(64):x}",
                "refresh_token": f"sk-ant-ort01-chaos-planted-{rng.getrandbits(64):x}",
                "expires_at": factories.EXPIRES_AT_MS,
            }
            self.planted += [token, oauth["access_token"], oauth["refresh_token"]]
            self.subscription(customer, "active")
            answer = self.send(
                "/webhooks/deploy",
                {
                    "customer_id": customer,
                    "email": f"{customer}@example.com",
                    "telegram_bot_token": token,
                    "owner_telegram_user_id": 100_000_000 + n,
                    "claude_oauth": oauth,
                },
            )
            self.deploys[customer] = str(answer["webhook_id"])
            self.figures.deploys += 1
            # Cancel an earlier customer now and then: some in flight, some ready.
            earlier = n - 3
            if earlier >= 0 and earlier % cancel_every == 0 and len(self.cancelled) < DEPROVISIONS:
                victim = f"cus_chaos_{earlier:04d}"
                self.subscription(victim, "canceled")
                self.cancelled.append(victim)
                self.figures.deprovisions += 1
            time.sleep(SPREAD / DEPLOYS)
        while len(self.cancelled) < DEPROVISIONS:
            victim = f"cus_chaos_{DEPLOYS - 1 - len(self.cancelled):04d}"
            self.subscription(victim, "canceled")
            self.cancelled.append(victim)
            self.figures.deprovisions += 1


def catch_horse(stack: Stack, within: float) -> int | None:
    """A work horse of any worker, polled for up to `within` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        for worker in stack.workers:
            horses = stack.horses(worker)
            if horses:
                return horses[0]
        time.sleep(0.01)
    return None


def chaos(stack: Stack, figures: Figures, stop: threading.Event, problems: list[str]) -> None:
    """Kill, restart and sample until told to stop."""
    rng = random.Random(SEED)
    started = time.monotonic()
    redis_at, web_at = SPREAD * 0.35, SPREAD * 0.6
    next_burst = 5.0
    while not stop.wait(KILL_EVERY):
        elapsed = time.monotonic() - started
        forking = stack.env.get("RACHEL_WORKER_CLASS") == "fork"
        if forking and rng.random() < 0.65 and (horse := catch_horse(stack, 1.5)) is not None:
            os.kill(horse, signal.SIGKILL)  # mid-job: a work horse only lives that long
            figures.horse_kills += 1
        elif stack.kill_group(rng.choice(stack.workers)):
            figures.worker_kills += 1
        if redis_at and elapsed > redis_at:
            stack.redis.restart(down_seconds=2.0)
            figures.redis_restarts += 1
            redis_at = 0.0
        if web_at and elapsed > web_at:
            if stack.kill_group("web"):
                figures.web_restarts += 1
            web_at = 0.0
        if elapsed > next_burst:
            stack.sim.set_faults({**FAULTS, "rate_limit_burst": 15})
            figures.rate_limit_bursts += 1
            next_burst = elapsed + 10.0
        problems += provider_problems(sim_servers(stack.sim), settled=False)


def outcomes(traffic: Traffic) -> dict[str, tuple[str | None, int | None]]:
    """Each customer's deploy: its intake state and server."""
    found = {
        d.webhook_id: (d.state, d.server_id)
        for d in WebhookDelivery.select().where(
            WebhookDelivery.webhook_id.in_(list(traffic.deploys.values()))
        )
    }
    return {c: found.get(wid, (None, None)) for c, wid in traffic.deploys.items()}


def unfinished(traffic: Traffic) -> dict[str, object]:
    """Deploys not ended as they must: ready or failed, deleted once cancelled.

    A cancelled customer's deploy may also have been refused, when the
    cancellation was stored before the intake carried the deploy out.
    """
    with connection():
        rows = {r.id: r.status for r in Server.select(Server.id, Server.status)}
        found = outcomes(traffic)
    left: dict[str, object] = {}
    for customer, (state, server_id) in found.items():
        cancelled = customer in traffic.cancelled
        if state == "refused" and cancelled:
            continue
        want = {Status.DELETED} if cancelled else {Status.READY, Status.FAILED}
        if state != "done" or server_id is None or rows.get(server_id) not in want:
            left[customer] = (state, server_id, rows.get(server_id or 0))
    return left


def settled(traffic: Traffic) -> bool:
    return not unfinished(traffic)


def server_ids(traffic: Traffic) -> list[int]:
    with connection():
        return sorted(sid for _, sid in outcomes(traffic).values() if sid is not None)


def repair(stack: Stack) -> JobContext:
    """Run the sweeper and the reconciler (applying its fixes) in this process."""
    settings = Settings.load(environ={**stack.env, "RACHEL_ORPHAN_MIN_AGE": "0s"}, env_file=None)
    ctx = JobContext(
        settings=settings,
        keyring=load_keyring(settings),
        redis=redis.Redis.from_url(stack.redis.url),
    )
    use_context(ctx)
    sweeper.run(ctx)
    reconcile.run(ctx, apply=True)
    return ctx


def sim_files(stack: Stack) -> tuple[list[Path], list[str]]:
    """The VPS root filesystems and the user data of the simulator's servers."""
    simulator = stack.sim.simulator
    with simulator.lock:
        roots = [v.root for v in simulator.vpss.values()]
        user_data = [s.user_data or "" for s in simulator.store.servers.values()]
    return roots, user_data


def test_chaos_run_loses_duplicates_and_leaks_nothing(stack: Stack) -> None:
    figures = Figures()
    began = time.monotonic()
    stack.sim.set_faults(FAULTS)
    traffic = Traffic(stack, figures)
    stop = threading.Event()
    sampled: list[str] = []
    breaker = threading.Thread(target=chaos, args=(stack, figures, stop, sampled), daemon=True)
    breaker.start()
    try:
        traffic.run()
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while not settled(traffic) and time.monotonic() < deadline:
            if time.monotonic() - began > SPREAD * 1.5:
                stop.set()  # the breaking is over; let the system finish
            time.sleep(1.0)
    finally:
        stop.set()
        breaker.join(timeout=60)
    stack.sim.clear_faults()
    # The sweeper and reconciler pick up whatever the chaos left behind.
    deadline = time.monotonic() + 120
    while True:
        ctx = repair(stack)
        with connection():
            done = settled(traffic) and not provider_problems(sim_servers(stack.sim), settled=True)
        if done or time.monotonic() > deadline:
            break
        time.sleep(3.0)
    figures.seconds = round(time.monotonic() - began, 1)
    figures.sim = {
        k: v
        for k, v in stack.sim.stats().items()
        if k in ("total_requests", "errors", "rate_limited")
    }
    with connection():
        rows = {r.id: r for r in Server.select()}
        figures.outcomes = dict(Counter(r.status for r in rows.values()))
        figures.pool = dict(Counter(p.state for p in PoolServer.select()))
        figures.failure_reasons = dict(
            Counter(
                f"{r.failed_phase}: {(r.last_error or '').split(' (')[0][:70]}"
                for r in rows.values()
                if r.status == Status.FAILED
            )
        )
        report = json.dumps(asdict(figures), indent=2, default=str)
        print(f"\nchaos figures:\n{report}\nsupervisor restarts: {stack.restarts()}")
        if os.environ.get("RACHEL_CHAOS_REPORT"):
            Path(os.environ["RACHEL_CHAOS_REPORT"]).write_text(report)

        left = unfinished(traffic)
        assert not left, f"deploys that did not end: {left}"
        assert len(traffic.deploys) == DEPLOYS and len(traffic.cancelled) == DEPROVISIONS
        assert not sampled, f"duplicates seen during the run: {sampled[:10]}"
        assert not provider_problems(sim_servers(stack.sim), settled=True)
        assert not row_problems()
        assert not timeline_problems()
        assert figures.pool.get("claimed", 0) > 0, f"no deploy served by the pool: {figures.pool}"
        assert figures.horse_kills + figures.worker_kills >= 3, "the run killed (almost) nothing"
        assert figures.redis_restarts == 1 and figures.web_restarts == 1
        assert sum(figures.sim["errors"].values()) > 0  # type: ignore[union-attr]
    # Secrets: logs of every child, events, database, Redis, jobs, user data, the TUI.
    roots, user_data = sim_files(stack)
    with connection():
        search = search_everything(
            traffic.planted,
            client=ctx.redis,
            log_paths=[stack.tmp / "logs", stack.tmp / "data"],
            vps_roots=roots,
            settings=ctx.settings,
            tui_servers=server_ids(traffic)[:4],
        )
    search.add("user data", "\n".join(user_data))
    search.check({"logs": 5000, "redis": 1000, "user data": 1000, "tui": 2000})

"""Detection benchmark: crashed services found and healthy again, ours against an SSH sweep.

Issue 22's second target: "a crashed service is detected within 60 s p95 and
healthy again within 90 s p95; no SSH connection is opened to a healthy
server; the baseline (the replaced service's design: a 60 s SSH sweep, 5 at a
time) measured side by side in the same run".

It runs the whole stack (`cli.up.start_stack`: simulator, web, workers, cron
with the health task) at production timings (heartbeats every 30 s, silent
after 75 s, a health pass every 10 s, the repair defaults) and the simulator
in real time (Rachel8's `RestartSec=10`, `StartLimitBurst=3`), provisions N
servers and splits them in two halves, alternately by id:

- **ours**: their agents heartbeat, the health task decides and repairs;
- **baseline**: not watched by us (their heartbeat credential is removed, so
  the health task treats them as servers from before the agent: `unknown`,
  never probed nor repaired; their agent's timer is disabled over SSH before
  the measurement) and swept instead by this process as the replaced service
  did (`bench/_sweep.py`: every 60 s, 5 SSH sessions at a time, a Rachel8 found
  not running restarted).

Then the same seeded schedule crashes one server of each half at once, at a
random time in each of K equal slots of the window (so crashes never bunch
up), each server at most once (a second crash of one of ours within
RACHEL_REPAIR_WINDOW would count as the same repair incident). A crash is the
simulator's `crash_loop` fault: Rachel8 exits at once, and every start exits
again, until systemd gives up after 3 restarts 10 s apart (`start-limit-hit`,
41.5 s later). The fault is cleared CAUSE_SECONDS after the crash, whatever
the designs did meanwhile, so the cause lasts the same time for both: a unit
left alone is `failed` by then and stays down until someone restarts it; one
a design restarted while it still crashed (which resets systemd's start
limit) is still in systemd's loop and comes back at its next automatic
restart. t0 is the crash (the moment the fault is sent) for both designs.

- detection: t0 to the server's health Event turning unhealthy (ours), to the
  sweep's SSH look finding Rachel8 not running (baseline);
- healthy again: t0 to the health Event turning healthy (ours), to Rachel8
  running again after the sweep's restart (baseline: seen in the simulator);
- running again: t0 to Rachel8 running again as the simulator shows it (both);
- SSH connections each VPS accepted (`GET /_sim/vps`), at the start of the
  window and at its end: to our servers that never crashed (must be 0), to
  ours before their crash (must be 0), and in total for each design.

    uv run python bench/detection.py                   # 72 servers, 32 crashes per design
    uv run python bench/detection.py --servers 40 --incidents 16 --window 240   # shorter
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC
from typing import Any

import _common as c
import _detection_report as rep
import _sweep
from provision import _post_all, _servers_of, _wait, local_stack, stack_options

c.ensure_repo_on_path()

import httpx  # noqa: E402
import redis  # noqa: E402

from cli import up  # noqa: E402
from cli.demo import demo_payloads  # noqa: E402
from core.cloud.ssh import Target, connect, run  # noqa: E402
from core.cloud.vps_contract import AGENT_TIMER_UNIT  # noqa: E402
from core.domain import heartbeats  # noqa: E402
from core.domain.vps_access import target_for  # noqa: E402
from core.platform.settings import Settings  # noqa: E402
from core.store.db import connection  # noqa: E402
from core.store.models import Event, Server  # noqa: E402
from core.store.vault import load_keyring  # noqa: E402

#: How long the crash's cause lasts: systemd's own retries of a crashing Rachel8
#: (3 restarts, RestartSec=10, each start exiting after the simulated 0.5 s
#: start-up: the start limit is hit 41.5 s after the crash), plus a margin.
CAUSE_SECONDS = 42.0
#: A start of Rachel8 before the fault was cleared may still exit this long after.
DOOMED_SECONDS = 0.6
#: Production's settings of fleet health (the defaults, spelled out).
PRODUCTION = {
    "RACHEL_HEARTBEAT_INTERVAL": "30s",
    "RACHEL_HEARTBEAT_MISSING": "75s",
    "RACHEL_HEALTH_INTERVAL": "10s",
    "RACHEL_REPAIR": "true",
    "RACHEL_REPAIR_RESTARTS": "3",
    "RACHEL_REPAIR_WINDOW": "30m",
    "RACHEL_REPAIR_COOLDOWN": "30m",
    "RACHEL_SIM_TIME_SCALE": "1",
    # How long Rachel8 must stay up: before ready, and after a repair's restart
    # before the agent is asked for the heartbeat that tells (`jobs.repair`).
    "RACHEL_SERVICE_SETTLE": "15s",
}


@dataclass
class Incident:
    """One crash of one server, as the benchmark saw it happen."""

    design: str
    server_id: int
    name: str
    planned_at: float
    crash_at: float | None = None
    cleared_at: float | None = None
    state_at_clear: str | None = None
    failed_seen_at: float | None = None
    running_again_at: float | None = None
    ssh_at_crash: int | None = None

    @property
    def ongoing(self) -> bool:
        return self.crash_at is not None and self.running_again_at is None


class Simulator:
    """The simulator's admin API (`/_sim/vps`), as this benchmark uses it."""

    def __init__(self, settings: Settings) -> None:
        self.http = httpx.Client(
            base_url=f"http://{settings.sim_host}:{settings.sim_port}",
            headers={"authorization": f"Bearer {settings.effective_hcloud_token}"},
            timeout=30,
        )
        #: seconds each `GET /_sim/vps` took (the benchmark's own load on the simulator)
        self.reads: list[float] = []

    def boxes(self) -> dict[str, dict[str, Any]]:
        """Hetzner server name -> its VPS as `GET /_sim/vps` describes it."""
        started = time.perf_counter()
        answer = self.http.get("/_sim/vps")
        answer.raise_for_status()
        self.reads.append(time.perf_counter() - started)
        return {box["name"]: box for box in answer.json()["vps"]}

    def fault(self, names: list[str], *, on: bool) -> None:
        body = {"fault": "crash_loop", "servers": names}
        answer = self.http.request("POST" if on else "DELETE", "/_sim/vps/faults", json=body)
        answer.raise_for_status()
        done = answer.json()["applied" if on else "cleared"]
        if sorted(done) != sorted(names):
            raise RuntimeError(f"crash_loop {'applied to' if on else 'cleared of'} {done}: {names}")


def unit_state(box: dict[str, Any]) -> str:
    unit = box.get("rachel8") or {}
    return f"{unit.get('ActiveState')}/{unit.get('SubState')}/{unit.get('Result')}"


def _running(box: dict[str, Any]) -> bool:
    return unit_state(box) == "active/running/success"


def _epoch(when: Any) -> float:
    return float(when.replace(tzinfo=UTC).timestamp())


def deploy(stack: up.LocalStack, count: int, timeout: float) -> list[int]:
    """N servers deployed through the web app, all ready; their ids."""
    pairs = [demo_payloads(i) for i in range(1, count + 1)]
    _post_all(stack, "/webhooks/subscription", [p[0] for p in pairs], 32)
    answers, _ = _post_all(stack, "/webhooks/deploy", [p[1] for p in pairs], 32)
    ids = sorted(_servers_of(answers, timeout))
    if len(ids) != count or not _wait(ids, ("ready", "failed"), timeout):
        raise RuntimeError(f"{len(ids)} of {count} servers made; not all of them ended")
    with connection():
        failed = Server.select().where(Server.id.in_(ids) & (Server.status != "ready")).count()
    if failed:
        raise RuntimeError(f"{failed} of {count} servers did not become ready")
    return ids


def wait_healthy(ids: list[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with connection():
            left = Server.select().where(Server.id.in_(ids) & (Server.health != "healthy")).count()
        if not left:
            return
        time.sleep(1)
    raise RuntimeError(f"{left} of our {len(ids)} servers never turned healthy")


def exclude(stack: up.LocalStack, ids: list[int], targets: dict[int, Target]) -> None:
    """Take the baseline's servers out of our health watching: no credential, no agent."""
    with connection():
        Server.update(heartbeat_credential_hash=None).where(Server.id.in_(ids)).execute()
    conn = redis.Redis.from_url(stack.redis_url)
    for server_id in ids:
        heartbeats.revoke(conn, server_id)

    def disable(server_id: int) -> int:
        client = connect(targets[server_id], 10)
        try:
            return run(client, f"systemctl disable --now {AGENT_TIMER_UNIT}", 10)[0]
        finally:
            client.close()

    with ThreadPoolExecutor(5) as pool:
        statuses = list(pool.map(disable, ids))
    if any(statuses):
        raise RuntimeError(f"disabling the agent failed on {statuses.count(1)} servers")


def schedule(
    rng: random.Random, ours: list[int], base: list[int], k: int, start: float, window: float
) -> list[tuple[float, int, int]]:
    """K crash times (one random time in each of K equal slots), each a server of each half."""
    slot = window / k
    picked = zip(rng.sample(ours, k), rng.sample(base, k), strict=True)
    return [(start + i * slot + rng.uniform(0, slot), a, b) for i, (a, b) in enumerate(picked)]


def drive(
    sim: Simulator,
    incidents: list[Incident],
    ours_ids: list[int],
    poll: float,
    tail: float,
) -> dict[str, dict[str, Any]]:
    """Crash, clear and watch until every incident is over (or the tail ran out).

    Returns:
        The VPSs as last seen.
    """
    pending = sorted(incidents, key=lambda i: i.planned_at)
    by_time: dict[float, list[Incident]] = {}
    for inc in pending:
        by_time.setdefault(inc.planned_at, []).append(inc)
    boxes = sim.boxes()
    end = max(i.planned_at for i in incidents) + CAUSE_SECONDS + tail
    ours_done: set[int] = set()
    next_db = 0.0
    while time.time() < end:
        now = time.time()
        for at in [t for t in by_time if t <= now]:
            group = by_time.pop(at)
            sent = time.time()
            sim.fault([i.name for i in group], on=True)
            for inc in group:
                inc.crash_at, inc.ssh_at_crash = sent, boxes[inc.name]["ssh_connections"]
        due = [
            i
            for i in incidents
            if i.crash_at and i.cleared_at is None and now >= i.crash_at + CAUSE_SECONDS
        ]
        if due:
            boxes = sim.boxes()  # the unit as the cause ends
            states = {i.name: unit_state(boxes[i.name]) for i in due}
            sim.fault([i.name for i in due], on=False)
            for inc in due:
                inc.cleared_at, inc.state_at_clear = time.time(), states[inc.name]
        boxes = sim.boxes()
        seen = time.time()
        for inc in incidents:
            if not inc.ongoing:
                continue
            box = boxes[inc.name]
            if inc.failed_seen_at is None and unit_state(box).startswith("failed/"):
                inc.failed_seen_at = seen
            cleared = inc.cleared_at
            if cleared is not None and seen >= cleared + DOOMED_SECONDS and _running(box):
                inc.running_again_at = seen
        if now >= next_db:
            ours_done |= _ours_healthy_again(incidents, ours_ids)
            next_db = now + 5
        if not by_time and all(
            i.running_again_at and (i.design == "baseline" or i.server_id in ours_done)
            for i in incidents
        ):
            break
        waits = [now + poll, *by_time]
        time.sleep(max(0.0, min(waits) - time.time()))
    return sim.boxes()


def _ours_healthy_again(incidents: list[Incident], ours_ids: list[int]) -> set[int]:
    """Our crashed servers whose health turned healthy after their crash."""
    crashed = {i.server_id: i.crash_at for i in incidents if i.design == "ours" and i.crash_at}
    with connection():
        rows = list(
            Server.select(Server.id, Server.health, Server.health_changed_at).where(
                Server.id.in_(list(crashed))
            )
        )
    return {
        r.id
        for r in rows
        if r.health == "healthy"
        and r.health_changed_at is not None
        and _epoch(r.health_changed_at) > (crashed[r.id] or 0)
    }


def timelines(ids: list[int], since: float) -> dict[int, list[tuple[float, str, str, str]]]:
    """(at, kind, to_status, message) of each server's health, probe and repair Events."""
    found: dict[int, list[tuple[float, str, str, str]]] = {i: [] for i in ids}
    with connection():
        rows = (
            Event.select(Event.server, Event.at, Event.kind, Event.to_status, Event.message)
            .where(Event.server.in_(ids) & Event.kind.in_(["health", "probe", "repair"]))
            .order_by(Event.at, Event.id)
            .tuples()
        )
        for server_id, at, kind, to, message in rows:
            if _epoch(at) >= since:
                found[server_id].append((_epoch(at), kind, to or "", message or ""))
    return found


def herd_events(since: float) -> list[str]:
    with connection():
        rows = Event.select(Event.at, Event.message).where(Event.kind == "herd").tuples()
        return [m for at, m in rows if _epoch(at) >= since]


def _measure(stack: up.LocalStack, args: argparse.Namespace) -> dict[str, Any]:
    settings = stack.settings
    sim = Simulator(settings)
    ids = deploy(stack, args.servers, args.timeout)
    last_ready = time.time()
    ours, base = ids[0::2], ids[1::2]
    print(f"{len(ids)} servers ready; waiting for our half to heartbeat", file=sys.stderr)
    wait_healthy(ours, args.timeout)
    keyring = load_keyring(settings)
    with connection():
        rows = {s.id: s for s in Server.select().where(Server.id.in_(ids))}
    targets = {i: t for i in base if (t := target_for(rows[i], keyring, settings)) is not None}
    exclude(stack, base, targets)
    boxes = sim.boxes()
    names = {str(b["server_id"]): name for name, b in boxes.items()}
    name_of = {i: names[str(rows[i].provider_id)] for i in ids}
    at_ready = {i: boxes[name_of[i]]["ssh_connections"] for i in ids}
    window_start = time.time()
    sweep = _sweep.Sweep(targets, period=args.period, concurrency=args.concurrency)
    sweep.start()
    rng = random.Random(args.seed)
    # Rachel8's start limit counts the injection's start for 120 s: crash after that.
    first = max(time.time() + args.warmup, last_ready + 125)
    plan = schedule(rng, ours, base, args.incidents, first, args.window)
    incidents = [
        inc
        for at, a, b in plan
        for inc in (
            Incident("ours", a, name_of[a], at),
            Incident("baseline", b, name_of[b], at),
        )
    ]
    print(
        f"crashing {args.incidents} servers of each half over {args.window:.0f} s from "
        f"{first - time.time():.0f} s on",
        file=sys.stderr,
    )
    try:
        boxes = drive(sim, incidents, ours, args.poll, args.tail)
    finally:
        sweep.stop()
    at_end = {i: boxes[name_of[i]]["ssh_connections"] for i in ids}
    return rep.analyse(
        incidents=incidents,
        events=timelines(ours, window_start),
        checks=sweep.checks,
        passes=sweep.passes,
        ours=ours,
        base=base,
        ssh=(at_ready, at_end),
        herd=herd_events(window_start),
        window=(window_start, time.time()),
        cause=CAUSE_SECONDS,
        concurrency=args.concurrency,
    ) | {"sim_reads": c.summary(sim.reads)}


def run_one(args: argparse.Namespace) -> dict[str, Any]:
    """Start the stack, measure, stop everything."""
    logs = c.RESULTS / f"{args.name}-logs"
    env = dict(PRODUCTION)
    with local_stack(args, env, workers=args.workers, logs=logs) as stack:
        result = _measure(stack, args)
    result.update(load_before=args.load_before, logs=str(logs))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", type=int, default=72, help="N, split in two halves")
    parser.add_argument(
        "--incidents", type=int, default=32, help="crashes per design (at most N/2)"
    )
    parser.add_argument("--window", type=float, default=480, help="seconds the crashes span")
    parser.add_argument("--warmup", type=float, default=60, help="seconds before the first")
    parser.add_argument("--tail", type=float, default=240, help="seconds to wait after the last")
    parser.add_argument("--seed", type=int, default=22)
    parser.add_argument("--period", type=float, default=60, help="the baseline's sweep period")
    parser.add_argument("--concurrency", type=int, default=5, help="the baseline's SSH sessions")
    parser.add_argument("--poll", type=float, default=1.0, help="seconds between /_sim/vps reads")
    stack_options(parser, workers=2, timings="0.2s,0.1s,0.3s", timeout=300, name="detection")
    args = parser.parse_args(argv)
    if not 0 < args.incidents <= args.servers // 2:
        parser.error("--incidents must be between 1 and half of --servers")
    return c.run_once_and_publish(args, run_one, rep.report)


if __name__ == "__main__":
    raise SystemExit(main())

"""Rollout benchmark: a release across N heartbeating servers, ours against the replaced design.

Issue 23's targets: "1,000 servers, at most 50 in flight, a simulated update
of 20 s, a per-server health gate of 60 s and a soak of 60 s per wave: the
rollout takes at most 1.2x the time its own arithmetic allows (each wave: its
servers / 50 x (update + gate), plus the soak), with no Hetzner API call; the
replaced service's design (fixed stages, 5 at a time) measured beside it in
the same run" and "a bad release halts inside the canary wave; after the
automatic rollback, 0 servers run it and every affected server is healthy
again".

It runs the whole stack (`cli.up.start_stack`: simulator, web, W workers,
cron with the health and rollout tasks), deploys N servers through the
pipeline (fast simulated cloud timings), waits until every one is healthy
by its agent's heartbeats, then, on that one fleet:

1. **bad releases** (`--bad`, default `crash_at_start,polling_fails`; `all`
   for the four of `sim.rachel8.BAD_RELEASES`): a rollout of each, with the
   waves and limits below. Where it halted, how many servers ever ran it
   (targets switched, and the boxes' `~/rachel8` link read on the simulator's
   disk every half second), how many run it after the automatic rollback
   (both again), and the time from the halt to every affected server healthy
   again (its rollback gate passed on a heartbeat, and `Server.health`);
2. **ours**: a rollout of `sim.rachel8.NEWER_COMMIT` (waves
   canary,10%,50%,100%, at most 50 in flight, gate 60 s, soak 60 s, a
   prepare of 20 s on the simulator), against its own arithmetic (each wave:
   ceil(servers / 50) x (update + gate) + soak, summed); per-wave durations,
   per-server update and gate times, the most targets in flight, Hetzner API
   calls (the simulator's counters) and the CPU of each process;
3. **baseline**: the replaced service's rollout (`bench/_baseline_rollout.py`:
   stages 10%, 50%, 100%, 5 at a time, 10 s between stages, no gate) over the
   same SSH edge, to an older good release none of the boxes has installed
   (the same clone and install as NEWER_COMMIT's), against its arithmetic
   (each stage ceil(n / 5) x update, plus the pauses).

Time is scaled (`--scale`, real seconds per simulated second, default 0.2)
so that a 32-minute rollout takes minutes. The simulator's VPSs run their
systemd at that scale (RACHEL_SIM_TIME_SCALE: Rachel8's restarts, the agent's
timer every RACHEL_HEARTBEAT_INTERVAL = 30 simulated seconds, the 20 s
prepare), and every control-plane period that the outcome depends on is
scaled by the same factor: the gate and the soak, RACHEL_HEARTBEAT_MISSING,
the health task's and the rollout tick's intervals (cron's floor is 1 s: at
0.2 the tick is production's 5 s exactly), the baseline's pause. What cannot
scale is the work itself (SSH sessions, jobs, database): in the unscaled
equivalent (wall / scale) it counts 1/scale times, so that figure is an
upper bound of what an unscaled run would take.

    uv run python bench/rollout.py --servers 50                 # a small fleet (~6 min)
    uv run python bench/rollout.py --servers 1000 --bad all     # issue 23's targets (~30 min)
    # crash_later past a 30 s gate: its canary's soak must catch it
    uv run python bench/rollout.py --servers 50 --bad crash_later --gate 30 --skip-ours \
        --skip-baseline --name rollout-soak
    # the replaced design's first stage with each bad release: does its check stop it?
    uv run python bench/rollout.py --servers 50 --bad "" --skip-ours --skip-baseline \
        --baseline-bad all --name rollout-baseline-bad
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from typing import Any

import _common as c
import _rollout_report as rep
from _baseline_rollout import Baseline
from _baseline_rollout import arithmetic as baseline_arithmetic
from detection import Simulator, deploy, wait_healthy
from provision import _cpu, _requests_delta, _sim_stats, local_stack, stack_options

c.ensure_repo_on_path()

import redis  # noqa: E402

from cli import up  # noqa: E402
from core.cloud import vps_contract as vps  # noqa: E402
from core.domain import releases, rollout_store  # noqa: E402
from core.domain.rollout_store import RolloutOptions  # noqa: E402
from core.domain.rollout_waves import parse_waves  # noqa: E402
from core.domain.vps_access import target_for  # noqa: E402
from core.store.db import connection  # noqa: E402
from core.store.models import Rollout, RolloutTarget, Server  # noqa: E402
from core.store.vault import load_keyring  # noqa: E402
from jobs.enqueue import enqueue_rollout_tick  # noqa: E402
from sim import rachel8  # noqa: E402

#: Issue 23's figures, in simulated (unscaled) seconds.
UPDATE, GATE, SOAK = 20.0, 60.0, 60.0
#: Production's heartbeat period and silence limit, the health and rollout task periods.
HEARTBEAT, MISSING, HEALTH, TICK = 30.0, 75.0, 10.0, 5.0
#: The baseline's target: a good release older than CURRENT_COMMIT, never installed here.
BASELINE_COMMIT = next(
    commit
    for commit, release in rachel8.RELEASES.items()
    if release.defect is None and commit not in (rachel8.CURRENT_COMMIT, rachel8.NEWER_COMMIT)
)
ACTOR = "operator:bench"
FINAL = ("completed", "rolled_back", "aborted")


def scaled_env(scale: float) -> dict[str, str]:
    """The stack's settings: the simulator's clock and every period it is judged by, scaled."""
    return {
        "RACHEL_SIM_TIME_SCALE": f"{scale:g}",
        "RACHEL_SIM_UPDATE_TIME": f"{UPDATE:g}s",
        # The agent's timer period, in the box's (scaled) seconds.
        "RACHEL_HEARTBEAT_INTERVAL": f"{HEARTBEAT:g}s",
        "RACHEL_HEARTBEAT_MISSING": f"{MISSING * scale:g}s",
        "RACHEL_HEALTH_INTERVAL": f"{HEALTH * scale:g}s",
        "RACHEL_ROLLOUT_INTERVAL": f"{TICK * scale:g}s",
        "RACHEL_SERVICE_SETTLE": "0s",
    }


class Fleet:
    """The deployed servers, where their boxes keep `~/rachel8`, and how to reach them."""

    def __init__(self, stack: up.LocalStack, ids: list[int], sim: Simulator) -> None:
        settings = self.settings = stack.settings
        self.ids = ids
        self.redis = redis.Redis.from_url(stack.redis_url)
        layout = vps.Layout(settings.rachel8_user)
        self.layout = layout
        boxes = {str(b["server_id"]): b for b in sim.boxes().values()}
        keyring = load_keyring(settings)
        with connection():
            rows = {s.id: s for s in Server.select().where(Server.id.in_(ids))}
        self.links = {
            i: os.path.join(boxes[str(rows[i].provider_id)]["root_dir"], layout.clone_dir[1:])
            for i in ids
        }
        self.targets = {i: t for i in ids if (t := target_for(rows[i], keyring, settings))}

    def running(self, commit: str) -> set[int]:
        """Servers whose box links `~/rachel8` to `commit`'s release (the simulator's disk)."""
        found = set()
        for server_id, link in self.links.items():
            try:
                if os.readlink(link).rstrip("/").endswith(commit):
                    found.add(server_id)
            except OSError:
                continue
        return found

    def rows_on(self, commit: str) -> int:
        with connection():
            return Server.select().where(Server.rachel8_commit == commit).count()


def _start(commit: str, args: argparse.Namespace, fleet: Fleet) -> int:
    options = RolloutOptions(
        waves=parse_waves(args.waves),
        max_in_flight=args.in_flight,
        soak_seconds=args.soak * args.scale,
        gate_seconds=args.gate * args.scale,
        halt_share=0.3,
    )
    with connection():
        rollout = rollout_store.start(
            releases.resolve(commit), options, ACTOR, fleet.settings.rachel8_commit
        )
    enqueue_rollout_tick(fleet.redis, rollout.id)
    return int(rollout.id)


def _watch(
    rollout_id: int, fleet: Fleet, timeout: float, commit: str | None = None
) -> dict[str, Any]:
    """Poll the rollout until it ends: when it halted, and the most boxes seen on `commit`."""
    seen: dict[str, Any] = {"halted_at": None, "max_running": 0, "ended_at": None}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with connection():
            state = Rollout.get_by_id(rollout_id).state
        now = time.time()
        if state == "halted" and seen["halted_at"] is None:
            seen["halted_at"] = now
        if commit is not None:
            seen["max_running"] = max(seen["max_running"], len(fleet.running(commit)))
        if state in FINAL:
            seen["ended_at"] = now
            break
        time.sleep(0.5)
    return seen


def _targets(rollout_id: int) -> tuple[Any, list[dict[str, Any]]]:
    with connection():
        rollout = Rollout.get_by_id(rollout_id)
        rows = list(
            RolloutTarget.select()
            .where(RolloutTarget.rollout == rollout_id)
            .order_by(RolloutTarget.position)
            .dicts()
        )
    return rollout, rows


def _healthy_again(ids: list[int], since: float, timeout: float) -> float | None:
    """When every server of `ids` is healthy (epoch seconds), polling from `since`; None: never."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with connection():
            left = Server.select().where(Server.id.in_(ids) & (Server.health != "healthy")).count()
        if not left:
            return max(time.time(), since)
        time.sleep(0.25)
    return None


def bad_run(kind: str, fleet: Fleet, args: argparse.Namespace) -> dict[str, Any]:
    """A rollout of a bad release: where it halted, who ran it, how soon all are healthy."""
    commit = rachel8.BAD_RELEASES[kind].commit
    wait_healthy(fleet.ids, args.timeout)
    before = _sim_stats_of(fleet)
    rollout_id = _start(commit, args, fleet)
    watched = _watch(rollout_id, fleet, args.timeout, commit)
    rollout, rows = _targets(rollout_id)
    affected = [r["server"] for r in rows if r["switched_at"] is not None]
    rolled_back = [rep.stamp(r["finished_at"]) for r in rows if r["rollback_at"] is not None]
    halted = watched["halted_at"]
    back = max(rolled_back) if rolled_back else halted
    healthy = _healthy_again(affected, back or time.time(), args.timeout) if affected else back
    return {
        "kind": kind,
        "commit": commit,
        "state": rollout.state,
        "reason": rollout.reason,
        "halted_in_wave": rollout.wave if halted else None,
        "targets_started": sum(1 for r in rows if r["started_at"] is not None),
        "ran_it_switched": len(affected),
        "ran_it_boxes_max": watched["max_running"],
        "running_it_after_boxes": len(fleet.running(commit)),
        "running_it_after_rows": fleet.rows_on(commit),
        "target_states": rep.count_states(rows),
        "start_to_halt": (halted - rep.stamp(rollout.created_at)) if halted else None,
        "halt_to_rolled_back": (back - halted) if halted and back else None,
        "halt_to_all_healthy": (healthy - halted) if halted and healthy else None,
        "api_calls": _requests_delta(before, _sim_stats_of(fleet)),
    }


def _sim_stats_of(fleet: Fleet) -> dict[str, Any]:
    return _sim_stats(fleet.settings)


def good_run(stack: up.LocalStack, fleet: Fleet, args: argparse.Namespace) -> dict[str, Any]:
    """Ours: the rollout of NEWER_COMMIT, against its arithmetic."""
    commit = rachel8.NEWER_COMMIT
    wait_healthy(fleet.ids, args.timeout)
    before, cpu_before = _sim_stats_of(fleet), _cpu(stack)
    rollout_id = _start(commit, args, fleet)
    _watch(rollout_id, fleet, args.timeout)
    cpu_after, after = _cpu(stack), _sim_stats_of(fleet)
    rollout, rows = _targets(rollout_id)
    result = rep.analyse_ours(
        rollout, rows, args.in_flight, args.scale, (UPDATE, args.gate, args.soak)
    )
    wall = result["wall_seconds"] or 1.0
    return result | {
        "api_calls": _requests_delta(before, after),
        "cpu_cores": _cores(cpu_before, cpu_after, wall),
        "running_it_after_boxes": len(fleet.running(commit)),
    }


def _cores(before: dict[str, float], after: dict[str, float], wall: float) -> dict[str, float]:
    """Cores each process used over `wall` seconds (CPU seconds / wall)."""
    return {k: round((after[k] - before.get(k, 0.0)) / wall, 3) for k in after}


def baseline_run(stack: up.LocalStack, fleet: Fleet, args: argparse.Namespace) -> dict[str, Any]:
    """The replaced design's rollout of BASELINE_COMMIT over the same fleet."""
    wait_healthy(fleet.ids, args.timeout)
    before, cpu_before = _sim_stats_of(fleet), _cpu(stack)
    design = Baseline(fleet.targets, BASELINE_COMMIT, layout=fleet.layout, pause=10.0 * args.scale)
    run = design.run()
    cpu_after, after = _cpu(stack), _sim_stats_of(fleet)
    wall = run.ended - run.started
    arithmetic = baseline_arithmetic(len(fleet.targets), UPDATE)
    return rep.analyse_baseline(run, args.scale, UPDATE) | {
        "arithmetic_seconds": arithmetic,
        "ratio": wall / args.scale / arithmetic,
        "api_calls": _requests_delta(before, after),
        "cpu_cores": _cores(cpu_before, cpu_after, wall),
        "running_it_after_boxes": len(fleet.running(BASELINE_COMMIT)),
    }


def baseline_bad_run(kind: str, fleet: Fleet, args: argparse.Namespace) -> dict[str, Any]:
    """The replaced design's first stage with a bad release: did its check stop it?

    Only the first stage (10%) runs: a stage it does not halt after, it
    continues from (50%, then 100%). Every server it left on the bad release is
    then switched back to the commit it recorded, as the next runs need.
    """
    commit = rachel8.BAD_RELEASES[kind].commit
    wait_healthy(fleet.ids, args.timeout)
    design = Baseline(fleet.targets, commit, layout=fleet.layout, pause=10.0 * args.scale)
    run = design.run(max_stages=1)
    left = fleet.running(commit)
    passed = [o for o in run.outcomes if o.ok]
    restored = sum(design.switch_back(o.server_id, o.recorded) for o in passed)
    return {
        "kind": kind,
        "stage_servers": len(run.outcomes),
        "passed_check": len(passed),
        "failed": len(run.outcomes) - len(passed),
        "rolled_back_by_it": sum(1 for o in run.outcomes if o.rolled_back),
        "halted": run.halted_at_stage is not None,
        "running_it_after_stage": len(left),
        "failures": dict(Counter(str(o.step) for o in run.outcomes if not o.ok)),
        "restored_by_bench": restored,
    }


def _measure(stack: up.LocalStack, args: argparse.Namespace) -> dict[str, Any]:
    sim = Simulator(stack.settings)
    started = time.time()
    ids = deploy(stack, args.servers, args.timeout)
    print(f"{len(ids)} servers ready in {time.time() - started:.0f} s", file=sys.stderr)
    wait_healthy(ids, args.timeout)
    fleet = Fleet(stack, ids, sim)
    for commit in [rachel8.NEWER_COMMIT, *(r.commit for r in rachel8.BAD_RELEASES.values())]:
        with connection():
            releases.add_release(commit, rachel8.RELEASES[commit].subject, ACTOR)
    result: dict[str, Any] = {"servers": len(ids), "scale": args.scale, "bad": []}
    for kind in args.bad:
        print(f"rollout of the bad release {kind}...", file=sys.stderr)
        result["bad"].append(bad_run(kind, fleet, args))
    if not args.skip_ours:
        print("rollout of NEWER_COMMIT (ours)...", file=sys.stderr)
        result["ours"] = good_run(stack, fleet, args)
    if not args.skip_baseline:
        print("the replaced design's rollout (baseline)...", file=sys.stderr)
        result["baseline"] = baseline_run(stack, fleet, args)
    for kind in args.baseline_bad:
        print(f"the replaced design's first stage with {kind}...", file=sys.stderr)
        result.setdefault("baseline_bad", []).append(baseline_bad_run(kind, fleet, args))
    return result


def run_one(args: argparse.Namespace) -> dict[str, Any]:
    """Start the stack, measure, stop everything."""
    logs = c.RESULTS / f"{args.name}-logs"
    with local_stack(args, scaled_env(args.scale), workers=args.workers, logs=logs) as stack:
        result = _measure(stack, args)
    result.update(workers=args.workers, load_before=args.load_before, logs=str(logs))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", type=int, default=1000)
    parser.add_argument("--scale", type=float, default=0.2, help="real s per simulated s")
    parser.add_argument("--waves", default="canary,10%,50%,100%")
    parser.add_argument("--in-flight", type=int, default=50, help="max in flight")
    parser.add_argument(
        "--gate", type=float, default=GATE, help="each server's health gate (simulated s)"
    )
    parser.add_argument("--soak", type=float, default=SOAK, help="each wave's soak (simulated s)")
    parser.add_argument(
        "--bad",
        default="crash_at_start,polling_fails",
        help="bad releases to roll out first (kinds of sim.rachel8.BAD_RELEASES, `all`, or ``)",
    )
    parser.add_argument(
        "--baseline-bad",
        default="",
        help="bad releases the replaced design rolls out (its first stage only), at the end",
    )
    parser.add_argument("--skip-ours", action="store_true")
    parser.add_argument("--skip-baseline", action="store_true")
    stack_options(parser, workers=16, timings="0.2s,0.1s,0.3s", timeout=1800, name="rollout")
    args = parser.parse_args(argv)
    for option in ("bad", "baseline_bad"):
        text = getattr(args, option)
        kinds = list(rachel8.BAD_RELEASES) if text == "all" else [k for k in text.split(",") if k]
        unknown = [k for k in kinds if k not in rachel8.BAD_RELEASES]
        if unknown:
            parser.error(f"unknown bad release kinds {unknown}: {sorted(rachel8.BAD_RELEASES)}")
        setattr(args, option, kinds)
    return c.run_once_and_publish(args, run_one, rep.report)


if __name__ == "__main__":
    raise SystemExit(main())

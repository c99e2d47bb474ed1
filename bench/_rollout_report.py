"""The figures of `bench/rollout.py`: each design against its own arithmetic, and the table.

Times the stack records (naive UTC `datetime`s) and the bench's own (epoch
seconds) are real seconds at the run's time scale; every figure called
*unscaled* is divided by the scale (simulated seconds, what production would
take).
"""

from __future__ import annotations

import math
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import _common as c
from _baseline_rollout import CONCURRENCY, Run, stage_sizes


def stamp(when: datetime | None) -> float:
    """A stored naive-UTC time as epoch seconds."""
    assert when is not None
    return when.replace(tzinfo=UTC).timestamp()


def count_states(rows: list[dict[str, Any]]) -> dict[str, int]:
    return dict(Counter(str(r["state"]) for r in rows))


def wave_arithmetic(size: int, in_flight: int, figures: tuple[float, float, float]) -> float:
    """One wave as the issue counts it: ceil(servers / in flight) x (update + gate) + soak."""
    update, gate, soak = figures
    return math.ceil(size / in_flight) * (update + gate) + soak


def peak(spans: list[tuple[float, float]]) -> int:
    """The most spans open at one instant (an end before a start at the same time)."""
    events = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans])
    most = now = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most


def analyse_ours(
    rollout: Any,
    rows: list[dict[str, Any]],
    in_flight: int,
    scale: float,
    figures: tuple[float, float, float],
) -> dict[str, Any]:
    """Our rollout's duration, per wave and in all, against its arithmetic (unscaled seconds)."""
    created = stamp(rollout.created_at)
    finished = stamp(rollout.finished_at) if rollout.finished_at else None
    planned = [r for r in rows if r["wave"] >= 0]
    waves = sorted({r["wave"] for r in planned})
    starts = [
        created if w == waves[0] else min(stamp(r["started_at"]) for r in planned if r["wave"] == w)
        for w in waves
    ]
    per_wave = []
    for i, w in enumerate(waves):
        mine = [r for r in planned if r["wave"] == w]
        end = starts[i + 1] if i + 1 < len(waves) else (finished or starts[i])
        done = max((stamp(r["finished_at"]) for r in mine if r["finished_at"]), default=end)
        per_wave.append(
            {
                "wave": w,
                "servers": len(mine),
                "measured": (end - starts[i]) / scale,
                "arithmetic": wave_arithmetic(len(mine), in_flight, figures),
                "after_last_server": (end - done) / scale,  # the soak, and the tick's delay
            }
        )
    updates = [
        (stamp(r["switched_at"]) - stamp(r["started_at"])) / scale
        for r in planned
        if r["switched_at"] and r["started_at"]
    ]
    gates = [
        (stamp(r["finished_at"]) - stamp(r["switched_at"])) / scale
        for r in planned
        if r["finished_at"] and r["switched_at"]
    ]
    spans = [
        (stamp(r["started_at"]), stamp(r["finished_at"]))
        for r in planned
        if r["started_at"] and r["finished_at"]
    ]
    wall = (finished - created) if finished else None
    arithmetic = sum(w["arithmetic"] for w in per_wave)
    return {
        "state": rollout.state,
        "reason": rollout.reason,
        "wall_seconds": wall,
        "unscaled_seconds": wall / scale if wall else None,
        "arithmetic_seconds": arithmetic,
        "ratio": wall / scale / arithmetic if wall else None,
        "waves": per_wave,
        "target_states": count_states(rows),
        "update_unscaled": c.summary(updates),
        "gate_unscaled": c.summary(gates),
        "peak_in_flight": peak(spans),
    }


def analyse_baseline(run: Run, scale: float, update: float) -> dict[str, Any]:
    """The baseline's duration, per stage, and its servers' outcomes (unscaled seconds)."""
    wall = run.ended - run.started
    sizes = stage_sizes(sum(n for n, _, _ in run.stages))
    stages = [
        {
            "stage": i,
            "servers": n,
            "measured": (end - begun) / scale,
            "arithmetic": math.ceil(n / CONCURRENCY) * update,
        }
        for i, (n, begun, end) in enumerate(run.stages)
    ]
    failed = [o for o in run.outcomes if not o.ok]
    return {
        "wall_seconds": wall,
        "unscaled_seconds": wall / scale,
        "stages": stages,
        "planned_stages": sizes,
        "halted_at_stage": run.halted_at_stage,
        "updated": sum(1 for o in run.outcomes if o.ok),
        "failed": len(failed),
        "failures": Counter(f"{o.step}: {o.detail[:80]}" for o in failed).most_common(5),
        "per_server_unscaled": c.summary([(o.ended - o.started) / scale for o in run.outcomes]),
    }


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} s"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def report(results: list[dict[str, Any]]) -> str:
    """The human summary: both designs side by side, the waves, the bad releases."""
    out = []
    for r in results:
        scale = r["scale"]
        out.append(f"{r['servers']} servers, time scale {scale:g} ({r['workers']} workers)")
        rows, cpus = [], []
        for name in ("ours", "baseline"):
            d = r.get(name)
            if d is None:
                continue
            rows.append(
                [
                    name,
                    _s(d["wall_seconds"]),
                    _s(d["unscaled_seconds"]),
                    _s(d["arithmetic_seconds"]),
                    _ratio(d["ratio"]),
                    str(sum(d["api_calls"].values())),
                    d.get("state") or f"{d['updated']} updated, {d['failed']} failed",
                ]
            )
            cpu = ", ".join(f"{k} {v:.2f}" for k, v in d["cpu_cores"].items())
            cpus.append(f"{name} CPU (cores, over its wall time): {cpu}")
        if rows:
            headers = ["design", "wall", "unscaled", "arithmetic", "ratio", "API calls", "outcome"]
            out += [c.table(headers, rows), *cpus]
        ours = r.get("ours")
        if ours:
            out.append(
                c.table(
                    ["wave", "servers", "measured", "arithmetic", "ratio", "after last server"],
                    [
                        [
                            w["wave"],
                            w["servers"],
                            _s(w["measured"]),
                            _s(w["arithmetic"]),
                            _ratio(w["measured"] / w["arithmetic"]),
                            _s(w["after_last_server"]),
                        ]
                        for w in ours["waves"]
                    ],
                )
            )
            u, g = ours["update_unscaled"], ours["gate_unscaled"]
            out.append(
                f"ours per server (unscaled): update p50 {_s(u['p50'])} p95 {_s(u['p95'])}, "
                f"gate p50 {_s(g['p50'])} p95 {_s(g['p95'])}; peak in flight "
                f"{ours['peak_in_flight']}; targets {ours['target_states']}"
            )
        base = r.get("baseline")
        if base:
            stages = ", ".join(
                f"{s['servers']} in {_s(s['measured'])} (arith. {_s(s['arithmetic'])})"
                for s in base["stages"]
            )
            p = base["per_server_unscaled"]
            out.append(
                f"baseline stages: {stages}; per server p50 {_s(p['p50'])} p95 {_s(p['p95'])}"
            )
        for b in r["bad"]:
            out.append(
                f"bad {b['kind']}: {b['state']}, halted in wave {b['halted_in_wave']} "
                f"({b['reason']}); ran it: {b['ran_it_switched']} switched, at most "
                f"{b['ran_it_boxes_max']} boxes; after: {b['running_it_after_boxes']} boxes, "
                f"{b['running_it_after_rows']} rows; start->halt "
                f"{_s(_un(b['start_to_halt'], scale))}, halt->rolled back "
                f"{_s(_un(b['halt_to_rolled_back'], scale))}, halt->all healthy "
                f"{_s(_un(b['halt_to_all_healthy'], scale))} (unscaled); API calls "
                f"{sum(b['api_calls'].values())}"
            )
        for b in r.get("baseline_bad", []):
            out.append(
                f"baseline, first stage with {b['kind']}: {b['stage_servers']} servers, "
                f"{b['passed_check']} passed its check, {b['failed']} failed "
                f"{b['failures']} ({b['rolled_back_by_it']} rolled back by it); halted: "
                f"{b['halted']}; left running it: {b['running_it_after_stage']}"
            )
    return "\n".join(out)


def _un(value: float | None, scale: float) -> float | None:
    return None if value is None else value / scale

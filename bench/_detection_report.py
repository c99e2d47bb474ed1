"""The figures of `bench/detection.py`: each incident matched with what each design did.

`analyse` turns the run's raw records (the incidents, our servers' health,
probe and repair Events, the baseline sweep's checks, the SSH connections
each VPS accepted) into the result JSON; `report` prints it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import _common as c

if TYPE_CHECKING:
    from _sweep import Check
    from detection import Incident

#: Issue 22's targets, seconds from the crash (p95).
DETECTION_TARGET = 60.0
HEALTHY_TARGET = 90.0
#: A repair Event's message starts with what was done.
_REPAIRS = (
    ("restarted Rachel8", "restart"),
    ("restarted the health agent", "restart_agent"),
    ("rebooted", "reboot"),
    ("reset", "reset"),
    ("gave up", "give_up"),
)

Timeline = list[tuple[float, str, str, str]]


def _repair_kind(message: str) -> str:
    if " not done: " in message:
        return "skipped"
    return next((kind for prefix, kind in _REPAIRS if message.startswith(prefix)), "other")


def _ours(inc: Incident, timeline: Timeline) -> dict[str, Any]:
    t0 = inc.crash_at or 0.0
    health = [(at, to, msg) for at, kind, to, msg in timeline if kind == "health" and at >= t0]
    down = next(((at, msg) for at, to, msg in health if to == "unhealthy"), None)
    after = [(at, to) for at, to, _ in health if down and at > down[0]]
    up = next((at for at, to in after if to in ("healthy", "degraded")), None)
    healthy = next((at for at, to in after if to == "healthy"), None)
    repairs = [(at, _repair_kind(msg)) for at, kind, _, msg in timeline if kind == "repair"]
    repairs = [(at, kind) for at, kind in repairs if at >= t0]
    cleared = inc.cleared_at or float("inf")
    return {
        "detection": down[0] - t0 if down else None,
        "healthy_again": healthy - t0 if healthy else None,
        "up_again": up - t0 if up else None,
        "first_verdict": down[1] if down else None,
        "timeline": [to for _, to, _ in health],
        "repairs": [kind for _, kind in repairs],
        "repairs_at": [round(at - t0, 1) for at, _ in repairs],
        "restarts_while_crashing": sum(1 for at, k in repairs if k == "restart" and at < cleared),
        "probes": sum(1 for at, kind, _, _ in timeline if kind == "probe" and at >= t0),
    }


def _baseline(inc: Incident, checks: Sequence[Check]) -> dict[str, Any]:
    t0 = inc.crash_at or 0.0
    mine = sorted((k for k in checks if k.server_id == inc.server_id), key=lambda k: k.started)
    after = [k for k in mine if k.ended >= t0]
    down = next((k for k in after if not k.reachable or k.running is False), None)
    restarts = [k.restarted_at for k in after if k.restarted_at is not None]
    cleared = inc.cleared_at or float("inf")
    again = inc.running_again_at
    return {
        "detection": down.ended - t0 if down else None,
        # Rachel8 running again after the sweep's restart (none: it could not be).
        "healthy_again": again - t0 if again and restarts else None,
        "first_verdict": down.state if down else None,
        "restarts": len([r for r in restarts if again is None or r <= again]),
        "restarts_at": [round(r - t0, 1) for r in restarts],
        "restarts_while_crashing": sum(1 for r in restarts if r < cleared),
        "checks_until_running": len([k for k in after if again is None or k.started <= again]),
    }


def _summary(values: Sequence[float | None]) -> dict[str, Any]:
    found = [v for v in values if v is not None]
    out = c.summary(found)
    out["missing"] = len(values) - len(found)
    return out


def _design(incidents: list[Incident], matched: list[dict[str, Any]]) -> dict[str, Any]:
    running = [
        i.running_again_at - (i.crash_at or 0.0) if i.running_again_at else None for i in incidents
    ]
    return {
        "incidents": len(incidents),
        "detection": _summary([m["detection"] for m in matched]),
        "healthy_again": _summary([m["healthy_again"] for m in matched]),
        "running_again": _summary(running),
        "unit_at_clear": dict(Counter(i.state_at_clear for i in incidents)),
        "restarted_while_crashing": sum(1 for m in matched if m["restarts_while_crashing"]),
        "per_incident": [
            {"server_id": i.server_id, "crash_at": i.crash_at, "running_again": r, **m}
            for i, m, r in zip(incidents, matched, running, strict=True)
        ],
    }


def _ssh(
    incidents: list[Incident], ours: list[int], base: list[int], ssh: tuple[dict[int, int], ...]
) -> dict[str, Any]:
    ready, end = ssh
    crashed = {i.server_id: i for i in incidents}
    opened = {i: end[i] - ready[i] for i in ready}
    spared = [i for i in ours if i not in crashed]
    return {
        "ours_total": sum(opened[i] for i in ours),
        "baseline_total": sum(opened[i] for i in base),
        "ours_never_crashed_servers": len(spared),
        "ours_to_never_crashed": sum(opened[i] for i in spared),
        "ours_before_their_crash": sum(
            (crashed[i].ssh_at_crash or 0) - ready[i] for i in ours if i in crashed
        ),
        "baseline_never_crashed": sum(opened[i] for i in base if i not in crashed),
    }


def _sweep(
    checks: Sequence[Check], passes: Sequence[tuple[float, float]], servers: int, concurrency: int
) -> dict[str, Any]:
    looks = [k.ended - k.started for k in checks]
    restarts = sum(1 for k in checks if k.restarted_at is not None)
    per_server = c.summary(looks)
    mean = per_server["mean"] or 0.0
    return {
        "passes": len(passes),
        "pass_seconds": c.summary([b - a for a, b in passes]),
        "servers": servers,
        "checks": len(checks),
        "restarts": restarts,
        "check_seconds": per_server,
        # Extrapolation (loopback, no network round trips): 1,000 servers, same slots.
        "extrapolated_pass_seconds_1000": 1000 / concurrency * mean,
    }


def analyse(
    *,
    incidents: list[Incident],
    events: dict[int, Timeline],
    checks: Sequence[Check],
    passes: Sequence[tuple[float, float]],
    ours: list[int],
    base: list[int],
    ssh: tuple[dict[int, int], dict[int, int]],
    herd: list[str],
    window: tuple[float, float],
    cause: float,
    concurrency: int,
) -> dict[str, Any]:
    """The run's figures (see the module doc)."""
    done = [i for i in incidents if i.crash_at is not None]
    mine = [i for i in done if i.design == "ours"]
    theirs = [i for i in done if i.design == "baseline"]
    matched_ours = [_ours(i, events.get(i.server_id, [])) for i in mine]
    ours_fig = _design(mine, matched_ours)
    ours_fig["up_again"] = _summary([m["up_again"] for m in matched_ours])
    ours_fig["repairs"] = dict(Counter(k for m in matched_ours for k in m["repairs"]))
    ours_fig["probes"] = sum(m["probes"] for m in matched_ours)
    # Where our time goes: Rachel8 back (the simulator) -> the healthy Event.
    lag = [
        m["healthy_again"] - p["running_again"]
        for m, p in zip(matched_ours, ours_fig["per_incident"], strict=True)
        if m["healthy_again"] is not None and p["running_again"] is not None
    ]
    ours_fig["running_to_healthy"] = c.summary(lag)
    ours_fig["restarts_per_incident"] = dict(Counter(len(m["repairs"]) for m in matched_ours))
    ours_fig["degraded_on_the_way"] = sum(1 for m in matched_ours if "degraded" in m["timeline"])
    base_fig = _design(theirs, [_baseline(i, checks) for i in theirs])
    return {
        "servers": len(ours) + len(base),
        "cause_seconds": cause,
        "window_seconds": window[1] - window[0],
        "ours": ours_fig,
        "baseline": base_fig,
        "ssh": _ssh(done, ours, base, ssh),
        "sweep": _sweep(checks, passes, len(base), concurrency),
        "herd_events": herd,
    }


def _row(name: str, fig: dict[str, Any]) -> list[str]:
    cells = [name, str(fig["incidents"])]
    for key in ("detection", "healthy_again", "running_again"):
        s = fig[key]
        cells += [c.ms(s["p50"]), c.ms(s["p95"]), c.ms(s["max"])]
        cells[-1] += f" ({s['missing']} missing)" if s["missing"] else ""
    return cells


def _met(value: float | None, target: float) -> str:
    return "-" if value is None else ("met" if value <= target else "MISSED")


def report(results: list[dict[str, Any]]) -> str:
    """The human summary of each run."""
    out = []
    for r in results:
        ours, base, ssh, sweep = r["ours"], r["baseline"], r["ssh"], r["sweep"]
        heads = ["design", "n"]
        for what in ("detect", "healthy", "running"):
            heads += [f"{what} p50", "p95", "max"]
        out.append(c.table(heads, [_row("ours", ours), _row("baseline", base)]))
        d95, h95 = ours["detection"]["p95"], ours["healthy_again"]["p95"]
        out.append(
            f"targets (ours, from the crash): detection p95 {c.ms(d95)} <= 60 s "
            f"{_met(d95, DETECTION_TARGET)}; healthy again p95 {c.ms(h95)} <= 90 s "
            f"{_met(h95, HEALTHY_TARGET)}; up again (degraded or healthy) p95 "
            f"{c.ms(ours['up_again']['p95'])}"
        )
        out.append(
            f"SSH connections: ours {ssh['ours_total']} in all, {ssh['ours_to_never_crashed']} to "
            f"its {ssh['ours_never_crashed_servers']} servers that never crashed, "
            f"{ssh['ours_before_their_crash']} to the others before their crash; baseline "
            f"{ssh['baseline_total']} ({ssh['baseline_never_crashed']} to its never-crashed)"
        )
        out.append(
            f"ours: repairs {ours['repairs']}, probes {ours['probes']}; restarted while the "
            f"cause lasted in {ours['restarted_while_crashing']} of {ours['incidents']}; "
            f"unit at the clear {ours['unit_at_clear']}"
        )
        out.append(
            f"ours: Rachel8 running again -> healthy Event p50 "
            f"{c.ms(ours['running_to_healthy']['p50'])}, p95 "
            f"{c.ms(ours['running_to_healthy']['p95'])}; repairs per incident "
            f"{ours['restarts_per_incident']}; degraded on the way in "
            f"{ours['degraded_on_the_way']}"
        )
        out.append(
            f"baseline: {sweep['passes']} passes over {sweep['servers']} servers, pass "
            f"p50 {c.ms(sweep['pass_seconds']['p50'])}, max {c.ms(sweep['pass_seconds']['max'])}; "
            f"SSH look per server mean {c.ms(sweep['check_seconds']['mean'])}, p95 "
            f"{c.ms(sweep['check_seconds']['p95'])}; restarted while the cause lasted in "
            f"{base['restarted_while_crashing']} of {base['incidents']}; unit at the clear "
            f"{base['unit_at_clear']}"
        )
        out.append(
            f"extrapolation (loopback, no network): 1,000 servers at 5 at a time -> "
            f"{sweep['extrapolated_pass_seconds_1000']:.1f} s per pass"
        )
        if r["herd_events"]:
            out.append(f"herd guard: {r['herd_events']}")
    return "\n".join(out)

"""The figures of `bench/pool.py`: each path against its target, the pool, calls, cost, orphans.

Deploy to ready and the other durations are unscaled (simulated seconds:
wall / the run's time scale), as `bench/pool.py` stores them.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from typing import Any

import _common as c
from _pool_watch import Sample

c.ensure_repo_on_path()

from core.domain.pool import serving_size  # noqa: E402

#: Issue 24's targets (unscaled seconds, share of the measured burst).
HIT_P95, MISS_P95, STOCK_ABOUT, SHARE = 10.0, 45.0, 210.0, 0.95


def parse_metrics(text: str) -> dict[str, float]:
    """The pool's and the snapshots' samples of a `/metrics` page, by name and labels."""
    found = {}
    for line in text.splitlines():
        if line.startswith(("rachel_cloud_pool_", "rachel_cloud_snapshot_")):
            key, _, value = line.rpartition(" ")
            found[key] = float(value)
    return found


def pool_figures(
    samples: Sequence[Sample],
    rate: float,
    refill: float | None,
    scale: float,
    service_level: float = 0.95,
) -> dict[str, Any]:
    """The pool over the measured burst: its target against the arithmetic, its warm servers.

    Args:
        samples: the pool at its place, sampled over the measured burst.
        rate: deploys per (simulated) minute.
        refill: the measured create-to-warm median (unscaled seconds).
        scale: the run's time scale.
        service_level: RACHEL_POOL_SERVICE_LEVEL.
    """
    if not samples:
        return {"samples": 0}
    warm = [s.warm for s in samples]
    return {
        "samples": len(samples),
        "target_at_start": samples[0].target,
        "target_max": max(s.target for s in samples),
        "target_at_end": samples[-1].target,
        "refill_seconds": refill,
        # The base-stock rule at the nominal rate, before the place's bounds.
        "target_arithmetic": serving_size(rate / 60 * refill, service_level, 1000)
        if refill
        else None,
        "warm_min": min(warm),
        "warm_mean": statistics.fmean(warm),
        "warm_zero_share": sum(1 for w in warm if w == 0) / len(warm),
        "making_mean": statistics.fmean(s.making for s in samples),
        "idle_eur_hour_mean": statistics.fmean(s.idle_eur_hour for s in samples),
        "sampled_every": (samples[-1].at - samples[0].at) / max(1, len(samples) - 1) / scale,
    }


def _seconds(outcomes: Sequence[dict[str, Any]]) -> list[float]:
    return [o["seconds"] for o in outcomes if o["seconds"] is not None]


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def _path_row(name: str, outcomes: Sequence[dict[str, Any]], target: str, met: str) -> list[object]:
    figures = c.summary(_seconds(outcomes))
    ready = sum(1 for o in outcomes if o["status"] == "ready")
    return [
        name,
        f"{ready}/{len(outcomes)}",
        _s(figures["p50"]),
        _s(figures["p95"]),
        _s(figures["max"]),
        target,
        met,
    ]


def _met(p95: float | None, limit: float) -> str:
    return "-" if p95 is None else ("yes" if p95 < limit else "NO")


def _paths(r: dict[str, Any]) -> list[str]:
    stock, misses, burst = r["stock"]["outcomes"], r["misses"]["outcomes"], r["burst"]
    hits = [o for o in burst["outcomes"] if o["hit"]]
    measured = burst["measured"]
    m_hits = [o for o in measured if o["hit"]]
    m_misses = [o for o in measured if not o["hit"]]
    hit_p95 = c.pct(_seconds(hits), 95)
    miss_p95 = c.pct(_seconds(misses), 95)
    stock_p95 = c.pct(_seconds(stock), 95)
    rows = [
        _path_row(
            "stock (no image yet)",
            stock,
            f"about {STOCK_ABOUT:.0f} s",
            "-" if stock_p95 is None else f"p95 {stock_p95 / STOCK_ABOUT:.2f}x",
        ),
        _path_row("image miss", misses, f"p95 < {MISS_P95:.0f} s", _met(miss_p95, MISS_P95)),
        _path_row("pool hit (every hit)", hits, f"p95 < {HIT_P95:.0f} s", _met(hit_p95, HIT_P95)),
        _path_row("burst measured: hits", m_hits, "", ""),
        _path_row("burst measured: misses", m_misses, "", ""),
    ]
    share = len(m_hits) / len(measured) if measured else 0.0
    headers = ["path", "ready", "p50", "p95", "max", "target", "met?"]
    from_stock = sum(1 for o in stock if o["image"] == r["stock_image"])
    from_image = sum(1 for o in misses if o["image"] == r["snapshot"])
    hit_images = Counter(str(o["image"]) for o in hits)
    claims = c.summary([o["claim_seconds"] for o in hits if o["claim_seconds"] is not None])
    return [
        c.table(headers, rows),
        f"paths checked: stock {from_stock}/{len(stock)} from {r['stock_image']}; misses "
        f"{from_image}/{len(misses)} from snapshot {r['snapshot']}; hits' images "
        f"{dict(hit_images)}; claim (deploy sent -> pool row claimed) p50 {_s(claims['p50'])} "
        f"p95 {_s(claims['p95'])} max {_s(claims['max'])}",
        f"burst: {len(m_hits)}/{len(measured)} measured deploys served from the pool = "
        f"{share:.1%} (target >= {SHARE:.0%}): {'yes' if share >= SHARE else 'NO'}; warm-up: "
        f"{sum(1 for o in burst['warmup'] if o['hit'])}/{len(burst['warmup'])} hits; the "
        f"measured misses sent at +{_offsets(m_misses, burst['measured_from'], r['scale'])} s",
    ]


def _offsets(outcomes: Sequence[dict[str, Any]], start: float, scale: float) -> str:
    """When each was sent, unscaled seconds after `start`."""
    return ", ".join(f"{(o['sent'] - start) / scale:.0f}" for o in outcomes) or "-"


def _pool(r: dict[str, Any]) -> list[str]:
    p = r["burst"]["pool"]
    if not p.get("samples"):
        return ["pool: no samples over the measured burst"]
    return [
        f"pool over the measured burst ({p['samples']} samples): target {p['target_at_start']} "
        f"at its start, {p['target_max']} at most, {p['target_at_end']} at its end; "
        f"the rule at the nominal rate and refill {_s(p['refill_seconds'])}: "
        f"{p['target_arithmetic']}; warm min "
        f"{p['warm_min']}, mean {p['warm_mean']:.1f}, none warm {p['warm_zero_share']:.0%} of "
        f"the time; being made, mean {p['making_mean']:.1f}"
    ]


def _calls(r: dict[str, Any]) -> list[str]:
    rows, notes = [], []
    for name, key in (("stock", "stock"), ("image miss", "misses"), ("burst (pool)", "burst")):
        phase = r[key]
        n = max(1, phase["deploys"])
        total, own = sum(phase["calls"].values()), sum(phase["own_calls"].values())
        rows.append([name, phase["deploys"], total, f"{total / n:.2f}", own, f"{own / n:.2f}"])
        notes.append(f"{name}: all {phase['calls']}; others in the window {phase['others']}")
    rec = r["recycling"]
    rows.append(["recycling", 0, sum(rec["calls"].values()), "-", "-", "-"])
    notes.append(f"recycling: all {rec['calls']}; others {rec['others']}")
    headers = ["phase", "deploys", "API calls", "per deploy", "own", "own per deploy"]
    return [
        c.table(headers, rows),
        "API calls: every call of the phase (the pool's refills and recycling, a build, the "
        "listings included); own: the deploys' own (a pool hit makes none, its claim is a "
        "database write; a miss one create)",
        *notes,
    ]


def _cost(r: dict[str, Any]) -> list[str]:
    m = r["burst"]["metrics_after"]
    hour = m.get('rachel_cloud_pool_idle_cost_eur{period="hour"}')
    month = m.get('rachel_cloud_pool_idle_cost_eur{period="month"}')
    states = {
        k.split('"')[1]: int(v) for k, v in m.items() if k.startswith("rachel_cloud_pool_servers{")
    }
    gb = m.get("rachel_cloud_snapshot_storage_gb")
    eur = m.get("rachel_cloud_snapshot_storage_cost_eur_month")
    mean = r["burst"]["pool"].get("idle_eur_hour_mean")
    return [
        f"idle cost at the burst's end (/metrics): EUR {hour}/h, EUR {month}/month; pool servers "
        f"{states}; mean over the measured burst EUR {mean if mean is None else round(mean, 4)}/h; "
        f"snapshots {gb} GB, EUR {eur}/month"
    ]


def _images_and_recycling(r: dict[str, Any]) -> list[str]:
    scale = r["scale"]
    out = []
    for row in r["end"]["images"]["rows"]:
        took = row["build_seconds"]
        out.append(
            f"image {row['id']} ({row['commit']}): {row['state']}, snapshot {row['snapshot']}, "
            f"{row['size_gb']} GB, built in {_s(took / scale if took else None)}"
            + (f" ({row['reason']})" if row["reason"] else "")
        )
    rec = r["recycling"]
    after = rec["after_unscaled"]
    out.append(
        f"recycling to {rec['commit'][:12]}: old release out of the pool after "
        f"{_s(after['old_gone'])}, its image available after {_s(after['image'])}, pool settled "
        f"after {_s(after['settled'])} (-: not within --timeout); at the end {rec['pool_at_end']}"
    )
    return out


def _orphans(r: dict[str, Any]) -> list[str]:
    end = r["end"]
    images = end["images"]
    orphans = end["orphans"]
    findings = Counter(f"{f['kind']}: {f['reason'][:60]}" for f in end["reconcile_findings"])
    return [
        f"end: {end['servers']} servers on Hetzner: {end['kinds']}; orphans {len(orphans)} "
        f"(target 0): {'yes' if not orphans else 'NO ' + str(orphans[:5])}",
        f"snapshots on Hetzner {images['snapshots_on_hetzner']}, available rows "
        f"{images['available_rows']}, unknown {images['unknown_snapshots']}, missing "
        f"{images['missing_snapshots']}; builders deleted {images['builders_deleted']}/"
        f"{images['builders']}",
        f"reconciler: {len(end['reconcile_findings'])} findings {dict(findings)}",
    ]


def report(results: list[dict[str, Any]]) -> str:
    """The human summary of each run."""
    out = []
    for r in results:
        out.append(
            f"time scale {r['scale']:g} ({r['workers']} workers), wall {r['wall_seconds']:.0f} s;"
            " deploy -> ready unscaled"
        )
        out += _paths(r) + _pool(r) + _calls(r) + _cost(r) + _images_and_recycling(r)
        out += _orphans(r)
        cpu = ", ".join(f"{k} {v:.2f}" for k, v in r["cpu_cores"].items())
        out.append(f"CPU (cores over the run): {cpu}")
        out.append(
            f"rate limited {r['rate_limited']}, API errors {r['api_errors']}, pool watch errors "
            f"{r['watch_errors']}; logs in {r['logs']}"
        )
    return "\n".join(out)

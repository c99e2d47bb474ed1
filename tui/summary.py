"""Text of the summary bar and of a server's phase timeline. Pure (Rich, no Textual)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from rich.text import Text

from core.domain.health import HealthState
from core.domain.lifecycle import Status
from core.domain.pool_metrics import PoolSnapshot
from tui.backend import EventLine, Summary
from tui.cells import HEALTH_STYLE, STATUS_STYLE, duration

#: Health changes shown on one line of the server screen (the newest).
HEALTH_SPANS_SHOWN = 8


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}s"


def summary_text(
    summary: Summary | None,
    counts: Mapping[str, int],
    drift: Mapping[str, int] | None = None,
    *,
    health: Mapping[str, int] | None = None,
    sla_seconds: float,
    shown: int,
    marked: int,
) -> Text:
    """The summary bar: statuses; health; workers, rate limit, queues; provisioning figures.

    One line each, cut at the bar's width rather than wrapped: a wrapped status
    line pushed the workers and the Hetzner budget out of a narrow terminal.

    Args:
        summary: the figures read every few seconds (None before the first read).
        counts: servers per status, from the rows on screen: the bar and the
            table show the same fleet at the same moment.
        drift: live servers per reconciler finding, from the same rows.
        health: ready servers per health state, from the same rows.
        sla_seconds: the provisioning SLA, for the hit rate.
        shown: rows that pass the filter.
        marked: rows marked for a bulk action.
    """
    text = _fleet_line(counts, drift or {}, shown=shown, marked=marked)
    text.append_text(health_line(health or {}))
    workers = summary.workers if summary is not None else None
    if workers == 0:
        text.append("⚠ workers 0", style="bold red")  # nothing provisions until one runs
    else:
        text.append(f"workers {'?' if workers is None else workers}")
    budget = summary.budget if summary is not None else None
    if budget is not None and budget.remaining is not None:
        text.append(f"  | hetzner {budget.remaining}/{budget.limit or '?'}")
    else:
        text.append("  | hetzner -", style="dim")
    text.append("  | ")
    queues = summary.queues if summary is not None else None
    if queues is None:
        text.append("queues ?", style="dim")
    else:
        text.append(" ".join(f"{q.name.removeprefix('rc-')} {q.queued}" for q in queues))
        failed = sum(q.failed for q in queues)
        if failed:
            text.append(f"  failed jobs {failed}", style="red")
    text.append("\n")
    stats = summary.stats if summary is not None else None
    if stats is not None and stats.count:
        rate = stats.sla_hit_rate or 0.0
        text.append(f"last hour: {stats.count} ready  p50 {_seconds(stats.p50)}  ")
        text.append(f"p95 {_seconds(stats.p95)}  ")
        text.append(
            f"SLA({int(sla_seconds)}s) {rate:.0%}",
            style="green" if rate >= 0.95 else "yellow" if rate >= 0.8 else "bold red",
        )
    else:
        text.append("last hour: no server became ready", style="dim")
    pool = summary.pool if summary is not None else None
    # Nothing to show without a pool or an image (the pool off, never used).
    if pool is not None and (any(pool.by_state.values()) or pool.snapshot_gb):
        text.append_text(pool_text(pool))
    return text


def pool_text(pool: PoolSnapshot) -> Text:
    """`  | pool warm 2 +1  idle €0.02/h €14.60/mo  images 9.5 GB €0.11/mo`: the warm
    pool (warm, + being made) and what idle capacity costs (`?` for unpriced servers)."""
    text = Text()
    making = pool.by_state.get("creating", 0) + pool.by_state.get("booting", 0)
    text.append(f"  | pool warm {pool.by_state.get('warm', 0)}")
    if making:
        text.append(f" +{making}")
    idle = pool.idle
    if idle.servers:
        unpriced = f" (+{idle.unpriced} unpriced)" if idle.unpriced else ""
        text.append(f"  idle €{idle.per_hour:.2f}/h €{idle.per_month:.2f}/mo{unpriced}")
    if pool.snapshot_gb:
        text.append(f"  images {pool.snapshot_gb:.1f} GB €{pool.snapshot_eur_month:.2f}/mo")
    return text


def _fleet_line(
    counts: Mapping[str, int], drift: Mapping[str, int], *, shown: int, marked: int
) -> Text:
    """The first line: servers per status, reconciler findings, shown and marked rows."""
    text = Text(no_wrap=True, overflow="ellipsis")
    for status in Status:
        n = counts.get(status.value, 0)
        if n or status in (Status.READY, Status.FAILED):
            text.append(f"{status.value} ", style=STATUS_STYLE[status])
            text.append(f"{n}  ", style="bold")
    for kind, n in sorted(drift.items()):
        text.append(f"!{kind} {n}  ", style="bold white on red")
    text.append(f"| shown {shown}")
    if marked:
        text.append(f"  marked {marked}", style="bold yellow")
    text.append("\n")
    return text


def health_line(counts: Mapping[str, int]) -> Text:
    """Ready servers per health state: `health  healthy 7  degraded 1  unhealthy 2 ...`."""
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append("health  ", style="bold")
    for state in HealthState:
        n = counts.get(state.value, 0)
        text.append(f"{state.value} ", style=HEALTH_STYLE[state] if n else "dim")
        text.append(f"{n}  ", style="bold" if n else "dim")
    text.append("\n")
    return text


@dataclass(frozen=True)
class PhaseSpan:
    """One stretch of a server's life in one status."""

    status: str
    started: datetime
    seconds: float
    current: bool


def phase_spans(
    events: Sequence[EventLine], now: datetime, kind: str = "transition"
) -> list[PhaseSpan]:
    """The statuses a server went through, with how long it stayed in each.

    Built from its `kind` events (transitions; `health` for its health
    states), oldest first; the last one is still running.
    """
    transitions = [e for e in events if e.kind == kind and e.to_status]
    spans = []
    for i, event in enumerate(transitions):
        end = transitions[i + 1].at if i + 1 < len(transitions) else now
        current = i + 1 == len(transitions)
        spans.append(
            PhaseSpan(
                str(event.to_status),
                event.at,
                max(0.0, (end - event.at).total_seconds()),
                current,
            )
        )
    return spans


def timeline_text(spans: Sequence[PhaseSpan], created_at: datetime) -> Text:
    """The phase timeline: `pending 2s > creating 14s > ...`."""
    text = Text()
    if not spans:
        return Text("no transitions yet", style="dim")
    first = spans[0].started
    if first > created_at:
        text.append("pending ", style=STATUS_STYLE[Status.PENDING])
        text.append(duration((first - created_at).total_seconds()))
        text.append("  >  ", style="dim")
    return _append_spans(text, spans, STATUS_STYLE)


def _append_spans(text: Text, spans: Sequence[PhaseSpan], styles: Mapping[str, str]) -> Text:
    for i, span in enumerate(spans):
        if i:
            text.append("  >  ", style="dim")
        text.append(f"{span.status} ", style=styles.get(span.status, ""))
        text.append(duration(span.seconds) + ("…" if span.current else ""))
    return text


def health_timeline_text(spans: Sequence[PhaseSpan]) -> Text:
    """The health timeline: `healthy 2h05m  >  unhealthy 3m…` (the last ones only)."""
    if not spans:
        return Text("no health change yet", style="dim")
    text = Text()
    shown = spans[-HEALTH_SPANS_SHOWN:]
    if len(shown) < len(spans):
        text.append(f"({len(spans) - len(shown)} earlier)  ", style="dim")
    return _append_spans(text, shown, HEALTH_STYLE)

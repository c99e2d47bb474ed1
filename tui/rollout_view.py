"""What the rollouts screen shows, as plain values: progress per wave, rows, the countdown. Pure.

The screen (`tui.screens.rollouts`) only draws these; every rule of the
rollout itself (the halt rule, which states may change to which) stays in
`core.domain.rollouts`, `core.domain.rollout_states` and the store, which refuse
what cannot be done.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from rich.text import Text

from core.domain.releases import ReleaseRow, short
from core.domain.rollout_states import NO_WAVE, RolloutState, TargetState
from core.domain.rollout_waves import Waves
from tui.cells import Cell, duration, timestamp
from tui.rollout_reads import RolloutInfo, TargetInfo

#: The columns of the per-wave progress, in order: what each counts.
BUCKETS: tuple[str, ...] = ("pending", "in flight", "updated", "failed", "skipped", "rolled back")
#: Which bucket each target state is counted in.
BUCKET_OF: Mapping[str, str] = {
    TargetState.PENDING: "pending",
    TargetState.UPDATING: "in flight",
    TargetState.GATING: "in flight",
    TargetState.ROLLING_BACK: "in flight",
    TargetState.UPDATED: "updated",
    TargetState.FAILED: "failed",
    TargetState.ROLLBACK_FAILED: "failed",
    TargetState.SKIPPED: "skipped",
    TargetState.ROLLED_BACK: "rolled back",
}
ROLLOUT_STYLE: Mapping[str, str] = {
    RolloutState.PLANNED: "grey70",
    RolloutState.RUNNING: "bold cyan",
    RolloutState.PAUSED: "bold yellow",
    RolloutState.HALTED: "bold white on red",
    RolloutState.COMPLETED: "bold green",
    RolloutState.ABORTED: "bold yellow",
    RolloutState.ROLLING_BACK: "bold magenta",
    RolloutState.ROLLED_BACK: "magenta",
}
TARGET_STYLE: Mapping[str, str] = {
    TargetState.PENDING: "grey70",
    TargetState.UPDATING: "cyan",
    TargetState.GATING: "blue",
    TargetState.UPDATED: "green",
    TargetState.FAILED: "bold red",
    TargetState.SKIPPED: "dim",
    TargetState.ROLLING_BACK: "magenta",
    TargetState.ROLLED_BACK: "magenta",
    TargetState.ROLLBACK_FAILED: "bold white on red",
}
BAR_WIDTH = 10


def wave_name(wave: int) -> str:
    """ "canary", "wave 2", or "-" for servers skipped when the rollout was planned."""
    if wave == NO_WAVE:
        return "-"
    return "canary" if wave == 0 else f"wave {wave}"


def waves_text(rollout: RolloutInfo) -> str:
    """The waves as the operator gave them (`canary,10%,50%,100%`)."""
    return Waves(rollout.canary, rollout.shares).text()


@dataclass(frozen=True)
class WaveProgress:
    """One wave of a rollout: its size, its share of the planned servers, its counts."""

    wave: int
    servers: int
    share: float  # of the planned servers, this wave and the ones before it
    counts: Mapping[str, int]  # bucket -> servers
    current: bool

    @property
    def finished(self) -> int:
        """Servers nothing more happens to in this wave (neither pending nor in flight)."""
        return self.servers - self.counts.get("pending", 0) - self.counts.get("in flight", 0)


def count_buckets(targets: Iterable[TargetInfo]) -> dict[str, int]:
    """Servers per bucket (every bucket present, zeros included)."""
    counts = dict.fromkeys(BUCKETS, 0)
    for t in targets:
        bucket = BUCKET_OF.get(t.state)
        if bucket is not None:
            counts[bucket] += 1
    return counts


def wave_progress(rollout: RolloutInfo, targets: Sequence[TargetInfo]) -> list[WaveProgress]:
    """Each planned wave in order (servers skipped when planned are in none)."""
    planned = [t for t in targets if t.wave != NO_WAVE]
    live = RolloutState(rollout.state) in (
        RolloutState.PLANNED,
        RolloutState.RUNNING,
        RolloutState.PAUSED,
        RolloutState.HALTED,
    )
    result: list[WaveProgress] = []
    cumulative = 0
    for wave in sorted({t.wave for t in planned}):
        members = [t for t in planned if t.wave == wave]
        cumulative += len(members)
        result.append(
            WaveProgress(
                wave=wave,
                servers=len(members),
                share=cumulative / len(planned),
                counts=count_buckets(members),
                current=live and wave == rollout.wave,
            )
        )
    return result


def bar(done: int, total: int, width: int = BAR_WIDTH) -> str:
    """A progress bar: `■■■■□□□□□□ 4/10`."""
    filled = 0 if total <= 0 else min(width, round(width * done / total))
    return "■" * filled + "□" * (width - filled) + f" {done}/{total}"


def wave_cells(progress: WaveProgress) -> list[Cell]:
    """A row of the waves table: name, servers, share, bar, then one cell per bucket."""
    style = "bold" if progress.current else ""
    failed = progress.counts.get("failed", 0)
    cells = [
        Cell(wave_name(progress.wave) + (" ◂" if progress.current else ""), style),
        Cell(str(progress.servers), ""),
        Cell(f"{progress.share:.0%}", ""),
        Cell(bar(progress.finished, progress.servers), "red" if failed else style),
    ]
    for bucket in BUCKETS:
        n = progress.counts.get(bucket, 0)
        bucket_style = "dim" if not n else "red" if bucket == "failed" else ""
        cells.append(Cell(str(n), bucket_style))
    return cells


def soak_countdown(rollout: RolloutInfo, wave_count: int, now: datetime) -> str | None:
    """While a running rollout soaks after a wave: what comes next, and in how long."""
    if rollout.state != RolloutState.RUNNING or rollout.soak_until is None:
        return None
    last = rollout.wave >= wave_count - 1
    what = "the rollout completes" if last else f"wave {rollout.wave + 1} begins"
    left = (rollout.soak_until - now).total_seconds()
    if left <= 0:
        return f"soak over: {what} at the driver's next tick"
    return f"soaking after {wave_name(rollout.wave)}: {what} in {duration(left)}"


def state_line(rollout: RolloutInfo, wave_count: int, now: datetime) -> Text:
    """The rollout's state, what it means now, and why it halted or stopped."""
    state = RolloutState(rollout.state)
    text = Text(state.value.upper(), style=ROLLOUT_STYLE.get(state, ""))
    reason = f": {rollout.reason}" if rollout.reason else ""
    if state == RolloutState.PLANNED:
        text.append("  the driver starts it at its next tick")
    elif state == RolloutState.RUNNING:
        text.append(f"  {wave_name(rollout.wave)} of {wave_count} wave(s)")
        countdown = soak_countdown(rollout, wave_count, now)
        if countdown:
            text.append(f"  {countdown}", style="yellow")
    elif state == RolloutState.PAUSED:
        text.append("  nothing new starts; updates under way finish and are judged")
    elif state in (RolloutState.HALTED, RolloutState.ROLLING_BACK):
        text.append(reason, style="bold red" if state == RolloutState.HALTED else "")
    elif state in (RolloutState.ABORTED, RolloutState.ROLLED_BACK):
        text.append(reason)
        if rollout.finished_at:
            text.append(f"  (at {timestamp(rollout.finished_at)})", style="dim")
    elif state == RolloutState.COMPLETED:
        done = timestamp(rollout.finished_at)
        text.append(f"  at {done}: its release is the fleet's current one")
    return text


def headline(rollout: RolloutInfo) -> Text:
    """Which rollout, its target release and notes, who started it."""
    text = Text(f"rollout {rollout.id}", style="bold")
    text.append("  release ")
    text.append(short(rollout.commit), style="bold")
    text.append(f"  {rollout.notes or '(no notes)'}", style="" if rollout.notes else "dim")
    text.append(
        f"\nwaves {waves_text(rollout)}; at most {rollout.max_in_flight} in flight; gate "
        f"{duration(rollout.gate_seconds)}; soak {duration(rollout.soak_seconds)}; halt above "
        f"{rollout.halt_share:.0%} failed; by {rollout.created_by} at "
        f"{timestamp(rollout.created_at)}",
        style="dim",
    )
    return text


def totals_line(targets: Sequence[TargetInfo]) -> Text:
    """Every server of the rollout, counted: planned ones by bucket, then the skipped."""
    planned = [t for t in targets if t.wave != NO_WAVE]
    counts = count_buckets(planned)
    text = Text(f"{len(planned)} server(s) planned: ")
    text.append(", ".join(f"{counts[b]} {b}" for b in BUCKETS if b != "skipped"))
    skipped = counts["skipped"] + sum(1 for t in targets if t.wave == NO_WAVE)
    text.append(f"; {skipped} skipped", style="dim")
    stuck = sum(1 for t in targets if t.state == TargetState.ROLLBACK_FAILED)
    if stuck:
        text.append(f"; {stuck} FAILED TO ROLL BACK", style="bold white on red")
    return text


def target_cells(target: TargetInfo) -> list[Cell]:
    """A row of the servers table."""
    reason = (target.reason or "").replace("\n", " ")
    return [
        Cell(str(target.server_id), ""),
        Cell(target.name or "-", "" if target.name else "dim"),
        Cell(target.location, ""),
        Cell(wave_name(target.wave), ""),
        Cell(target.state, TARGET_STYLE.get(target.state, "")),
        Cell(f"{short(target.from_commit)} → {short(target.to_commit)}", ""),
        Cell(reason[:200] or "-", "red" if target.state in _BAD else "" if reason else "dim"),
    ]


_BAD = frozenset({TargetState.FAILED, TargetState.ROLLBACK_FAILED})


def rollout_cells(rollout: RolloutInfo) -> list[Cell]:
    """A row of the recent rollouts table."""
    why = (rollout.reason or "").replace("\n", " ")
    return [
        Cell(str(rollout.id), ""),
        Cell(rollout.state, ROLLOUT_STYLE.get(rollout.state, "")),
        Cell(short(rollout.commit), ""),
        Cell(timestamp(rollout.created_at), ""),
        Cell(why[:200] or "-", "" if why else "dim"),
    ]


def release_cells(release: ReleaseRow) -> list[Cell]:
    """A row of the releases table (`*`: the fleet's current release)."""
    return [
        Cell("*" if release.current else " ", "bold green"),
        Cell(short(release.commit), "bold" if release.current else ""),
        Cell(str(release.servers), "" if release.servers else "dim"),
        Cell(timestamp(release.added_at), ""),
        Cell(release.notes.replace("\n", " ")[:200] or "-", "" if release.notes else "dim"),
    ]


#: What each operator action does, for its confirmation (the key is the action's name).
CONSEQUENCES: Mapping[str, tuple[str, str]] = {
    "pause": (
        "Pause",
        "Nothing new starts. The {in_flight} update(s) under way finish and are judged. "
        "Resume (r) carries on where it stopped.",
    ),
    "resume": (
        "Resume",
        "The driver starts the next servers of {wave} again (at most {max_in_flight} at once).",
    ),
    "abort": (
        "Abort",
        "Nothing more starts: its {pending} pending server(s) are skipped. The {switched} "
        "server(s) already switched KEEP the release until you roll back (shift+b).",
    ),
    "rollback": (
        "Roll back",
        "Every server it switched ({switched} now) goes back to its previous commit: each "
        "customer's Rachel8 bot is RESTARTED and offline while it restarts.",
    ),
}


def switched_count(targets: Iterable[TargetInfo]) -> int:
    """Servers that run (or are switching to) the rollout's release because of it."""
    on_release = {TargetState.UPDATED, TargetState.GATING, TargetState.UPDATING}
    return sum(
        1
        for t in targets
        if t.state in on_release or (t.state == TargetState.FAILED and t.switched_at is not None)
    )


def confirmation(
    action: str, rollout: RolloutInfo, targets: Sequence[TargetInfo]
) -> tuple[str, str]:
    """The question and the consequences the operator confirms before `action`."""
    verb, body = CONSEQUENCES[action]
    counts = count_buckets(targets)
    question = f"{verb} rollout {rollout.id} ({rollout.state}, release {short(rollout.commit)})?"
    return question, body.format(
        in_flight=counts["in flight"],
        pending=counts["pending"],
        switched=switched_count(targets),
        wave=wave_name(rollout.wave),
        max_in_flight=rollout.max_in_flight,
    )

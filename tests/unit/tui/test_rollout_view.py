"""The rollouts screen's pure parts: progress per wave, the countdown, rows, confirmations."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from core.domain.releases import ReleaseRow
from core.domain.rollout_states import NO_WAVE, RolloutState, TargetState
from tui.rollout_reads import RolloutInfo, TargetInfo
from tui.rollout_view import (
    BUCKET_OF,
    BUCKETS,
    CONSEQUENCES,
    bar,
    confirmation,
    count_buckets,
    headline,
    release_cells,
    rollout_cells,
    soak_countdown,
    state_line,
    switched_count,
    target_cells,
    totals_line,
    wave_cells,
    wave_name,
    wave_progress,
)

NOW = datetime(2026, 1, 1, 12, 0, 0)
OLD = "a" * 40
NEW = "b" * 40

ROLLOUT = RolloutInfo(
    id=7, state="running", commit=NEW, notes="fix polling", reason=None, wave=1,
    soak_until=None, canary=1, shares=(0.1, 0.5, 1.0), max_in_flight=3, soak_seconds=60,
    gate_seconds=90, halt_share=0.3, created_by="operator:bob", created_at=NOW,
    started_at=NOW, finished_at=None,
)  # fmt: skip


def target(
    server_id: int, wave: int, state: TargetState, *, switched: bool = False, reason: str = ""
) -> TargetInfo:
    return TargetInfo(
        server_id=server_id, name=f"rachel-{server_id}", location="fsn1", wave=wave,
        position=server_id, state=state.value, from_commit=OLD, to_commit=NEW,
        reason=reason or None, started_at=None, switched_at=NOW if switched else None,
        finished_at=None,
    )  # fmt: skip


TARGETS = [
    target(1, 0, TargetState.UPDATED, switched=True),
    target(2, 1, TargetState.UPDATED, switched=True),
    target(3, 1, TargetState.GATING, switched=True),
    target(4, 1, TargetState.FAILED, switched=True, reason="crash loop\nafter switch"),
    target(5, 1, TargetState.FAILED, reason="bun install failed"),  # never switched
    target(6, 1, TargetState.SKIPPED, reason="not healthy"),
    target(7, 2, TargetState.PENDING),
    target(8, 2, TargetState.PENDING),
    target(9, NO_WAVE, TargetState.SKIPPED, reason="already runs it"),
]


def test_every_target_state_has_a_bucket() -> None:
    assert set(BUCKET_OF) == set(TargetState)
    assert set(BUCKET_OF.values()) == set(BUCKETS)


def test_wave_progress_counts_each_planned_wave() -> None:
    waves = wave_progress(ROLLOUT, TARGETS)
    assert [(w.wave, w.servers, w.current, w.finished) for w in waves] == [
        (0, 1, False, 1),
        (1, 5, True, 4),
        (2, 2, False, 0),
    ]
    assert [round(w.share, 3) for w in waves] == [0.125, 0.75, 1.0]
    assert dict(waves[1].counts) == {
        "pending": 0, "in flight": 1, "updated": 1, "failed": 2, "skipped": 1, "rolled back": 0,
    }  # fmt: skip
    row = [c.text for c in wave_cells(waves[1])]
    assert row == ["wave 1 ◂", "5", "75%", "■■■■■■■■□□ 4/5", "0", "1", "1", "2", "1", "0"]
    assert wave_cells(waves[1])[3].style == "red"  # a failure in the wave


def test_no_wave_is_current_once_the_rollout_is_over() -> None:
    done = replace(ROLLOUT, state="completed")
    assert not any(w.current for w in wave_progress(done, TARGETS))
    assert wave_progress(ROLLOUT, []) == []


@pytest.mark.parametrize(
    ("done", "total", "text"),
    [(0, 4, "□□□□□□□□□□ 0/4"), (1, 3, "■■■□□□□□□□ 1/3"), (5, 5, "■■■■■■■■■■ 5/5"),
     (0, 0, "□□□□□□□□□□ 0/0")],
)  # fmt: skip
def test_bar(done: int, total: int, text: str) -> None:
    assert bar(done, total) == text


def test_soak_countdown() -> None:
    soaking = replace(ROLLOUT, soak_until=NOW + timedelta(seconds=95))
    assert soak_countdown(soaking, 3, NOW) == "soaking after wave 1: wave 2 begins in 1m35s"
    later = NOW + timedelta(seconds=100)
    assert soak_countdown(soaking, 3, later) == "soak over: wave 2 begins at the driver's next tick"
    last = replace(soaking, wave=2)
    assert soak_countdown(last, 3, NOW) == "soaking after wave 2: the rollout completes in 1m35s"
    assert soak_countdown(ROLLOUT, 3, NOW) is None  # not soaking
    assert soak_countdown(replace(soaking, state="paused"), 3, NOW) is None


def test_state_line_says_what_the_state_means() -> None:
    soaking = replace(ROLLOUT, soak_until=NOW + timedelta(seconds=30))
    assert state_line(soaking, 3, NOW).plain == (
        "RUNNING  wave 1 of 3 wave(s)  soaking after wave 1: wave 2 begins in 30s"
    )
    halted = replace(ROLLOUT, state="halted", reason="the canary failed: rachel-1: crash loop")
    assert state_line(halted, 3, NOW).plain == "HALTED: the canary failed: rachel-1: crash loop"
    paused = state_line(replace(ROLLOUT, state="paused"), 3, NOW).plain
    assert paused.startswith("PAUSED  nothing new starts")
    done = replace(ROLLOUT, state="completed", finished_at=NOW)
    assert "at 2026-01-01 12:00:00: its release is the fleet's current one" in (
        state_line(done, 3, NOW).plain
    )
    for state in RolloutState:  # every state has its line
        assert state_line(replace(ROLLOUT, state=state.value), 3, NOW).plain


def test_headline_and_totals() -> None:
    text = headline(ROLLOUT).plain
    assert text.startswith(f"rollout 7  release {NEW[:12]}  fix polling\n")
    assert "waves canary,10%,50%,100%; at most 3 in flight; gate 1m30s; soak 1m00s" in text
    assert "halt above 30% failed; by operator:bob at 2026-01-01 12:00:00" in text
    assert totals_line(TARGETS).plain == (
        "8 server(s) planned: 2 pending, 1 in flight, 2 updated, 2 failed, 0 rolled back; 2 skipped"
    )
    stuck = [*TARGETS, target(10, 0, TargetState.ROLLBACK_FAILED, switched=True)]
    assert totals_line(stuck).plain.endswith("; 1 FAILED TO ROLL BACK")


def test_rows() -> None:
    row = [c.text for c in target_cells(TARGETS[3])]
    assert row == [
        "4", "rachel-4", "fsn1", "wave 1", "failed", f"{OLD[:12]} → {NEW[:12]}",
        "crash loop after switch",
    ]  # fmt: skip
    assert target_cells(TARGETS[3])[6].style == "red"
    assert [c.text for c in target_cells(TARGETS[8])][3:5] == ["-", "skipped"]
    assert [c.text for c in rollout_cells(ROLLOUT)] == [
        "7", "running", NEW[:12], "2026-01-01 12:00:00", "-",
    ]  # fmt: skip
    release = ReleaseRow(1, OLD, "", "system", NOW, current=True, servers=0)
    assert [c.text for c in release_cells(release)] == [
        "*", OLD[:12], "0", "2026-01-01 12:00:00", "-",
    ]  # fmt: skip
    assert [wave_name(w) for w in (NO_WAVE, 0, 3)] == ["-", "canary", "wave 3"]


def test_confirmations_count_what_the_action_touches() -> None:
    assert switched_count(TARGETS) == 4  # 2 updated, 1 gating, 1 failed after its switch
    assert count_buckets(TARGETS)["pending"] == 2
    question, body = confirmation("abort", ROLLOUT, TARGETS)
    assert question == f"Abort rollout 7 (running, release {NEW[:12]})?"
    assert "its 2 pending server(s) are skipped. The 4 server(s) already switched KEEP" in body
    assert "(4 now)" in confirmation("rollback", ROLLOUT, TARGETS)[1]
    assert "The 1 update(s) under way finish" in confirmation("pause", ROLLOUT, TARGETS)[1]
    assert "of wave 1 again (at most 3 at once)" in confirmation("resume", ROLLOUT, TARGETS)[1]
    assert set(CONSEQUENCES) == {"pause", "resume", "abort", "rollback"}

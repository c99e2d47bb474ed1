"""Health decisions: a server's state from its heartbeats and probes (pure)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest

from core.cloud.rachel8_unit import ServiceState
from core.cloud.vps_ops import Probe
from core.domain.health import (
    HEALTHY,
    OWNER_DOWN,
    TOLD,
    UNWATCHED,
    WAITING,
    Finding,
    HealthPolicy,
    HealthState,
    Problem,
    Verdict,
    decide,
    judge_heartbeat,
    judge_probe,
    restarts_grew,
)
from core.domain.heartbeats import ServiceReport, StoredHeartbeat, TelegramReport
from core.domain.repair import Action, Incident, RepairPolicy, decide_repair
from tests.unit.core.domain.test_heartbeats import beat

NOW = datetime(2026, 3, 1, 12, 0, 0)
COMMIT = "63f162e9302a66344772ab23653789f701c7bcf9"
POLICY = HealthPolicy(missing_seconds=75)


def judge(restarted: bool = False, commit: str | None = COMMIT, **changes: Any) -> Verdict:
    return judge_heartbeat(beat(**changes), commit=commit, restarted=restarted, policy=POLICY)


def at(seconds_ago: float) -> datetime:
    return NOW - timedelta(seconds=seconds_ago)


def decide_at(
    age: float | None,
    *,
    ready_ago: float | None = 600,
    watched: bool = True,
    finding: Finding | None = None,
    **changes: Any,
) -> Verdict:
    latest = None if age is None else StoredHeartbeat(beat(**changes), 0.0)
    return decide(
        latest,
        received_at=None if age is None else at(age),
        now=NOW,
        ready_at=None if ready_ago is None else at(ready_ago),
        watched=watched,
        commit=COMMIT,
        restarted=False,
        finding=finding,
        policy=POLICY,
    )


def service(active: str = "active", sub: str = "running", result: str = "success") -> Any:
    return ServiceReport(active, sub, 0, result, 0 if result == "success" else 1)


def test_a_fresh_good_heartbeat_is_healthy() -> None:
    expected = Verdict(HealthState.HEALTHY, Problem.NONE, "Rachel8 running, Telegram answering")
    assert expected == HEALTHY
    assert judge() == HEALTHY
    assert decide_at(5) == HEALTHY
    assert decide_at(74.9) == HEALTHY


@pytest.mark.parametrize(
    ("active", "sub", "result"),
    [
        ("failed", "failed", "exit-code"),
        ("inactive", "dead", "success"),
        ("failed", "failed", "start-limit-hit"),
    ],
)
def test_a_service_not_running_is_unhealthy(active: str, sub: str, result: str) -> None:
    verdict = judge(service=service(active, sub, result))
    assert verdict.state == HealthState.UNHEALTHY and verdict.problem == Problem.SERVICE_DOWN
    assert f"{active}/{sub} ({result}" in verdict.reason
    assert verdict.owner_down


def test_a_service_systemd_is_restarting_is_a_blip_not_an_outage() -> None:
    # Within RestartSec of a crash systemd restarts Rachel8 itself: no repair,
    # no message to the owner; a unit that keeps crashing is failed next time.
    verdict = judge(service=service("activating", "auto-restart", "exit-code"))
    assert (verdict.state, verdict.problem) == (HealthState.DEGRADED, Problem.RESTARTED)
    assert "systemd is restarting Rachel8" in verdict.reason
    assert not verdict.owner_down
    # But a crash loop, or a silent server probed, is not up between two restarts.
    crashing = beat(service=service("activating", "auto-restart", "exit-code"))
    down = decide(
        StoredHeartbeat(crashing, 0.0),
        received_at=at(1),
        now=NOW,
        ready_at=at(600),
        watched=True,
        commit=COMMIT,
        restarted=False,
        finding=None,
        policy=POLICY,
        previous=HealthState.UNHEALTHY,
    )
    assert (down.state, down.problem) == (HealthState.UNHEALTHY, Problem.SERVICE_DOWN)
    assert "activating/auto-restart (exit-code" in down.reason
    # Nor is one that systemd restarted since the previous heartbeat and that exited
    # again: the second crash in a row is a crash loop, seen before the start limit.
    looping = judge(restarted=True, service=service("activating", "auto-restart", "exit-code"))
    assert looping == down
    found = judge_probe(
        Probe(reachable=True, service=ServiceState("activating", "auto-restart", 1, "exit-code", 1))
    )
    assert (found.state, found.problem) == (HealthState.UNHEALTHY, Problem.SERVICE_DOWN)


def test_an_unreadable_unit_is_unhealthy() -> None:
    verdict = judge(service=None)
    assert (verdict.state, verdict.problem) == (HealthState.UNHEALTHY, Problem.SERVICE_DOWN)
    assert "could not read" in verdict.reason


@pytest.mark.parametrize(
    ("telegram", "problem", "words"),
    [
        (TelegramReport("unauthorized", False, 0), Problem.TOKEN_REVOKED, "bot token revoked"),
        (TelegramReport("ok", True, 0), Problem.WEBHOOK_SET, "a webhook is set on the bot"),
        (TelegramReport("ok", False, 3), Problem.CONFLICT, "409 Conflict"),
    ],
)
def test_what_restarts_cannot_fix_is_unhealthy_even_with_the_service_down(
    telegram: TelegramReport, problem: Problem, words: str
) -> None:
    for unit in (service(), service("failed", "failed", "exit-code")):
        verdict = judge(telegram=telegram, service=unit)
        assert (verdict.state, verdict.problem) == (HealthState.UNHEALTHY, problem)
        assert words in verdict.reason
        assert problem in TOLD and verdict.owner_down


def test_degraded_reasons_are_listed_and_stable() -> None:
    assert judge(restarted=True).problem == Problem.RESTARTED
    low_disk = judge(disk_free_bytes=100 << 20, disk_total_bytes=40 << 30)
    assert (low_disk.state, low_disk.problem) == (HealthState.DEGRADED, Problem.DISK_LOW)
    # A low share of a large disk is not low while a gigabyte is free (and vice versa).
    assert judge(disk_free_bytes=2 << 30, disk_total_bytes=100 << 30) == HEALTHY
    assert judge(disk_free_bytes=500 << 20, disk_total_bytes=2 << 30) == HEALTHY
    assert judge(memory_available_bytes=100 << 20).problem == Problem.MEMORY_LOW
    assert judge(telegram=TelegramReport("error", None, 0)).problem == (
        Problem.TELEGRAM_UNREACHABLE
    )
    assert judge(telegram=TelegramReport("unconfigured", None, 0)).problem == Problem.NO_TOKEN
    other = judge(commit="0" * 40)
    assert other.problem == Problem.COMMIT_DIFFERS and "not 000000000000" in other.reason
    assert judge(commit=None) == HEALTHY  # nothing recorded to compare with
    everything = judge(restarted=True, memory_available_bytes=1, commit="1" * 40)
    assert everything.state == HealthState.DEGRADED and everything.problem == Problem.RESTARTED
    assert everything.reason == (
        "systemd restarted Rachel8 since the last heartbeat; memory almost exhausted; "
        "runs Rachel8 63f162e9302a, not 111111111111 as recorded"
    )
    # The same trouble with other numbers gives the same reason (no Event per pass).
    assert judge(disk_free_bytes=1).reason == judge(disk_free_bytes=2).reason
    assert not any(v.owner_down for v in (low_disk, other, everything))


def test_zero_totals_are_not_read_as_low() -> None:
    assert judge(disk_total_bytes=0, disk_free_bytes=0, memory_total_bytes=0) == HEALTHY


def test_restarts_grew_only_against_a_known_previous_count() -> None:
    assert restarts_grew(0, 1)
    assert not restarts_grew(1, 1)
    assert not restarts_grew(3, 0)  # a reboot resets NRestarts
    assert not restarts_grew(None, 5)


def test_unwatched_and_waiting_servers_are_unknown() -> None:
    assert decide_at(5, watched=False) == UNWATCHED
    assert decide_at(None, watched=False) == UNWATCHED
    assert decide_at(None, ready_ago=10) == WAITING
    assert WAITING.state == UNWATCHED.state == HealthState.UNKNOWN


def test_silence_is_unhealthy_until_a_probe_tells_more() -> None:
    never = decide_at(None, ready_ago=75)
    assert (never.state, never.problem) == (HealthState.UNHEALTHY, Problem.SILENT)
    assert never.reason == "no heartbeat on record, ready for more than 75s; probing over SSH"
    stale = decide_at(75)
    assert stale.problem == Problem.SILENT and stale.reason.startswith("no heartbeat for")
    assert decide_at(80).reason == decide_at(800).reason
    assert not stale.owner_down, "the owner hears only of a confirmed cause"
    assert decide_at(None, ready_ago=None).problem == Problem.SILENT


def test_a_probe_newer_than_the_last_heartbeat_decides() -> None:
    down = Verdict(HealthState.UNHEALTHY, Problem.UNREACHABLE, "VPS unreachable over SSH (x)")
    assert decide_at(100, finding=Finding(down, at(50))) == down
    # A probe older than the latest heartbeat says nothing about now.
    assert decide_at(100, finding=Finding(down, at(150))).problem == Problem.SILENT
    # A fresh heartbeat wins over any probe.
    assert decide_at(5, finding=Finding(down, at(1))) == HEALTHY
    assert decide_at(None, ready_ago=100, finding=Finding(down, at(1))) == down


def unit(active: str, sub: str, result: str = "success") -> ServiceState:
    return ServiceState(active, sub, 0, result, 0)


def test_probe_verdicts() -> None:
    gone = judge_probe(Probe(reachable=False, error="ssh_unreachable: 10.0.0.5: timed out"))
    assert (gone.state, gone.problem) == (HealthState.UNHEALTHY, Problem.UNREACHABLE)
    assert gone.reason == "VPS unreachable over SSH (ssh_unreachable)"
    assert judge_probe(Probe(reachable=False)).reason == "VPS unreachable over SSH (no answer)"
    down = judge_probe(Probe(reachable=True, service=unit("failed", "failed", "exit-code")))
    assert (down.state, down.problem) == (HealthState.UNHEALTHY, Problem.SERVICE_DOWN)
    unreadable = judge_probe(Probe(reachable=True, service=None, error="parse"))
    assert unreadable.problem == Problem.SERVICE_DOWN
    agent = judge_probe(
        Probe(
            reachable=True,
            service=unit("active", "running"),
            agent_timer_active=False,
            agent_result="exit-code",
        )
    )
    assert (agent.state, agent.problem) == (HealthState.DEGRADED, Problem.AGENT_SILENT)
    assert "timer inactive, last run exit-code" in agent.reason
    assert {gone.problem, down.problem} <= OWNER_DOWN and agent.problem not in OWNER_DOWN


def test_differs_skips_only_the_first_wait() -> None:
    assert not WAITING.differs("unknown", None)
    assert WAITING.differs("unknown", "something else")
    assert WAITING.differs("healthy", None)
    assert not HEALTHY.differs("healthy", HEALTHY.reason)
    assert HEALTHY.differs("healthy", "old words")
    assert HEALTHY.differs("degraded", HEALTHY.reason)


def test_policy_from_settings(tmp_path: Any) -> None:
    from tests.conftest import make_settings

    settings = make_settings(tmp_path, RACHEL_HEARTBEAT_MISSING="90s")
    assert HealthPolicy.from_settings(settings).missing_seconds == 90


def test_the_heartbeat_a_repair_restart_asks_for_is_judged_as_it_is() -> None:
    """The agent runs seconds after our restart (`vps_ops.restart_service`): neither a
    crash blip nor a systemd restart, and the evidence the repair waits for."""

    def confirming(state: ServiceReport, memo_restarts: int) -> Verdict:
        return decide(
            StoredHeartbeat(beat(service=state), 0.0),
            received_at=at(2),
            now=NOW,
            ready_at=at(600),
            watched=True,
            commit=COMMIT,
            restarted=restarts_grew(memo_restarts, state.restarts),
            finding=None,
            policy=POLICY,
            previous=HealthState.UNHEALTHY,
        )

    # A manual restart flushes NRestarts (and reset-failed zeroes it): systemd's
    # three restarts of the crash loop do not read as "restarted since the last one".
    back = confirming(ServiceReport("active", "running", 0, "success", 0), memo_restarts=3)
    assert back == HEALTHY
    # The repair sets the remembered count to 0 too (`HealthMemory.restarts_reset`): a
    # crash since our restart, which systemd restarted, is not mistaken for healthy.
    crashed = confirming(ServiceReport("active", "running", 1, "success", 0), memo_restarts=0)
    assert (crashed.state, crashed.problem) == (HealthState.DEGRADED, Problem.RESTARTED)
    # Crashing again at once: down still, not a blip (it was down before our restart).
    again = confirming(ServiceReport("activating", "auto-restart", 1, "exit-code", 1), 0)
    assert (again.state, again.problem) == (HealthState.UNHEALTHY, Problem.SERVICE_DOWN)
    policy = RepairPolicy(True, 3, 1800, 1800, 75)
    repaired = Incident(window_started_at=at(10), restarts=1, last_action_at=at(10))
    # Evidence newer than the repair decides; a heartbeat from before it does not.
    assert decide_repair(back, repaired, evidence_at=at(2), now=NOW, policy=policy).action == (
        Action.NONE
    )
    assert decide_repair(again, repaired, evidence_at=at(2), now=NOW, policy=policy).action == (
        Action.RESTART
    )
    assert decide_repair(again, repaired, evidence_at=at(11), now=NOW, policy=policy).action == (
        Action.WAIT
    )

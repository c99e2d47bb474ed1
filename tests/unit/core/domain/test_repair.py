"""Repair by escalation and the circuit breaker (pure)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from core.domain.health import Finding, HealthState, Problem, Verdict
from core.domain.repair import (
    MAX_PROBE_INTERVAL_SECONDS,
    REPAIRABLE,
    Action,
    Decision,
    Incident,
    RepairPolicy,
    after,
    current,
    decide_repair,
    probe_due,
)
from tests.conftest import make_settings

T0 = datetime(2026, 3, 1, 12, 0, 0)
POLICY = RepairPolicy(
    enabled=True, max_restarts=3, window_seconds=1800, cooldown_seconds=1800, settle_seconds=75
)
DOWN = Verdict(HealthState.UNHEALTHY, Problem.SERVICE_DOWN, "Rachel8 is not running")
GONE = Verdict(HealthState.UNHEALTHY, Problem.UNREACHABLE, "VPS unreachable over SSH")
AGENT = Verdict(HealthState.DEGRADED, Problem.AGENT_SILENT, "agent silent")


def t(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def step(
    verdict: Verdict,
    incident: Incident,
    now: datetime,
    *,
    evidence: datetime | None = None,
    policy: RepairPolicy = POLICY,
    held: str | None = None,
) -> Decision:
    return decide_repair(
        verdict, incident, evidence_at=evidence or now, now=now, policy=policy, held=held
    )


def run_incident(verdict: Verdict) -> list[Action]:
    """Carry out every decision, with fresh evidence a minute after each action."""
    incident, now, actions = Incident(), T0, []
    for _ in range(10):
        decision = step(verdict, incident, now)
        actions.append(decision.action)
        if decision.action not in (
            Action.RESTART,
            Action.RESTART_AGENT,
            Action.REBOOT,
            Action.RESET,
        ):
            if decision.action == Action.GIVE_UP:
                incident = after(incident, decision.action, now, POLICY)
            break
        incident = after(incident, decision.action, now, POLICY)
        now += timedelta(minutes=1)
    return actions


def test_a_down_service_is_restarted_then_rebooted_then_given_up() -> None:
    assert run_incident(DOWN) == [Action.RESTART] * 3 + [Action.REBOOT, Action.GIVE_UP]


def test_an_unreachable_vps_is_reset_then_given_up() -> None:
    assert run_incident(GONE) == [Action.RESET, Action.GIVE_UP]


def test_a_silent_agent_is_restarted_but_never_rebooted() -> None:
    assert run_incident(AGENT) == [Action.RESTART_AGENT] * 3 + [Action.GIVE_UP]


def test_the_decisions_say_why_and_what_next() -> None:
    first = step(DOWN, Incident(), T0)
    assert first.why == "restart 1 of 3 in this incident"
    assert "next heartbeat" in first.next_step and "reboot" not in first.next_step
    third = step(DOWN, Incident(window_started_at=T0, restarts=2), t(60))
    assert "then a reboot through Hetzner" in third.next_step
    reboot = step(DOWN, Incident(window_started_at=T0, restarts=3), t(60))
    assert reboot.why == "Rachel8 is still down after 3 of 3 restarts"
    assert "circuit breaker opens" in reboot.next_step
    give_up = step(DOWN, Incident(window_started_at=T0, restarts=3, rebooted_at=t(5)), t(60))
    assert give_up.why == "still service down after 3 of 3 restarts and a reboot"
    assert "operators are alerted" in give_up.next_step


@pytest.mark.parametrize(
    "problem",
    [p for p in Problem if p not in REPAIRABLE],
)
def test_nothing_else_is_repaired(problem: Problem) -> None:
    for state in HealthState:
        assert step(Verdict(state, problem, "x"), Incident(), T0).action == Action.NONE


def test_a_healthy_verdict_needs_nothing_even_with_a_repairable_problem_name() -> None:
    assert step(Verdict(HealthState.HEALTHY, Problem.SERVICE_DOWN, "x"), Incident(), T0).action == (
        Action.NONE
    )


def test_a_repair_waits_for_newer_evidence() -> None:
    acted = after(Incident(), Action.RESTART, T0, POLICY)
    assert acted.last_action_at == T0 and acted.restarts == 1 and acted.window_started_at == T0
    assert step(DOWN, acted, t(20), evidence=T0).action == Action.WAIT
    assert step(DOWN, acted, t(20), evidence=t(-5)).action == Action.WAIT
    assert step(DOWN, acted, t(40), evidence=t(30)).action == Action.RESTART
    nothing = decide_repair(DOWN, acted, evidence_at=None, now=t(40), policy=POLICY)
    assert nothing.action == Action.WAIT


def test_the_breaker_holds_until_its_cooldown_ends_then_a_new_window_starts() -> None:
    spent = Incident(window_started_at=T0, restarts=3, rebooted_at=t(200), last_action_at=t(200))
    opened = after(spent, Action.GIVE_UP, t(300), POLICY)
    assert opened.breaker_until == t(300 + 1800)
    assert opened.breaker_open(t(400)) and not opened.breaker_open(t(2100))
    waiting = step(DOWN, opened, t(400), evidence=t(399))
    assert waiting.action == Action.WAIT and "circuit breaker open until" in waiting.why
    assert step(DOWN, opened, t(2100)).action == Action.RESTART
    restarted = after(opened, Action.RESTART, t(2100), POLICY)
    assert (restarted.restarts, restarted.rebooted_at, restarted.breaker_until) == (1, None, None)
    assert restarted.window_started_at == t(2100)


def test_a_window_that_expired_starts_the_count_again() -> None:
    old = Incident(window_started_at=T0, restarts=3, rebooted_at=t(60), last_action_at=t(60))
    assert step(DOWN, old, t(1799)).action == Action.GIVE_UP
    assert step(DOWN, old, t(1800)).action == Action.RESTART
    assert current(old, t(1800), POLICY) == Incident(last_action_at=t(60))
    assert current(old, t(100), POLICY) == old


def test_repair_off_paused_or_held_by_the_herd_guard() -> None:
    off = RepairPolicy(False, 3, 1800, 1800, 75)
    assert step(DOWN, Incident(), T0, policy=off).action == Action.HOLD
    held = step(DOWN, Incident(), T0, held="the herd guard holds repairs")
    assert (held.action, held.why) == (Action.HOLD, "the herd guard holds repairs")
    # A server whose breaker is open waits for it, held or not.
    opened = Incident(breaker_until=t(60))
    assert step(DOWN, opened, T0, held="paused").action == Action.WAIT


def test_after_a_non_step_changes_nothing() -> None:
    incident = Incident(window_started_at=T0, restarts=1)
    for action in (Action.NONE, Action.WAIT, Action.HOLD):
        assert after(incident, action, t(10), POLICY) == incident


def test_policy_from_settings(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path,
        RACHEL_REPAIR="false",
        RACHEL_REPAIR_RESTARTS="2",
        RACHEL_REPAIR_WINDOW="10m",
        RACHEL_REPAIR_COOLDOWN="1h",
        RACHEL_HEARTBEAT_MISSING="80s",
    )
    assert RepairPolicy.from_settings(settings) == RepairPolicy(False, 2, 600, 3600, 80)


def finding(verdict: Verdict, at: datetime, repeats: int = 0) -> Finding:
    return Finding(verdict, at, repeats)


def test_a_silent_server_is_probed_at_once_and_a_probed_one_backs_off() -> None:
    silent = Verdict(HealthState.UNHEALTHY, Problem.SILENT, "no heartbeat")
    assert probe_due(silent, None, Incident(), now=T0, policy=POLICY)
    found = finding(GONE, T0)
    judged = found.verdict  # the verdict the task took from the finding
    assert not probe_due(judged, found, Incident(), now=t(74), policy=POLICY)
    assert probe_due(judged, found, Incident(), now=t(75), policy=POLICY)
    twice = finding(GONE, T0, repeats=2)  # the same found three times: 4 x 75 s
    assert not probe_due(twice.verdict, twice, Incident(), now=t(299), policy=POLICY)
    assert probe_due(twice.verdict, twice, Incident(), now=t(300), policy=POLICY)
    many = finding(GONE, T0, repeats=20)
    assert probe_due(
        many.verdict, many, Incident(), now=t(MAX_PROBE_INTERVAL_SECONDS), policy=POLICY
    )


def test_after_a_repair_a_probed_server_is_probed_a_settle_later() -> None:
    found = finding(DOWN, T0, repeats=5)
    acted = Incident(last_action_at=t(100))
    assert not probe_due(found.verdict, found, acted, now=t(174), policy=POLICY)
    assert probe_due(found.verdict, found, acted, now=t(175), policy=POLICY)


def test_no_probe_for_a_fresh_heartbeat_or_an_open_breaker() -> None:
    fresh = Verdict(HealthState.UNHEALTHY, Problem.SERVICE_DOWN, "from a heartbeat")
    old = finding(DOWN, T0 - timedelta(hours=1))
    assert not probe_due(fresh, old, Incident(), now=T0, policy=POLICY)
    silent = Verdict(HealthState.UNHEALTHY, Problem.SILENT, "no heartbeat")
    assert not probe_due(silent, None, Incident(breaker_until=t(60)), now=T0, policy=POLICY)


def test_giving_up_on_an_unreachable_vps_names_the_reboot_only() -> None:
    rebooted = Incident(window_started_at=T0, rebooted_at=t(5))
    assert step(GONE, rebooted, t(60)).why == "still unreachable after a reboot"

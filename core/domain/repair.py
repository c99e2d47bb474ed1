"""Repair by escalation, behind a circuit breaker: pure decisions.

One incident of a server is counted in a window (RACHEL_REPAIR_WINDOW) that
starts with its first repair:

1. restart Rachel8 (`systemctl reset-failed` + `restart`), up to
   RACHEL_REPAIR_RESTARTS times; for an agent that went silent while Rachel8
   runs, restart the agent's timer instead (up to as many times, never a reboot:
   the owner's assistant works);
2. then reboot the VPS through Hetzner, once: `reboot` (soft) when SSH
   answers, `reset` (hard) when the VPS is unreachable (no SSH: no restart either);
3. then give up: the circuit breaker opens, no repair until `breaker_until`
   (RACHEL_REPAIR_COOLDOWN), and operators are alerted.

A repair is judged by evidence newer than it (a heartbeat that arrived, or a
probe made, after it): until then the decision is to wait. Problems restarts
cannot fix (a revoked token, a webhook, a second poller) get no repair: the
owner and operators are told instead (`core.domain.notify`). Nothing is
repaired while RACHEL_REPAIR is false, an operator paused repair, or the herd
guard holds (`core.domain.herd`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING

from core.domain.health import Finding, HealthState, Problem, Verdict

if TYPE_CHECKING:
    from core.platform.settings import Settings


class Action(StrEnum):
    """What the decision asks for."""

    #: nothing to repair
    NONE = "none"
    #: a repair ran and nothing newer tells whether it worked, or the breaker is open
    WAIT = "wait"
    #: repair is off, paused, or the herd guard holds
    HOLD = "hold"
    RESTART = "restart"
    RESTART_AGENT = "restart_agent"
    REBOOT = "reboot"
    #: a hard reset through Hetzner (the VPS does not answer SSH)
    RESET = "reset"
    #: open the circuit breaker and alert operators
    GIVE_UP = "give_up"


#: The actions a repair job carries out.
STEPS = frozenset(
    {Action.RESTART, Action.RESTART_AGENT, Action.REBOOT, Action.RESET, Action.GIVE_UP}
)
#: The longest a server that stays silent waits between two SSH probes.
MAX_PROBE_INTERVAL_SECONDS = 1800.0
#: Problems some repair can fix.
REPAIRABLE = frozenset({Problem.SERVICE_DOWN, Problem.UNREACHABLE, Problem.AGENT_SILENT})


@dataclass(frozen=True)
class Incident:
    """A server's repairs so far (its row), and when the last one was done (Redis)."""

    window_started_at: datetime | None = None
    restarts: int = 0
    rebooted_at: datetime | None = None
    breaker_until: datetime | None = None
    last_action_at: datetime | None = None

    def breaker_open(self, now: datetime) -> bool:
        return self.breaker_until is not None and self.breaker_until > now


@dataclass(frozen=True)
class RepairPolicy:
    """RACHEL_REPAIR, RACHEL_REPAIR_RESTARTS, _WINDOW and _COOLDOWN.

    Attributes:
        settle_seconds: how long a repair waits for evidence before it is
            looked at again anyway (a silent server is probed again after it).
    """

    enabled: bool
    max_restarts: int
    window_seconds: float
    cooldown_seconds: float
    settle_seconds: float

    @classmethod
    def from_settings(cls, settings: Settings) -> RepairPolicy:
        return cls(
            enabled=settings.repair_enabled,
            max_restarts=settings.repair_max_restarts,
            window_seconds=settings.repair_window_seconds,
            cooldown_seconds=settings.repair_cooldown_seconds,
            settle_seconds=settings.heartbeat_missing_seconds,
        )


@dataclass(frozen=True)
class Decision:
    """The next step for a server, why, and what happens after it."""

    action: Action
    why: str
    next_step: str = ""


def current(incident: Incident, now: datetime, policy: RepairPolicy) -> Incident:
    """The incident as of `now`: a window that expired, or a breaker that closed,
    starts a new one (counts back to zero)."""
    started = incident.window_started_at
    expired = started is None or now - started >= timedelta(seconds=policy.window_seconds)
    closed = incident.breaker_until is not None and incident.breaker_until <= now
    if expired or closed:
        return replace(
            incident, window_started_at=None, restarts=0, rebooted_at=None, breaker_until=None
        )
    return incident


def decide_repair(
    verdict: Verdict,
    incident: Incident,
    *,
    evidence_at: datetime | None,
    now: datetime,
    policy: RepairPolicy,
    held: str | None = None,
) -> Decision:
    """The next repair step for a server judged `verdict`.

    Args:
        verdict: the server's health now.
        incident: its repairs so far.
        evidence_at: when what the verdict rests on was seen (the heartbeat's
            arrival, the probe's time).
        now: the time of the decision.
        policy: the repair settings.
        held: why repair is held fleet-wide (paused by an operator, the herd
            guard), None when it is not.
    """
    if verdict.state not in (HealthState.UNHEALTHY, HealthState.DEGRADED):
        return Decision(Action.NONE, "nothing to repair")
    if verdict.problem not in REPAIRABLE:
        return Decision(Action.NONE, f"no automatic repair for {verdict.problem.value}")
    blocked = _blocked(incident, evidence_at=evidence_at, now=now, policy=policy, held=held)
    return blocked or _escalate(verdict, current(incident, now, policy), policy)


def _blocked(
    incident: Incident,
    *,
    evidence_at: datetime | None,
    now: datetime,
    policy: RepairPolicy,
    held: str | None,
) -> Decision | None:
    """Why no repair may be tried now, or None."""
    if not policy.enabled:
        return Decision(Action.HOLD, "automatic repair is off (RACHEL_REPAIR=false)")
    if incident.breaker_open(now):
        assert incident.breaker_until is not None
        return Decision(
            Action.WAIT,
            f"circuit breaker open until {incident.breaker_until:%Y-%m-%d %H:%M:%S} UTC",
            "repairs resume when it closes",
        )
    last = incident.last_action_at
    if last is not None and (evidence_at is None or evidence_at <= last):
        return Decision(Action.WAIT, "waiting for a heartbeat or a probe newer than the repair")
    if held is not None:
        return Decision(Action.HOLD, held)
    return None


def _escalate(verdict: Verdict, incident: Incident, policy: RepairPolicy) -> Decision:
    tried = f"{incident.restarts} of {policy.max_restarts}"
    if verdict.problem == Problem.AGENT_SILENT:
        if incident.restarts < policy.max_restarts:
            return Decision(
                Action.RESTART_AGENT,
                f"agent restart {incident.restarts + 1} of {policy.max_restarts}",
                "the next heartbeat tells whether the agent talks again",
            )
        return Decision(
            Action.GIVE_UP,
            f"the agent stayed silent after {tried} restarts (Rachel8 itself runs)",
            "no reboot for a silent agent; operators are alerted",
        )
    if verdict.problem == Problem.SERVICE_DOWN and incident.restarts < policy.max_restarts:
        return Decision(
            Action.RESTART,
            f"restart {incident.restarts + 1} of {policy.max_restarts} in this incident",
            "the next heartbeat tells whether Rachel8 stays up"
            + (
                "; then a reboot through Hetzner if it is still down"
                if incident.restarts + 1 >= policy.max_restarts
                else ""
            ),
        )
    if incident.rebooted_at is None:
        hard = verdict.problem == Problem.UNREACHABLE
        why = (
            "the VPS does not answer SSH"
            if hard
            else f"Rachel8 is still down after {tried} restarts"
        )
        return Decision(
            Action.RESET if hard else Action.REBOOT,
            why,
            "the next heartbeat or probe after the boot tells; if it is still down, "
            "the circuit breaker opens",
        )
    done = f"{tried} restarts and a reboot" if incident.restarts else "a reboot"
    return Decision(
        Action.GIVE_UP,
        f"still {verdict.problem.value.replace('_', ' ')} after {done}",
        "no repair until the cooldown ends; operators are alerted",
    )


def after(incident: Incident, action: Action, now: datetime, policy: RepairPolicy) -> Incident:
    """The incident once `action` was carried out at `now` (what the repair job writes)."""
    counted = current(incident, now, policy)
    if counted.window_started_at is None:
        counted = replace(counted, window_started_at=now)
    if action in (Action.RESTART, Action.RESTART_AGENT):
        return replace(counted, restarts=counted.restarts + 1, last_action_at=now)
    if action in (Action.REBOOT, Action.RESET):
        return replace(counted, rebooted_at=now, last_action_at=now)
    if action == Action.GIVE_UP:
        until = now + timedelta(seconds=policy.cooldown_seconds)
        return replace(counted, breaker_until=until, last_action_at=now)
    return incident


def probe_due(
    verdict: Verdict,
    finding: Finding | None,
    incident: Incident,
    *,
    now: datetime,
    policy: RepairPolicy,
) -> bool:
    """Whether a silent server should be probed over SSH now.

    A server that just went silent is probed at once. One judged by a probe is
    probed again `settle_seconds` after a repair (did it work?), and otherwise
    after `settle_seconds` doubled for each probe that found the same, up to
    `MAX_PROBE_INTERVAL_SECONDS`. Never while its circuit breaker is open.
    """
    if incident.breaker_open(now):
        return False
    if verdict.problem == Problem.SILENT:
        return True
    if finding is None or verdict is not finding.verdict:
        return False  # judged by a fresh heartbeat
    last = incident.last_action_at
    if last is not None and last > finding.at:
        wait = policy.settle_seconds
        since = last
    else:
        wait = min(policy.settle_seconds * 2**finding.repeats, MAX_PROBE_INTERVAL_SECONDS)
        since = finding.at
    return (now - since).total_seconds() >= wait

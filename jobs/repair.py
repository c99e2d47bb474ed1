"""The health task's hands: the SSH probe of a silent server, and the repair steps.

- `probe_server`: SSH to a server whose heartbeats stopped (the pinned host
  key, `core.cloud.vps_ops.probe`), keep the finding for the health task, record
  an Event (kind `probe`) with what it saw, and apply the verdict at once;
- `repair_server`: one step of the escalation (`core.domain.repair`): restart
  Rachel8 or the agent over SSH, reboot (`reboot`) or reset (`reset`) the VPS
  through Hetzner, or give up and open the circuit breaker (operators alerted).
  The incident's counts are written to the row, the time to Redis (the next
  decision waits for evidence newer than it), an Event (kind `repair`) says
  what was done, why, and what happens next, and a metric counts it.

Both are queued by the health task, one per server at a time (a marker in
Redis the job clears when it ends), and re-check what they need: a server no
longer ready, claimed by a Rachel8 update (`jobs.update`), a breaker opened,
repair paused or the herd guard tripped since the step was queued means
nothing is done.

A restart that left Rachel8 running queues `ask_heartbeat` RACHEL_SERVICE_SETTLE
later (the time the injection, too, wants Rachel8 to stay up): it runs the agent
once, so that the heartbeat that tells whether Rachel8 stayed up comes then, not
at the agent timer's next tick (up to RACHEL_HEARTBEAT_INTERVAL later), unless a
heartbeat told already (the server is healthy: no SSH to it). Asked at once, the
agent would see a Rachel8 that is about to crash again still running.
"""

from __future__ import annotations

import logging
from datetime import datetime

from core.cloud import vps_ops
from core.cloud.provider import HetznerError
from core.cloud.ssh import SSHError, Target
from core.cloud.vps_ops import Probe
from core.domain.health import Finding, HealthState, judge_probe
from core.domain.health_metrics import count_probe, count_repair
from core.domain.health_store import HealthMemory
from core.domain.herd import HerdStore, held
from core.domain.lifecycle import Status, record_event
from core.domain.repair import STEPS, Action, RepairPolicy, after
from core.domain.vps_access import target_for
from core.errors import CryptoError
from core.platform.logs import server_logger
from core.store import rows
from core.store.db import connection
from core.store.models import Server
from jobs.context import JobContext, context
from jobs.health_fleet import Judged, watched_of
from jobs.health_writes import alert_operators, apply_verdicts
from jobs.queues import FINISH, enqueue_step
from jobs.registry import JobFunction

log = logging.getLogger(__name__)

#: Seconds an SSH probe may take (connect and both commands).
PROBE_TIMEOUT = 10.0
#: Why a claimed server is left alone.
UPDATE_HOLDS = "a Rachel8 update holds the server (its rollout's health gate decides)"


def probe_server(server_id: int) -> str:
    """RQ job: probe a silent server over SSH and apply what the probe tells."""
    ctx = context()
    try:
        with connection():
            return _probe(ctx, server_id)
    finally:
        HealthMemory(ctx.redis).release(server_id)


def _target(ctx: JobContext, server: Server) -> tuple[Target | None, str]:
    """Where to connect, or None and why not."""
    try:
        target = target_for(server, ctx.keyring, ctx.settings)
    except CryptoError as exc:
        return None, f"{exc.code}: the server's SSH key cannot be opened"
    if target is None:
        return None, "no_target: no address or pinned host key recorded"
    return target, ""


def _probe(ctx: JobContext, server_id: int) -> str:
    server = rows.get(Server, server_id)
    if server is None or server.status != Status.READY:
        return "skipped: not ready"
    if server.update_claim is not None:
        return f"skipped: {UPDATE_HOLDS}"
    slog = server_logger(log, server.id, "health")
    now = ctx.clock.now()
    target, why_not = _target(ctx, server)
    if target is None:
        found = Probe(reachable=False, error=why_not)
        count_probe(ctx.redis, "skipped")
    else:
        found = vps_ops.probe(target, PROBE_TIMEOUT)
        count_probe(ctx.redis, "reachable" if found.reachable else "unreachable")
    verdict = judge_probe(found)
    memory = HealthMemory(ctx.redis)
    previous = memory.finding(server.id)
    repeats = previous.repeats + 1 if previous and previous.verdict == verdict else 0
    memory.store_finding(server.id, Finding(verdict, now, repeats))
    record_event(
        server.id,
        "probe",
        f"SSH probe after heartbeats stopped: {found.describe()}; "
        f"verdict {verdict.state.value}: {verdict.reason}",
        clock=ctx.clock,
    )
    judged = Judged(watched_of(server), verdict, now, None)
    applied = apply_verdicts(ctx, [judged] if judged.changed else [], now)
    slog.log(
        logging.WARNING if found.reachable is False else logging.INFO,
        "probe: %s; health %s (%s)%s; the next health pass decides the repair",
        found.describe(),
        verdict.state.value,
        verdict.reason,
        "" if applied else ", unchanged",
    )
    return f"{verdict.state.value}: {verdict.reason}"


def repair_server(server_id: int, action: str, why: str = "", next_step: str = "") -> str:
    """RQ job: carry out one repair step of a server and record it.

    Args:
        server_id: the server.
        action: `restart`, `restart_agent`, `reboot`, `reset` or `give_up`.
        why: the decision's reason (for the Event).
        next_step: what happens after it (for the Event).
    """
    ctx = context()
    try:
        with connection():
            return _repair(ctx, server_id, Action(action), why, next_step)
    finally:
        HealthMemory(ctx.redis).release(server_id)


def _skip(ctx: JobContext, server: Server, action: Action, reason: str) -> str:
    count_repair(ctx.redis, action.value, "skipped")
    record_event(server.id, "repair", f"{action.value} not done: {reason}", clock=ctx.clock)
    server_logger(log, server.id, "health").info("repair %s not done: %s", action.value, reason)
    return f"skipped: {reason}"


def _repair(ctx: JobContext, server_id: int, action: Action, why: str, next_step: str) -> str:
    if action not in STEPS:
        raise ValueError(f"not a repair step: {action}")
    server = rows.get(Server, server_id)
    if server is None or server.status != Status.READY:
        return "skipped: not ready"
    now = ctx.clock.now()
    policy = RepairPolicy.from_settings(ctx.settings)
    memory = HealthMemory(ctx.redis)
    incident = watched_of(server).incident(memory.acted_at(server.id))
    holding = held(*HerdStore(ctx.redis).read())
    if not policy.enabled:
        return _skip(ctx, server, action, "automatic repair is off (RACHEL_REPAIR=false)")
    if server.update_claim is not None:
        return _skip(ctx, server, action, UPDATE_HOLDS)
    if holding is not None and action != Action.GIVE_UP:
        return _skip(ctx, server, action, holding)
    if incident.breaker_open(now):
        return _skip(ctx, server, action, "the circuit breaker opened meanwhile")
    done = after(incident, action, now, policy)
    ok, detail = _carry_out(ctx, server, action, done.breaker_until)
    Server.update(
        repair_window_started_at=done.window_started_at,
        repair_restarts=done.restarts,
        repair_rebooted_at=done.rebooted_at,
        breaker_until=done.breaker_until,
    ).where((Server.id == server.id) & (Server.status == Status.READY)).execute()
    memory.record_action(server.id, now)
    outcome = "ok" if ok else "failed"
    count_repair(ctx.redis, action.value, outcome)
    cause = server.health_reason or server.health
    message = (
        f"{_VERB[action]} ({why or 'escalation'}) because {cause}: {detail}; "
        f"next: {next_step or 'the next heartbeat tells'}"
    )
    record_event(server.id, "repair", message, clock=ctx.clock)
    server_logger(log, server.id, "health").warning(
        "repair %s %s: %s", action.value, outcome, message
    )
    if action == Action.RESTART and ok:
        enqueue_step(
            ctx.redis,
            FINISH,
            JobFunction.ASK_HEARTBEAT,
            server.id,
            "ask-heartbeat",
            record=False,
            entry=now,
            delay=ctx.settings.service_settle_seconds,
        )
    if action == Action.GIVE_UP:
        alert_operators(
            ctx.redis,
            server.id,
            "circuit breaker open: automatic repair gave up",
            f"{cause} ({why})",
            next_step or "no automatic repair until the cooldown ends; look at the server",
        )
    return f"{action.value} {outcome}: {detail}"


def ask_heartbeat(server_id: int) -> str:
    """RQ job, RACHEL_SERVICE_SETTLE after a restart: run the server's agent once now."""
    ctx = context()
    with connection():
        server = rows.get(Server, server_id)
        if server is None or server.status != Status.READY:
            return "skipped: not ready"
        if server.health == HealthState.HEALTHY:
            # A heartbeat since the restart told already: no SSH to a healthy server.
            return "skipped: healthy already"
        target, why_not = _target(ctx, server)
    if target is None:
        return f"skipped: {why_not}"
    try:
        vps_ops.ask_heartbeat(target, ctx.settings.inject_timeout_seconds)
    except SSHError as exc:
        server_logger(log, server_id, "health").info(
            "asking the agent for a heartbeat after the restart failed (%s: %s); "
            "its timer's next tick tells",
            exc.code,
            exc.message,
        )
        return f"not asked: {exc.code}"
    return "asked"


_VERB = {
    Action.RESTART: "restarted Rachel8",
    Action.RESTART_AGENT: "restarted the health agent",
    Action.REBOOT: "rebooted the VPS through Hetzner",
    Action.RESET: "reset the VPS through Hetzner (hard: it does not answer SSH)",
    Action.GIVE_UP: "gave up repairing: circuit breaker open",
}


def _carry_out(
    ctx: JobContext, server: Server, action: Action, breaker_until: datetime | None
) -> tuple[bool, str]:
    """Do the step; (whether it was done, what happened), never raising for the VPS's sake."""
    if action == Action.GIVE_UP:
        until = f"{breaker_until:%Y-%m-%d %H:%M:%S} UTC" if breaker_until else "the cooldown"
        return True, f"no automatic repair until {until}"
    if action in (Action.REBOOT, Action.RESET):
        if server.provider_id is None:
            return False, "no Hetzner server id recorded"
        try:
            action_id = ctx.hetzner.reboot_server(server.provider_id, hard=action == Action.RESET)
        except HetznerError as exc:
            return False, f"Hetzner refused: {exc.code}: {exc.message}"
        HealthMemory(ctx.redis).restarts_reset(server.id)  # a boot starts the count afresh
        return True, f"Hetzner action {action_id} started"
    return _over_ssh(ctx, server, action)


def _over_ssh(ctx: JobContext, server: Server, action: Action) -> tuple[bool, str]:
    target, why_not = _target(ctx, server)
    if target is None:
        return False, why_not
    timeout = ctx.settings.inject_timeout_seconds
    try:
        if action == Action.RESTART_AGENT:
            vps_ops.restart_agent(target, timeout)
            return True, "its timer is enabled and started again"
        state = vps_ops.restart_service(target, timeout)
    except SSHError as exc:
        return False, f"{exc.code}: {exc.message}"
    # reset-failed and a manual restart set systemd's count back to 0.
    HealthMemory(ctx.redis).restarts_reset(server.id)
    return state.running, f"Rachel8 is {state.describe()} right after the restart"

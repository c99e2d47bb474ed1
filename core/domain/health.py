"""Fleet health: the state of a ready server's assistant, beside its provisioning status.

`HealthState` is what operators, owners and the customer's dashboard see. It
is decided here, by pure functions, from the latest heartbeat
(`core.domain.heartbeats`) and, when heartbeats stopped, from an SSH probe
(`core.cloud.vps_ops.Probe`). Every change is an Event (kind `health`) on the
server's timeline; the health task (`jobs.health`) writes only changes, so a
reason never carries a number that moves on its own (an age, a byte count).

A `Verdict` says the state, the `Problem` behind it (what repair, if any, can
fix: `core.domain.repair`) and the reason in words. The rules, first match wins:

- not watched (no heartbeat credential: injected before the agent existed): unknown;
- no heartbeat yet, ready for less than RACHEL_HEARTBEAT_MISSING: unknown;
- silent (the latest heartbeat, or ready_at, older than RACHEL_HEARTBEAT_MISSING):
  unhealthy until an SSH probe tells more; a probe newer than the latest
  heartbeat decides instead: unreachable or service down -> unhealthy,
  service running -> degraded "agent silent";
- the bot token no longer answers `getMe`, a webhook is set on the bot, 409
  conflicts: unhealthy (restarts fix none of these: the owner and operators are told);
- Rachel8's unit between two of systemd's own restarts (`auto-restart`): degraded,
  unless it was down already or systemd restarted it since the previous heartbeat
  (it exited again after that restart: a crash loop), then unhealthy;
- Rachel8's unit not running (failed, inactive...): unhealthy;
- systemd restarted it since the previous heartbeat, disk or memory low, Telegram
  unreachable from the box, another commit than `Server.rachel8_commit`: degraded;
- otherwise healthy.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from core.cloud import vps_contract as vps
from core.domain.heartbeats import Heartbeat, ServiceReport, StoredHeartbeat

if TYPE_CHECKING:
    from core.cloud.rachel8_unit import ServiceState
    from core.cloud.vps_ops import Probe
    from core.platform.settings import Settings


class HealthState(StrEnum):
    """A ready server's health.

    - `healthy`: the agent reports Rachel8 running and Telegram answering.
    - `degraded`: it runs, but something needs attention (restarted by systemd,
      disk or memory low, the agent silent while the service is up).
    - `unhealthy`: the assistant does not answer its owner (service down or
      crash-looping, VPS unreachable, token revoked, a webhook or a second
      poller stealing the updates), or nothing is heard from it any more.
    - `unknown`: nothing heard yet (a server that just became ready), or not watched.
    """

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"
    UNKNOWN = "unknown"


#: Every state, in the order views list them.
HEALTH_STATES = tuple(HealthState)


class Problem(StrEnum):
    """What is wrong, as repair and notifications need to know it."""

    NONE = "none"
    #: ready, no heartbeat yet (within RACHEL_HEARTBEAT_MISSING)
    WAITING = "waiting"
    #: no heartbeat credential: the server is not watched
    UNWATCHED = "unwatched"
    #: heartbeats stopped; an SSH probe will tell why
    SILENT = "silent"
    UNREACHABLE = "unreachable"
    SERVICE_DOWN = "service_down"
    AGENT_SILENT = "agent_silent"
    TOKEN_REVOKED = "token_revoked"  # noqa: S105 - a problem name
    WEBHOOK_SET = "webhook_set"
    CONFLICT = "conflict"
    RESTARTED = "restarted"
    DISK_LOW = "disk_low"
    MEMORY_LOW = "memory_low"
    TELEGRAM_UNREACHABLE = "telegram_unreachable"
    NO_TOKEN = "no_token"  # noqa: S105 - a problem name
    COMMIT_DIFFERS = "commit_differs"


#: Restarts do not fix these: the owner has to act, and operators are told.
TOLD = frozenset({Problem.TOKEN_REVOKED, Problem.WEBHOOK_SET, Problem.CONFLICT})
#: The assistant does not answer its owner, and we know why: the owner hears of it.
OWNER_DOWN = frozenset({Problem.SERVICE_DOWN, Problem.UNREACHABLE} | TOLD)


@dataclass(frozen=True)
class Verdict:
    """A server's health as decided, and why."""

    state: HealthState
    problem: Problem
    reason: str

    @property
    def owner_down(self) -> bool:
        """The owner's assistant is down for a known reason (they are told)."""
        return self.state == HealthState.UNHEALTHY and self.problem in OWNER_DOWN

    def differs(self, state: str, reason: str | None) -> bool:
        """Whether a row holding (`state`, `reason`) must be rewritten.

        A server that was never judged (unknown, no reason) and is still
        waiting for its first heartbeat is left alone: no Event for that.
        """
        if state == HealthState.UNKNOWN and reason is None and self.problem == Problem.WAITING:
            return False
        return state != self.state or reason != self.reason


@dataclass(frozen=True)
class HealthPolicy:
    """The thresholds of the rules (RACHEL_HEARTBEAT_MISSING, and fixed limits).

    Attributes:
        missing_seconds: a heartbeat older than this means the server is silent.
        disk_free_share, disk_free_min_bytes: below both, the disk is low.
        memory_available_share: below this share, memory is low.
    """

    missing_seconds: float
    disk_free_share: float = 0.05
    disk_free_min_bytes: int = 1 << 30
    memory_available_share: float = 0.05

    @classmethod
    def from_settings(cls, settings: Settings) -> HealthPolicy:
        return cls(missing_seconds=settings.heartbeat_missing_seconds)


@dataclass(frozen=True)
class Finding:
    """An SSH probe's verdict on a silent server, and when it was made.

    Attributes:
        repeats: how many probes before this one found the very same (probes of a
            server that stays down back off: `core.domain.repair.probe_due`).
    """

    verdict: Verdict
    at: datetime
    repeats: int = 0


UNWATCHED = Verdict(
    HealthState.UNKNOWN,
    Problem.UNWATCHED,
    "not watched: no heartbeat credential (injected before the health agent)",
)
WAITING = Verdict(HealthState.UNKNOWN, Problem.WAITING, "waiting for the first heartbeat")
HEALTHY = Verdict(HealthState.HEALTHY, Problem.NONE, "Rachel8 running, Telegram answering")


def _silent(policy: HealthPolicy, heard: bool) -> Verdict:
    limit = f"{policy.missing_seconds:.0f}s"
    what = (
        f"no heartbeat for more than {limit}"
        if heard
        else f"no heartbeat on record, ready for more than {limit}"
    )
    return Verdict(HealthState.UNHEALTHY, Problem.SILENT, f"{what}; probing over SSH")


def decide(
    latest: StoredHeartbeat | None,
    *,
    received_at: datetime | None,
    now: datetime,
    ready_at: datetime | None,
    watched: bool,
    commit: str | None,
    restarted: bool,
    finding: Finding | None,
    policy: HealthPolicy,
    previous: str = HealthState.UNKNOWN,
) -> Verdict:
    """A ready server's health from what is known of it.

    Args:
        latest: its latest heartbeat, if any.
        received_at: when that heartbeat arrived (naive UTC; None without one).
        now: the time of the decision.
        ready_at: when the server became ready (its grace for a first heartbeat).
        watched: it has a heartbeat credential (an agent that should talk).
        commit: the Rachel8 commit it should run (`Server.rachel8_commit`).
        restarted: systemd restarted Rachel8 between the previous heartbeat and
            this one (`restarts_grew`).
        finding: the latest SSH probe's verdict, used while the server is silent
            and the probe is newer than its latest heartbeat.
        policy: the thresholds.
        previous: its health before this decision (a crash loop stays down
            between systemd's own restarts).
    """
    if not watched:
        return UNWATCHED
    if latest is None or received_at is None:
        if ready_at is not None and (now - ready_at).total_seconds() < policy.missing_seconds:
            return WAITING
        return finding.verdict if finding is not None else _silent(policy, heard=False)
    if (now - received_at).total_seconds() >= policy.missing_seconds:
        if finding is not None and finding.at > received_at:
            return finding.verdict
        return _silent(policy, heard=True)
    return judge_heartbeat(
        latest.heartbeat,
        commit=commit,
        restarted=restarted,
        policy=policy,
        was_down=previous == HealthState.UNHEALTHY,
    )


def restarts_grew(previous: int | None, current: int) -> bool:
    """Whether systemd restarted Rachel8 since the previous heartbeat (unknown: no)."""
    return previous is not None and current > previous


def judge_heartbeat(
    heartbeat: Heartbeat,
    *,
    commit: str | None,
    restarted: bool,
    policy: HealthPolicy,
    was_down: bool = False,
) -> Verdict:
    """The health a fresh heartbeat shows (see the module's rules); `was_down`: the
    server was unhealthy before it."""
    telegram = heartbeat.telegram
    if telegram.get_me == vps.GET_ME_UNAUTHORIZED:
        return Verdict(
            HealthState.UNHEALTHY,
            Problem.TOKEN_REVOKED,
            "bot token revoked: Telegram answers getMe with Unauthorized",
        )
    if telegram.webhook_set:
        return Verdict(
            HealthState.UNHEALTHY,
            Problem.WEBHOOK_SET,
            "a webhook is set on the bot, Rachel8 gets no updates",
        )
    if telegram.conflicts > 0:
        return Verdict(
            HealthState.UNHEALTHY,
            Problem.CONFLICT,
            "another process polls this bot (409 Conflict)",
        )
    service = heartbeat.service
    if service is None:
        return Verdict(
            HealthState.UNHEALTHY,
            Problem.SERVICE_DOWN,
            "Rachel8's unit state is unknown: the agent could not read it",
        )
    if not service.running:
        # Restarted since the last heartbeat and down again: it crashes in a loop.
        return _not_running(service, was_down=was_down or restarted)
    return _degraded(heartbeat, commit=commit, restarted=restarted, policy=policy) or HEALTHY


def _not_running(service: ServiceReport | ServiceState, *, was_down: bool) -> Verdict:
    """Rachel8's unit is not running: down, or between two of systemd's own restarts.

    Within `RestartSec` of a crash systemd restarts it by itself (`auto-restart`):
    that is a blip, not an outage, and restarting it ourselves would race
    systemd and tell the owner of a crash they never noticed. A unit that keeps
    crashing hits its start limit within `StartLimitIntervalSec` and is `failed`
    at a later look; one seen crashed again after a restart of systemd's (its
    restart count grew since the previous heartbeat) is in that loop already,
    and so is not up between two of those restarts, nor is a server that was down
    already (a crash loop, a silent server probed): it is down.
    """
    if service.sub == "auto-restart" and not was_down:
        return Verdict(
            HealthState.DEGRADED,
            Problem.RESTARTED,
            f"systemd is restarting Rachel8 (it exited: {service.result}, "
            f"exit status {service.exit_status})",
        )
    return Verdict(
        HealthState.UNHEALTHY,
        Problem.SERVICE_DOWN,
        f"Rachel8 is not running: {service.active}/{service.sub} "
        f"({service.result}, exit status {service.exit_status})",
    )


def _degraded(
    heartbeat: Heartbeat, *, commit: str | None, restarted: bool, policy: HealthPolicy
) -> Verdict | None:
    found: list[tuple[Problem, str]] = []
    if restarted:
        found.append((Problem.RESTARTED, "systemd restarted Rachel8 since the last heartbeat"))
    total, free = heartbeat.disk_total_bytes, heartbeat.disk_free_bytes
    if total and free < policy.disk_free_min_bytes and free < total * policy.disk_free_share:
        found.append((Problem.DISK_LOW, "disk almost full"))
    memory = heartbeat.memory_total_bytes
    if memory and heartbeat.memory_available_bytes < memory * policy.memory_available_share:
        found.append((Problem.MEMORY_LOW, "memory almost exhausted"))
    if heartbeat.telegram.get_me == vps.GET_ME_ERROR:
        found.append((Problem.TELEGRAM_UNREACHABLE, "the VPS cannot reach Telegram (getMe failed)"))
    elif heartbeat.telegram.get_me == vps.GET_ME_UNCONFIGURED:
        found.append((Problem.NO_TOKEN, "the agent found no bot token in Rachel8's .env"))
    if commit and heartbeat.commit and heartbeat.commit != commit:
        found.append(
            (
                Problem.COMMIT_DIFFERS,
                f"runs Rachel8 {heartbeat.commit[:12]}, not {commit[:12]} as recorded",
            )
        )
    if not found:
        return None
    return Verdict(HealthState.DEGRADED, found[0][0], "; ".join(text for _, text in found))


def judge_probe(probe: Probe) -> Verdict:
    """What an SSH probe of a silent server tells."""
    if not probe.reachable:
        kind = (probe.error or "no answer").split(":", 1)[0]
        return Verdict(
            HealthState.UNHEALTHY, Problem.UNREACHABLE, f"VPS unreachable over SSH ({kind})"
        )
    service = probe.service
    if service is None:
        return Verdict(
            HealthState.UNHEALTHY,
            Problem.SERVICE_DOWN,
            "heartbeats stopped and Rachel8's unit state cannot be read over SSH",
        )
    if not service.running:
        return _not_running(service, was_down=True)
    timer = {True: "timer active", False: "timer inactive", None: "timer unknown"}
    return Verdict(
        HealthState.DEGRADED,
        Problem.AGENT_SILENT,
        f"agent silent: Rachel8 runs, but no heartbeat arrives "
        f"({timer[probe.agent_timer_active]}, last run {probe.agent_result or 'unknown'})",
    )

"""The herd guard: when much of the fleet fails at once, stop repairing it.

Many servers turning unhealthy together have a shared cause (Telegram,
Anthropic, our network, our own bug); restarting and rebooting all of them is
the restart storm the replaced service named as its worst risk. So:

- the guard trips when more than RACHEL_HERD_SHARE of the watched ready fleet,
  and at least RACHEL_HERD_MIN_SERVERS servers, turned unhealthy within
  RACHEL_HERD_WINDOW (and are still unhealthy); automatic repair (and the SSH
  probes that lead to it) pauses, operators are alerted once, a fleet Event
  (kind `herd`) says why;
- while tripped, the herd is the servers that turned unhealthy since the window
  before the trip; the guard clears by itself when their share drops to the
  threshold (they recovered), with a fleet Event;
- an operator clears it (`rachel-cloud health resume`); servers that turned
  unhealthy before the resume no longer count, so the same herd does not trip it again.

Operators may also pause automatic repair fleet-wide (`rachel-cloud health
pause`) until they resume it. `assess` is pure; `HerdStore` keeps the state in
Redis (one deployment per Redis database):

- `rc:health:herd` (hash): `tripped_at`, `reason` while tripped; `resumed_at`,
  `resumed_by` of the last operator resume;
- `rc:health:paused` (hash): `at`, `by`, `reason` while an operator pauses repair.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import redis

from core.domain.lifecycle import validate_actor
from core.platform.clock import SYSTEM_CLOCK, Clock
from core.store.db import connection
from core.store.models import Event

if TYPE_CHECKING:
    from core.platform.settings import Settings

HERD_KEY = "rc:health:herd"
PAUSED_KEY = "rc:health:paused"
#: The Event kind of fleet-wide health happenings (no server).
EVENT_KIND = "herd"


@dataclass(frozen=True)
class HerdPolicy:
    """RACHEL_HERD_SHARE, RACHEL_HERD_WINDOW, RACHEL_HERD_MIN_SERVERS."""

    share: float
    window_seconds: float
    min_servers: int

    @classmethod
    def from_settings(cls, settings: Settings) -> HerdPolicy:
        return cls(
            share=settings.herd_share,
            window_seconds=settings.herd_window_seconds,
            min_servers=settings.herd_min_servers,
        )


@dataclass(frozen=True)
class HerdState:
    """The guard as stored."""

    tripped_at: datetime | None = None
    reason: str | None = None
    resumed_at: datetime | None = None
    resumed_by: str | None = None

    @property
    def tripped(self) -> bool:
        return self.tripped_at is not None


@dataclass(frozen=True)
class Pause:
    """An operator's fleet-wide pause of automatic repair."""

    at: datetime
    by: str
    reason: str


class Change(StrEnum):
    NONE = "none"
    TRIP = "trip"
    CLEAR = "clear"


@dataclass(frozen=True)
class Assessment:
    """What the guard should be now, and why."""

    change: Change
    tripped: bool
    reason: str


def counting_since(state: HerdState, now: datetime, policy: HerdPolicy) -> datetime:
    """Servers that turned unhealthy at or after this count in the herd."""
    window = timedelta(seconds=policy.window_seconds)
    since = (state.tripped_at - window) if state.tripped_at is not None else now - window
    if state.resumed_at is not None and state.resumed_at > since:
        since = state.resumed_at
    return since


def assess(herd: int, fleet: int, state: HerdState, policy: HerdPolicy) -> Assessment:
    """Trip, clear or keep the guard.

    Args:
        herd: unhealthy servers that turned unhealthy since `counting_since`.
        fleet: the watched ready servers.
        state: the guard now.
        policy: the thresholds.
    """
    limit = policy.share * fleet
    over = fleet > 0 and herd > limit and herd >= policy.min_servers
    share = herd / fleet if fleet else 0.0
    what = (
        f"{herd} of {fleet} servers ({share:.0%}) turned unhealthy within "
        f"{policy.window_seconds:.0f}s (limit {policy.share:.0%}, at least {policy.min_servers})"
    )
    if over and not state.tripped:
        return Assessment(Change.TRIP, True, what)
    if not over and state.tripped:
        return Assessment(Change.CLEAR, False, f"{what}: the herd recovered")
    return Assessment(Change.NONE, state.tripped, state.reason or what)


def _epoch(when: datetime) -> float:
    return when.replace(tzinfo=UTC).timestamp()


def _datetime(value: Any) -> datetime | None:
    if value is None:
        return None
    text = value.decode() if isinstance(value, bytes) else str(value)
    try:
        return datetime.fromtimestamp(float(text), UTC).replace(tzinfo=None)
    except ValueError:
        return None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


class HerdStore:
    """The herd guard's and the operator pause's state in Redis."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def read(self) -> tuple[HerdState, Pause | None]:
        """The guard and the pause (one round trip)."""
        with self.client.pipeline(transaction=False) as pipe:
            pipe.hgetall(HERD_KEY)
            pipe.hgetall(PAUSED_KEY)
            herd, paused = pipe.execute()
        herd = {_text(k): v for k, v in herd.items()}
        paused = {_text(k): v for k, v in paused.items()}
        state = HerdState(
            tripped_at=_datetime(herd.get("tripped_at")),
            reason=_text(herd.get("reason")),
            resumed_at=_datetime(herd.get("resumed_at")),
            resumed_by=_text(herd.get("resumed_by")),
        )
        at = _datetime(paused.get("at"))
        pause = (
            Pause(at, _text(paused.get("by")) or "?", _text(paused.get("reason")) or "")
            if at is not None
            else None
        )
        return state, pause

    def trip(self, at: datetime, reason: str) -> bool:
        """Trip the guard; False when it already was (another run tripped it)."""
        if not self.client.hsetnx(HERD_KEY, "tripped_at", _epoch(at)):
            return False
        self.client.hset(HERD_KEY, "reason", reason)
        return True

    def clear(self) -> bool:
        """Clear a tripped guard; False when it was not tripped."""
        with self.client.pipeline(transaction=True) as pipe:
            pipe.hdel(HERD_KEY, "tripped_at")
            pipe.hdel(HERD_KEY, "reason")
            removed, _ = pipe.execute()
        return bool(removed)

    def resume(self, at: datetime, by: str) -> tuple[bool, bool]:
        """An operator resumes repair: (the guard was tripped, repair was paused)."""
        with self.client.pipeline(transaction=True) as pipe:
            pipe.hdel(HERD_KEY, "tripped_at")
            pipe.hdel(HERD_KEY, "reason")
            pipe.hset(HERD_KEY, mapping={"resumed_at": _epoch(at), "resumed_by": by})
            pipe.delete(PAUSED_KEY)
            tripped, _, _, paused = pipe.execute()
        return bool(tripped), bool(paused)

    def pause(self, at: datetime, by: str, reason: str) -> bool:
        """Pause repair fleet-wide; False when it already was."""
        if not self.client.hsetnx(PAUSED_KEY, "at", _epoch(at)):
            return False
        self.client.hset(PAUSED_KEY, mapping={"by": by, "reason": reason})
        return True


def held(state: HerdState, pause: Pause | None) -> str | None:
    """Why automatic repair is held fleet-wide, or None."""
    if pause is not None:
        return f"automatic repair paused by {pause.by} ({pause.reason})"
    if state.tripped:
        return f"the herd guard holds repairs: {state.reason}"
    return None


def record(message: str, actor: str, clock: Clock = SYSTEM_CLOCK) -> None:
    """A fleet Event (no server) of kind `herd`."""
    validate_actor(actor)
    with connection():
        Event.create(server=None, at=clock.now(), kind=EVENT_KIND, message=message, actor=actor)


def pause_repair(client: redis.Redis, actor: str, reason: str, clock: Clock = SYSTEM_CLOCK) -> str:
    """An operator pauses automatic repair fleet-wide (recorded); what was done."""
    validate_actor(actor)
    if not HerdStore(client).pause(clock.now(), actor, reason):
        return "automatic repair was already paused"
    message = f"automatic repair paused fleet-wide by {actor}: {reason}"
    record(message, actor, clock)
    return message


def resume_repair(client: redis.Redis, actor: str, clock: Clock = SYSTEM_CLOCK) -> str:
    """An operator clears the herd guard and any pause (recorded); what was done."""
    validate_actor(actor)
    tripped, paused = HerdStore(client).resume(clock.now(), actor)
    if not (tripped or paused):
        return "nothing to resume: the herd guard is clear and repair is not paused"
    done = [
        what
        for what, did in (("cleared the herd guard", tripped), ("lifted the pause", paused))
        if did
    ]
    message = (
        f"automatic repair resumed by {actor}: {' and '.join(done)}; servers that turned "
        "unhealthy before now no longer count toward the herd"
    )
    record(message, actor, clock)
    return message

"""A server's uptime over a window (30 days for the customer's dashboard), from its health Events.

Each health change is an Event (kind `health`, `to_status` the new state,
`core.domain.health`). Between two changes the state is the earlier one's;
before the first change of the window it is the last change before the
window; after the last change, until the end (now, or when the server
stopped being ready), the last one's.

The rule for each state:
- `healthy` and `degraded` count as up (the assistant answers its owner;
  degraded only needs attention);
- `unhealthy` counts as down;
- `unknown`, and any time before the first change, is not counted at all:
  nothing was heard (a server just ready, or not watched), which proves
  neither. An unrecognised state is treated as unknown.
Uptime is up time over counted time; with no counted time it is None (not
100 %, not 0 %), so a dashboard can say "not measured yet".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from core.domain.health import HealthState

#: The customer's dashboard shows uptime over the last 30 days.
WINDOW = timedelta(days=30)
UP_STATES = frozenset({HealthState.HEALTHY.value, HealthState.DEGRADED.value})
DOWN_STATES = frozenset({HealthState.UNHEALTHY.value})


@dataclass(frozen=True)
class Uptime:
    """Up and down time within a window.

    Attributes:
        up_seconds: time healthy or degraded.
        down_seconds: time unhealthy.
    """

    up_seconds: float
    down_seconds: float

    @property
    def counted_seconds(self) -> float:
        """Time in a known state (unknown time left out)."""
        return self.up_seconds + self.down_seconds

    @property
    def percent(self) -> float | None:
        """Up time as a percentage of counted time; None when nothing was counted."""
        if self.counted_seconds <= 0:
            return None
        return 100.0 * self.up_seconds / self.counted_seconds


def uptime(
    changes: Iterable[tuple[datetime, str]],
    *,
    end: datetime,
    window: timedelta = WINDOW,
) -> Uptime:
    """Up and down time in `[end - window, end]` from health changes `(at, new state)`.

    Args:
        changes: the server's health changes, in any order (changes at one
            instant: in the order they happened); those before the window
            matter only through the last of them (pass at least that one),
            those after `end` are ignored.
        end: the end of the window: now, or when the server stopped being ready.
        window: how far back from `end`.
    """
    start = end - window
    # By time only: changes at one instant keep their order (the Events' ids).
    ordered = sorted(((at, state) for at, state in changes if at <= end), key=lambda c: c[0])
    up = down = 0.0
    for index, (at, state) in enumerate(ordered):
        until = ordered[index + 1][0] if index + 1 < len(ordered) else end
        seconds = (min(until, end) - max(at, start)).total_seconds()
        if seconds <= 0:
            continue
        if state in UP_STATES:
            up += seconds
        elif state in DOWN_STATES:
            down += seconds
    return Uptime(up_seconds=up, down_seconds=down)

"""Fleet health: the state of a ready server's assistant, beside its provisioning status.

`HealthState` is what operators, owners and the customer's dashboard see. It
is decided by pure functions from the latest heartbeat (`core.domain.heartbeats`)
and, when heartbeats are missing, from an SSH probe; every change is an Event
(kind `health`) on the server's timeline.
"""

from __future__ import annotations

from enum import StrEnum


class HealthState(StrEnum):
    """A ready server's health.

    - `healthy`: the agent reports Rachel8 running and Telegram answering.
    - `degraded`: it runs, but something needs attention (restarted by systemd,
      disk or memory low, the agent silent while the service is up).
    - `unhealthy`: the assistant does not answer its owner (service down or
      crash-looping, VPS unreachable, token revoked, a webhook or a second
      poller stealing the updates).
    - `unknown`: nothing heard yet (a server that just became ready), or not watched.
    """

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"
    UNKNOWN = "unknown"


#: Every state, in the order views list them.
HEALTH_STATES = tuple(HealthState)

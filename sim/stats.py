"""Counters for benchmarks and tests: API calls per operation, per-server timings."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class ServerTimings:
    """Measured phase durations of one server, in seconds (None: not reached).

    Attributes:
        create: create request -> `running`.
        boot: `running` -> SSH answering.
        cloud_init: SSH answering -> callback answered 2xx (includes `callback`
            and the install).
        image: the type of image it was made from (`system`, `snapshot`).
        install: simulated seconds its install's work took (0: none to do, or
            none run; None: cloud-init has not got that far).
        callback: seconds the VPS spent in its callback requests, i.e. waiting
            for the control plane to answer (benchmarks count it as the control
            plane's time, not the cloud's).
    """

    name: str
    image: str = "system"
    install: float | None = None
    create: float | None = None
    boot: float | None = None
    cloud_init: float | None = None
    callback_attempts: int = 0
    callback: float | None = None
    deleted: bool = False


@dataclass
class Stats:
    """Everything counted since start or the last reset."""

    requests: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    rate_limited: int = 0
    servers: dict[int, ServerTimings] = field(default_factory=dict)

    def record(self, operation: str, status: int, code: str | None) -> None:
        """Count one API request and, for an error, its code."""
        self.requests[operation] += 1
        if code is not None:
            self.errors[f"{operation}:{code}"] += 1
        if status == 429:
            self.rate_limited += 1

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready stats."""
        return {
            "requests": dict(self.requests),
            "total_requests": sum(self.requests.values()),
            "errors": dict(self.errors),
            "rate_limited": self.rate_limited,
            "servers": {str(sid): asdict(t) for sid, t in self.servers.items()},
        }

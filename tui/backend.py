"""What the TUI reads and does, as plain blocking functions for worker threads.

No Textual here. `Operations` is how the TUI reaches the job queue and the
jobs' own rules: the composition root (`cli.tui`) fills it with `jobs.operator`,
`jobs.inspect`, `jobs.rollout_operator` and `jobs.pool` functions, so the TUI's
actions (and the pool's targets) are the CLI's, and `tui` never imports `jobs`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import peewee
import redis

from core.cloud.ratebudget import RateBudget, read_budget
from core.domain.fleet import (
    ProvisioningStats,
    fleet_rows,
    last_events,
    provisioning_stats,
    recent_provisioning_times,
    timeline,
)
from core.domain.heartbeats import HeartbeatStore
from core.domain.pool import PlaceStatus
from core.domain.pool_metrics import PoolSnapshot, collect_pool
from core.domain.releases import ReleaseRow
from core.errors import DatabaseError, RachelError, RedisUnavailable
from core.platform.clock import SYSTEM_CLOCK, Clock
from core.security.redaction import redact
from core.store.db import connection
from core.store.models import Server
from tui.cells import Row
from tui.pool_reads import PoolData, read_pool
from tui.rollout_reads import RolloutsData, read_rollouts


class QueueView(Protocol):
    """A queue as `jobs.inspect.QueueInfo` describes it."""

    @property
    def name(self) -> str: ...
    @property
    def queued(self) -> int: ...
    @property
    def started(self) -> int: ...
    @property
    def scheduled(self) -> int: ...
    @property
    def failed(self) -> int: ...


class WorkerView(Protocol):
    """A worker as `jobs.inspect.WorkerInfo` describes it."""

    @property
    def name(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def queues(self) -> tuple[str, ...]: ...
    @property
    def current_job(self) -> str | None: ...
    @property
    def last_heartbeat(self) -> datetime | None: ...
    @property
    def successful(self) -> int: ...
    @property
    def failed(self) -> int: ...
    @property
    def working_seconds(self) -> float: ...


class JobView(Protocol):
    """A job as `jobs.inspect.JobInfo` describes it (traceback already redacted)."""

    @property
    def id(self) -> str: ...
    @property
    def queue(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def server_id(self) -> int | None: ...
    @property
    def step(self) -> str | None: ...
    @property
    def enqueued_at(self) -> datetime | None: ...
    @property
    def ended_at(self) -> datetime | None: ...
    @property
    def traceback(self) -> str | None: ...
    @property
    def started_at(self) -> datetime | None: ...
    @property
    def worker(self) -> str | None: ...
    @property
    def result(self) -> str | None: ...


class CronView(Protocol):
    """A scheduled task as `jobs.inspect.CronInfo` describes it."""

    @property
    def task(self) -> str: ...
    @property
    def interval(self) -> int: ...
    @property
    def last_run(self) -> datetime | None: ...
    @property
    def next_run(self) -> datetime | None: ...
    @property
    def due(self) -> bool: ...
    @property
    def result(self) -> str: ...
    @property
    def errors(self) -> int: ...


@dataclass(frozen=True)
class Operations:
    """The job-queue side of the TUI, injected by the composition root.

    Each action returns the outcome's message or raises `RachelError` (a refusal).
    """

    retry: Callable[[int, str], str]
    reinject: Callable[[int, str], str]
    deprovision: Callable[[int, str, str], str]  # server id, actor, reason
    queues: Callable[[], Sequence[QueueView]]
    workers: Callable[[], Sequence[WorkerView]]
    failed_jobs: Callable[[], Sequence[JobView]]
    started_jobs: Callable[[], Sequence[JobView]]
    finished_jobs: Callable[[], Sequence[JobView]]
    cron_tasks: Callable[[datetime], Sequence[CronView]]  # now (naive UTC): which are due
    requeue: Callable[[str], JobView]
    server_jobs: Callable[[int, str | None], Sequence[JobView]]
    rollout_action: Callable[[str, str, str | None], str]  # action, actor, reason
    releases: Callable[[], Sequence[ReleaseRow]]  # newest first, the current one marked
    #: Each place of the pool at the clock's now (`jobs.pool.status`); None: the pool is off.
    pool_places: Callable[[Clock], Sequence[PlaceStatus] | None]
    #: The images not deleted, newest first, and the id new servers start from (`listing`).
    images: Callable[[], tuple[Sequence[Mapping[str, Any]], int | None]]
    #: One refill pass now (`jobs.pool.refill_now`): what it did; RachelError if one runs.
    pool_refill: Callable[[Clock], str]


@dataclass(frozen=True)
class Summary:
    """The summary bar's figures; None where its source could not be read.

    Servers per status are not here: the bar counts the rows the table shows.
    """

    stats: ProvisioningStats | None = None
    recent: list[float] = field(default_factory=list)
    queues: Sequence[QueueView] | None = None
    workers: int | None = None
    budget: RateBudget | None = None
    pool: PoolSnapshot | None = None


@dataclass(frozen=True)
class EventLine:
    """One line of a server's event log (message redacted)."""

    at: datetime
    kind: str
    actor: str
    message: str
    to_status: str | None


@dataclass(frozen=True)
class Heartbeat:
    """What the server screen shows of a server's heartbeats.

    Attributes:
        at: when the latest arrived (naive UTC); None: none, or unknown.
        known: False when Redis could not be read.
    """

    at: datetime | None
    known: bool = True


@dataclass(frozen=True)
class ServerDetail:
    """Everything the server screen shows."""

    row: Row
    failed_phase: str | None
    last_error: str | None
    events: list[EventLine]
    jobs: Sequence[JobView] | None  # None: Redis unreachable
    health_changed_at: datetime | None = None
    heartbeat: Heartbeat = Heartbeat(None, known=False)
    rachel8_commit: str | None = None  # the commit its row says it runs
    update_claim: str | None = None  # the rollout target updating it, if any


def classify(exc: BaseException) -> str | None:
    """Which connection an exception says is lost: "database", "redis" or None."""
    if isinstance(exc, redis.RedisError | RedisUnavailable):
        return "redis"
    if isinstance(exc, DatabaseError | peewee.PeeweeException):
        return "database"
    return None


@dataclass
class Backend:
    """Blocking reads and actions for the TUI's worker threads."""

    redis: redis.Redis
    operations: Operations
    sla_seconds: float
    actor: str
    clock: Clock = SYSTEM_CLOCK
    #: RACHEL_PRICES and RACHEL_SNAPSHOT_PRICE: the pool's idle cost, the images' storage.
    prices: Mapping[str, float] = field(default_factory=dict)
    snapshot_price: float = 0.0

    def now(self) -> datetime:
        return self.clock.now()

    def load_fleet(self, include_deleted: bool, limit: int | None = None) -> list[Row]:
        """Every server (deleted ones when asked) with its newest event; the `limit` newest."""
        with connection():
            servers = fleet_rows(include_deleted=include_deleted, clock=self.clock, limit=limit)
            events = last_events(None if limit is None else [s.id for s in servers])
        return [Row(s, events.get(s.id)) for s in servers]

    def load_rows(self, server_ids: list[int]) -> list[Row]:
        """Some servers (deleted included: the model decides what it shows)."""
        with connection():
            servers = fleet_rows(include_deleted=True, clock=self.clock, server_ids=server_ids)
            events = last_events(server_ids)
        return [Row(s, events.get(s.id)) for s in servers]

    def load_summary(self) -> tuple[Summary, list[str]]:
        """The summary figures, and which connections failed while reading them."""
        lost: list[str] = []
        stats = None
        recent: list[float] = []
        pool = None
        try:
            with connection():
                stats = provisioning_stats(self.sla_seconds, clock=self.clock)
                recent = recent_provisioning_times()
                pool = collect_pool(self.prices, self.snapshot_price)
        except (DatabaseError, peewee.PeeweeException):
            lost.append("database")
        queues = None
        workers = None
        budget = None
        try:
            self.redis.ping()
            queues = self.operations.queues()
            workers = len(self.operations.workers())
            budget = read_budget(self.redis)
        except redis.RedisError:
            lost.append("redis")
        return Summary(stats, recent, queues, workers, budget, pool), lost

    def load_server(self, server_id: int) -> ServerDetail | None:
        """The server screen's data; None when the server does not exist."""
        with connection():
            server = Server.get_or_none(Server.id == server_id)
            if server is None:
                return None
            rows = self.load_rows([server_id])
            events = [
                EventLine(e.at, e.kind, e.actor, redact(e.message), e.to_status)
                for e in timeline(server_id)
            ]
        try:
            jobs: Sequence[JobView] | None = self.operations.server_jobs(server_id, server.job_id)
        except redis.RedisError:
            jobs = None
        return ServerDetail(
            row=rows[0],
            failed_phase=server.failed_phase,
            last_error=redact(server.last_error) if server.last_error else None,
            events=events,
            jobs=jobs,
            health_changed_at=server.health_changed_at,
            heartbeat=self.last_heartbeat(server_id),
            rachel8_commit=server.rachel8_commit,
            update_claim=server.update_claim,
        )

    def load_rollouts(self) -> RolloutsData:
        """The rollouts screen's data: the newest rollout and its servers, recent ones, releases."""
        return read_rollouts(self.operations.releases())

    def load_pool(self) -> PoolData:
        """The pool screen's data: each place's target, the pool servers, the images, costs."""
        ops = self.operations
        return read_pool(
            ops.pool_places(self.clock), ops.images(), self.prices, self.snapshot_price
        )

    def run_pool_refill(self) -> str:
        """One refill pass, as `rachel-cloud pool refill` runs it; what it did.

        Raises:
            RachelError: another pass is running.
        """
        return self.operations.pool_refill(self.clock)

    def last_heartbeat(self, server_id: int) -> Heartbeat:
        """When the server's latest heartbeat arrived (from Redis)."""
        try:
            latest = HeartbeatStore(self.redis).latest([server_id]).get(server_id)
        except redis.RedisError:
            return Heartbeat(None, known=False)
        if latest is None:
            return Heartbeat(None)
        return Heartbeat(datetime.fromtimestamp(latest.received_at, UTC).replace(tzinfo=None))

    def run_action(self, action: str, server_id: int, reason: str = "") -> str:
        """Run one operator action on one server and return its outcome message.

        Raises:
            RachelError: the action was refused (its message says why).
            ValueError: unknown action.
        """
        ops = self.operations
        if action == "retry":
            return ops.retry(server_id, self.actor)
        if action == "reinject":
            return ops.reinject(server_id, self.actor)
        if action == "deprovision":
            return ops.deprovision(server_id, self.actor, reason or "forced deprovision from TUI")
        raise ValueError(f"unknown action {action!r}")

    def run_rollout_action(self, action: str, reason: str | None = None) -> str:
        """Pause, resume, abort or roll back the rollout, as the CLI does; the outcome's message.

        Raises:
            RachelError: the rollout's state refuses it (its message says why).
        """
        return self.operations.rollout_action(action, self.actor, reason)


def describe_error(exc: BaseException) -> str:
    """An error's message for a notification, redacted."""
    if isinstance(exc, RachelError):
        return redact(exc.message)
    return redact(f"{type(exc).__name__}: {exc}")

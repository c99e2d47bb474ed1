"""RQ's Redis layout and private worker state, in one place (rq 3.0, tested).

The sweeper, the reconciler and the worker's start-up read and change what
RQ keeps in Redis in ways RQ's public API does not offer. Everything that
knows RQ's key names, hash fields and registry scores is here, so an RQ
upgrade that changes them has one module to check, and
tests/unit/jobs/test_rq_internals.py, which drives real RQ objects against a
real Redis server, says what changed. What is relied on, and why:

- Job hashes (`Job.key_for(id)`, field `status`): the sweep reads the status
  of every candidate job each run; `Job.fetch_many` would load and decode
  each whole job (payload included) for one field. One pipelined HGET each.
- The started-job registry (a sorted set, `StartedJobRegistry(q).key`):
  members are `job_id:execution_id`, scores the UNIX time the execution
  expires. `get_job_and_execution_ids` drops the scores, and RQ has no way to
  expire one execution early: `add_execution` only sets now + ttl (or +inf),
  `cleanup(timestamp)` expires every entry before a time, dead or alive. So a
  dead worker's entries get a score in the past (ZADD XX, only if still there),
  then RQ's own `cleanup` retries them or fails them and frees their
  rate-limit slot.
- Execution hashes (`rq:execution:<job_id>:<execution_id>`, fields
  `worker_name` and `last_heartbeat` as a UNIX time): `Execution.fetch`
  raises on a hash that expired between the two reads; one HMGET does not.
- Worker hashes (`Worker.redis_worker_namespace_prefix + name`, fields
  `hostname`, `pid`, `last_heartbeat` in RQ's `utcformat`, `death` once
  dead): read with one HMGET, without `Worker.find_by_key`'s side effects.
- The scheduled-job registry (`ScheduledJobRegistry(q).key`, members are
  job ids): a delayed job is deleted only while it still waits there, in one
  Lua script; `ScheduledJobRegistry.remove(..., delete_job=True)` is not
  atomic against RQ's scheduler moving the job to its queue meanwhile.
- Scheduler locks (`RQScheduler.get_locking_key(q)`, holding the scheduler's
  name) and scheduler hashes (`SCHEDULER_KEY_TEMPLATE % name`, fields
  `hostname`, `pid`): RQ only lets a lock expire (61 s past its holder's last
  beat) and looks for it again every maintenance interval; freeing a dead
  holder's lock is a compare-and-delete of our own.
- `BaseWorker._state`: what `get_state()` returns. `set_state` always writes
  to Redis; a worker that skips a write that would change nothing still
  keeps its own view of its state current through this attribute.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import redis
from rq import Worker
from rq.executions import Execution
from rq.job import Job
from rq.registry import ScheduledJobRegistry, StartedJobRegistry
from rq.scheduler import SCHEDULER_KEY_TEMPLATE, RQScheduler
from rq.utils import parse_composite_key, utcparse


class RqInternalsChanged(RuntimeError):
    """The installed RQ no longer has an internal this module relies on."""


def text(value: object) -> str:
    """A Redis reply (bytes) as text."""
    return value.decode() if isinstance(value, bytes) else str(value)


def _optional_text(value: object) -> str | None:
    return text(value) if value is not None else None


# --- jobs ----------------------------------------------------------------------


def job_statuses(conn: redis.Redis, job_ids: Sequence[str]) -> list[str | None]:
    """The RQ status of each job (None when Redis no longer has it), in one round trip."""
    if not job_ids:
        return []
    pipe = conn.pipeline(transaction=False)
    for jid in job_ids:
        pipe.hget(Job.key_for(jid), "status")
    return [_optional_text(raw) for raw in pipe.execute()]


_DELETE_IF_SCHEDULED = """
if redis.call('zrem', KEYS[1], ARGV[1]) == 1 then
  redis.call('del', KEYS[2])
  return 1
end
return 0
"""


def delete_if_scheduled(conn: redis.Redis, queue_name: str, jid: str) -> bool:
    """Delete job `jid` if it still waits in `queue_name`'s scheduled registry (atomic).

    Returns:
        True when the job was still scheduled and is now gone.
    """
    registry = ScheduledJobRegistry.key_template.format(queue_name)
    return bool(conn.eval(_DELETE_IF_SCHEDULED, 2, registry, Job.key_for(jid), jid))


# --- started jobs ----------------------------------------------------------------


@dataclass(frozen=True)
class StartedEntry:
    """One execution in a queue's started-job registry, with what its hash says."""

    job_id: str
    composite_key: str  # the registry member: `job_id:execution_id`
    expires_at: float  # the registry score (UNIX time)
    worker_name: str  # "" when the execution hash is gone
    last_heartbeat: float | None  # the execution's, UNIX time


def started_entries(conn: redis.Redis, queue_name: str) -> list[StartedEntry]:
    """Every execution RQ lists as started on `queue_name`, without RQ's cleanup."""
    key = StartedJobRegistry(queue_name, connection=conn).key
    members: list[Any] = list(conn.zrange(key, 0, -1, withscores=True))
    entries = []
    for member, score in members:
        composite = text(member)
        job_id, execution_id = parse_composite_key(composite)
        execution_key = Execution(execution_id, job_id, connection=conn).key
        data: list[Any] = conn.hmget(execution_key, ["worker_name", "last_heartbeat"])
        entries.append(
            StartedEntry(
                job_id=job_id,
                composite_key=composite,
                expires_at=float(score),
                worker_name=text(data[0]) if data[0] is not None else "",
                last_heartbeat=float(text(data[1])) if data[1] is not None else None,
            )
        )
    return entries


def expire_started(
    conn: redis.Redis, queue_name: str, composite_keys: Iterable[str], now: float
) -> None:
    """Hand these executions to RQ's abandoned-job handling now.

    Each one still in the registry expires at `now - 1`; RQ's own cleanup then
    retries its job (if it has retries left) or fails it, and frees its
    rate-limit slot.
    """
    expired = dict.fromkeys(composite_keys, now - 1)
    if not expired:
        return
    registry = StartedJobRegistry(queue_name, connection=conn)
    conn.zadd(registry.key, expired, xx=True)
    registry.cleanup(timestamp=now)


# --- workers -------------------------------------------------------------------


def worker_key(name: str) -> str:
    """The Redis key of worker `name`'s registration hash."""
    return f"{Worker.redis_worker_namespace_prefix}{name}"


@dataclass(frozen=True)
class WorkerRecord:
    """What a worker's registration hash says about where it runs."""

    hostname: str | None
    pid: str | None
    last_heartbeat: float | None  # UNIX time; None when absent or unreadable


def worker_record(conn: redis.Redis, name: str) -> WorkerRecord | None:
    """Worker `name`'s registration, or None when its hash is gone."""
    raw: list[Any] = list(conn.hmget(worker_key(name), ["hostname", "pid", "last_heartbeat"]))
    hostname, pid, beat = (_optional_text(v) for v in raw)
    if hostname is None and pid is None and beat is None:
        return None
    heartbeat = None
    if beat:
        try:
            heartbeat = utcparse(beat).timestamp()
        except ValueError:
            heartbeat = None
    return WorkerRecord(hostname=hostname, pid=pid, last_heartbeat=heartbeat)


def worker_registered(conn: redis.Redis, name: str) -> bool:
    """True while worker `name`'s hash exists without a recorded death (RQ's own test)."""
    key = worker_key(name)
    return bool(conn.exists(key)) and not conn.hexists(key, "death")


class _WorkerState(Protocol):
    _state: str


def set_state_locally(worker: _WorkerState, state: str) -> None:
    """Make `worker.get_state()` return `state` without writing to Redis.

    Raises:
        RqInternalsChanged: RQ's worker no longer keeps its state in `_state`.
    """
    if not hasattr(worker, "_state"):
        raise RqInternalsChanged("RQ's worker has no `_state` attribute")
    worker._state = state


# --- scheduler locks -------------------------------------------------------------


@dataclass(frozen=True)
class SchedulerLock:
    """Who holds a queue's scheduler lock, and where its scheduler said it runs."""

    queue_name: str
    owner: str  # the holding scheduler's name, the lock's value
    hostname: str | None
    pid: str | None

    @property
    def on_this_host(self) -> bool:
        return self.hostname == socket.gethostname()


def scheduler_lock(conn: redis.Redis, queue_name: str) -> SchedulerLock | None:
    """The holder of `queue_name`'s scheduler lock, or None when nobody holds it."""
    owner = conn.get(RQScheduler.get_locking_key(queue_name))
    if owner is None:
        return None
    name = text(owner)
    raw: list[Any] = list(conn.hmget(SCHEDULER_KEY_TEMPLATE % name, ["hostname", "pid"]))
    return SchedulerLock(queue_name, name, _optional_text(raw[0]), _optional_text(raw[1]))


_DELETE_IF_OWNER = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
)


def release_scheduler_lock(conn: redis.Redis, lock: SchedulerLock) -> bool:
    """Free the lock only if the same owner still holds it (a live one may have just taken it)."""
    key = RQScheduler.get_locking_key(lock.queue_name)
    return bool(conn.eval(_DELETE_IF_OWNER, 1, key, lock.owner))

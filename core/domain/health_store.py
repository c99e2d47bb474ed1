"""What the health task and the repair jobs remember between runs, in Redis.

The database keeps each server's decided health and its incident's repairs;
this keeps the working state around them, read in bulk once per pass (one
round trip) and written only where something changed:

- `rc:health:memo` (hash): server id -> `"<seq> <restarts> <restarted>"` of the
  latest heartbeat judged (did systemd restart Rachel8 between two heartbeats?);
- `rc:health:findings` (hash): server id -> the latest SSH probe's verdict (JSON);
- `rc:health:acted` (hash): server id -> when its last repair step was done;
- `rc:health:busy:{id}`: a probe or repair of the server is queued or running
  (so a server never has two), expiring by itself should its job be lost;
- `rc:health:owner-told:{id}`: the owner was told "down" less than a cooldown ago.

Losing all of it (a Redis flushed) costs little: a restart count read as
unchanged once, a silent server probed once more, a repair done a pass early.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis

from core.domain.health import Finding, HealthState, Problem, Verdict

MEMO_KEY = "rc:health:memo"
FINDINGS_KEY = "rc:health:findings"
ACTED_KEY = "rc:health:acted"
BUSY_PREFIX = "rc:health:busy:"
OWNER_TOLD_PREFIX = "rc:health:owner-told:"
#: A probe or repair job longer than this is presumed lost (its marker expires).
BUSY_SECONDS = 600


def epoch(when: datetime) -> float:
    """Seconds since the epoch of a naive UTC datetime."""
    return when.replace(tzinfo=UTC).timestamp()


def from_epoch(seconds: float) -> datetime:
    """The naive UTC datetime of `seconds` since the epoch."""
    return datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class Memo:
    """The latest heartbeat the task judged: its sequence, Rachel8's restart count
    (-1: unknown), and whether the count had grown since the heartbeat before it."""

    seq: int
    restarts: int
    restarted: bool

    def encode(self) -> str:
        return f"{self.seq} {self.restarts} {int(self.restarted)}"

    @classmethod
    def decode(cls, raw: Any) -> Memo | None:
        text = raw.decode() if isinstance(raw, bytes) else str(raw)
        try:
            seq, restarts, restarted = text.split()
            return cls(int(seq), int(restarts), restarted == "1")
        except ValueError:
            return None


@dataclass(frozen=True)
class Recall:
    """Everything the task reads back per pass."""

    memos: Mapping[int, Memo]
    findings: Mapping[int, Finding]
    acted: Mapping[int, datetime]


def encode_finding(finding: Finding) -> str:
    verdict = finding.verdict
    return json.dumps(
        {
            "at": epoch(finding.at),
            "state": verdict.state.value,
            "problem": verdict.problem.value,
            "reason": verdict.reason,
            "repeats": finding.repeats,
        }
    )


def decode_finding(raw: Any) -> Finding | None:
    try:
        data = json.loads(raw)
        verdict = Verdict(HealthState(data["state"]), Problem(data["problem"]), str(data["reason"]))
        return Finding(verdict, from_epoch(float(data["at"])), int(data.get("repeats", 0)))
    except (ValueError, TypeError, KeyError):
        return None


def _ids(raw: Mapping[Any, Any]) -> dict[int, Any]:
    found = {}
    for key, value in raw.items():
        try:
            found[int(key)] = value
        except ValueError:
            continue
    return found


class HealthMemory:
    """The Redis edge of the health task's working state (see the module)."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def recall(self) -> Recall:
        """The memos, findings and repair times of every server (one round trip)."""
        with self.client.pipeline(transaction=False) as pipe:
            pipe.hgetall(MEMO_KEY)
            pipe.hgetall(FINDINGS_KEY)
            pipe.hgetall(ACTED_KEY)
            memos, findings, acted = pipe.execute()
        decoded_memos = {k: Memo.decode(v) for k, v in _ids(memos).items()}
        decoded_findings = {k: decode_finding(v) for k, v in _ids(findings).items()}
        return Recall(
            memos={k: v for k, v in decoded_memos.items() if v is not None},
            findings={k: v for k, v in decoded_findings.items() if v is not None},
            acted={k: from_epoch(float(v)) for k, v in _ids(acted).items()},
        )

    def save(
        self,
        memos: Mapping[int, Memo],
        *,
        stale_findings: Iterable[int] = (),
        forget: Iterable[int] = (),
    ) -> None:
        """Store new memos; drop findings older than a heartbeat, and all of `forget`."""
        gone = [str(i) for i in forget]
        stale = [str(i) for i in stale_findings]
        if not (memos or gone or stale):
            return
        with self.client.pipeline(transaction=False) as pipe:
            if memos:
                pipe.hset(MEMO_KEY, mapping={str(k): v.encode() for k, v in memos.items()})
            if stale or gone:
                pipe.hdel(FINDINGS_KEY, *stale, *gone)
            if gone:
                pipe.hdel(MEMO_KEY, *gone)
                pipe.hdel(ACTED_KEY, *gone)
            pipe.execute()

    def finding(self, server_id: int) -> Finding | None:
        raw = self.client.hget(FINDINGS_KEY, str(server_id))
        return None if raw is None else decode_finding(raw)

    def store_finding(self, server_id: int, finding: Finding) -> None:
        self.client.hset(FINDINGS_KEY, str(server_id), encode_finding(finding))

    def acted_at(self, server_id: int) -> datetime | None:
        raw = self.client.hget(ACTED_KEY, str(server_id))
        return None if raw is None else from_epoch(float(raw))

    def record_action(self, server_id: int, at: datetime) -> None:
        self.client.hset(ACTED_KEY, str(server_id), epoch(at))

    def restarts_reset(self, server_id: int) -> None:
        """Rachel8's restart count went back to 0 (our restart flushes it, and so does a
        boot): the next heartbeat's count is compared with 0, not with the series before,
        so that a crash since the restart reads as one (`restarts_grew`)."""
        key = str(server_id)
        memo = Memo.decode(raw) if (raw := self.client.hget(MEMO_KEY, key)) else None
        seq, restarted = (memo.seq, memo.restarted) if memo else (0, False)
        self.client.hset(MEMO_KEY, key, Memo(seq, 0, restarted).encode())

    def claim(self, server_id: int, what: str) -> bool:
        """Mark a probe or repair of the server as queued; False when one already is."""
        return bool(self.client.set(f"{BUSY_PREFIX}{server_id}", what, nx=True, ex=BUSY_SECONDS))

    def release(self, server_id: int) -> None:
        """The server's probe or repair is done (or was never queued)."""
        self.client.delete(f"{BUSY_PREFIX}{server_id}")

    def owner_told_recently(self, server_id: int, cooldown_seconds: float) -> bool:
        """Whether the owner was told "down" within the cooldown; if not, mark it now."""
        ttl = max(1, round(cooldown_seconds))
        return not self.client.set(f"{OWNER_TOLD_PREFIX}{server_id}", 1, nx=True, ex=ttl)

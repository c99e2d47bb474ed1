"""Heartbeats pushed by each VPS's agent: the wire format, the credential, the Redis store.

The agent (`core.cloud.vps_contract`, "The health agent") POSTs a `Heartbeat`
every RACHEL_HEARTBEAT_INTERVAL with a per-server credential. The credential
is issued by every injection (so a re-provisioned server gets a new one and
the old VPS's is void), stored hashed (SHA-256: it is 32 random bytes, so a
slow hash adds nothing) in the database and, for the hot path, in Redis with
the address it is bound to (the server's IPv4).

Heartbeats land in Redis, never in a database write each: one Lua script
checks the credential and the address, refuses a sequence not above the last
one (a replay), and keeps the latest body per server with its arrival time.
The health task (`core.domain.health`) reads them in bulk.

Redis keys (one deployment per Redis database):
- `rc:hb:auth:{id}`: `"<sha256 hex> <address>"`;
- `rc:hb:latest` (hash): server id -> the latest heartbeat's JSON body;
- `rc:hb:seq` (hash): server id -> its sequence;
- `rc:hb:seen` (sorted set): server id scored by its arrival (epoch seconds);
- `rc:hb:results` (hash): how many heartbeats got each `Recorded` answer (metrics).
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal

import hiredis
import msgspec
import redis
from redis.exceptions import NoScriptError

CREDENTIAL_BYTES = 32
#: A heartbeat is a few hundred bytes; anything much larger is refused (413).
MAX_HEARTBEAT_BYTES = 4096

AUTH_PREFIX = "rc:hb:auth:"
LATEST_KEY = "rc:hb:latest"
SEQUENCE_KEY = "rc:hb:seq"
SEEN_KEY = "rc:hb:seen"
RESULTS_KEY = "rc:hb:results"
#: The web app's route the agent posts to (`heartbeat_url`).
ROUTE = "/heartbeats"

_Count = Annotated[int, msgspec.Meta(ge=0, le=2**53)]
_Word = Annotated[str, msgspec.Meta(max_length=32)]
_Commit = Annotated[str, msgspec.Meta(pattern="^[0-9a-f]{40}$")]
_Seconds = Annotated[float, msgspec.Meta(ge=0, le=1e10)]


class ServiceReport(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """The Rachel8 unit as `systemctl show` told the agent (`SERVICE_PROPERTIES`)."""

    active: _Word
    sub: _Word
    restarts: _Count
    result: _Word
    exit_status: Annotated[int, msgspec.Meta(ge=-(2**31), le=2**31)]

    @property
    def running(self) -> bool:
        """Up, and not between two automatic restarts."""
        return self.active == "active" and self.sub == "running"


class TelegramReport(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """What only the box can see of Telegram.

    Attributes:
        get_me: whether the bot token still answers `getMe` (`GET_ME_ANSWERS`).
        webhook_set: a webhook is set on the bot (it stops long polling); None
            when it could not be asked.
        conflicts: 409 Conflict lines in Rachel8's journal since the last run, or
            since Rachel8 last started when that is earlier (another process polls
            the same bot; `core.cloud.vps_contract`).
    """

    get_me: Literal["ok", "unauthorized", "error", "unconfigured"]
    webhook_set: bool | None
    conflicts: _Count


class Heartbeat(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """One heartbeat, exactly as the agent sends it (unknown fields are refused)."""

    seq: Annotated[int, msgspec.Meta(ge=1, le=2**53)]
    sent_at: _Seconds
    agent: Annotated[str, msgspec.Meta(max_length=16)]
    service: ServiceReport | None
    commit: _Commit | None
    uptime_seconds: _Seconds
    disk_free_bytes: _Count
    disk_total_bytes: _Count
    memory_available_bytes: _Count
    memory_total_bytes: _Count
    telegram: TelegramReport


_DECODER = msgspec.json.Decoder(Heartbeat)
_ENCODER = msgspec.json.Encoder()


def decode(body: bytes) -> Heartbeat:
    """Parse and validate a heartbeat body.

    Raises:
        msgspec.ValidationError: a field is missing, unknown or out of range.
        msgspec.DecodeError: not JSON.
    """
    return _DECODER.decode(body)


def encode(heartbeat: Heartbeat) -> bytes:
    """The JSON body of `heartbeat` (what the agent sends)."""
    return _ENCODER.encode(heartbeat)


@dataclass(frozen=True)
class StoredHeartbeat:
    """A server's latest heartbeat and when it arrived (the control plane's clock)."""

    heartbeat: Heartbeat
    received_at: float


class Recorded(StrEnum):
    """What `record` did with a heartbeat."""

    OK = "ok"
    #: no credential registered for this id (unknown, deleted, or Redis lost it)
    UNKNOWN = "unknown"
    #: a wrong credential, or the right one from another address
    DENIED = "denied"
    #: a sequence not above the last one: a replay
    STALE = "stale"


def hash_credential(credential: str) -> str:
    """The stored form of a heartbeat credential."""
    return hashlib.sha256(credential.encode("utf-8")).hexdigest()


def new_credential() -> tuple[str, str]:
    """A fresh credential and its hash: the credential goes to the VPS, the hash to the row."""
    credential = secrets.token_urlsafe(CREDENTIAL_BYTES)
    return credential, hash_credential(credential)


def heartbeat_url(public_url: str, server_id: int) -> str:
    """Where `server_id`'s agent posts its heartbeats."""
    return f"{public_url.rstrip('/')}{ROUTE}/{server_id}"


def _auth_key(server_id: int) -> str:
    return f"{AUTH_PREFIX}{server_id}"


def register(client: redis.Redis, server_id: int, credential_hash: str, address: str) -> None:
    """Arm `server_id`'s credential for heartbeats from `address`; forget its old heartbeats.

    Called after the row with the new hash committed (the injection), and by
    the web app when Redis lost a registration the database still has.
    """
    with client.pipeline(transaction=True) as pipe:
        pipe.set(_auth_key(server_id), f"{credential_hash} {address}")
        pipe.hdel(LATEST_KEY, str(server_id))
        pipe.hdel(SEQUENCE_KEY, str(server_id))
        pipe.zrem(SEEN_KEY, str(server_id))
        pipe.execute()


def revoke(client: redis.Redis, server_id: int) -> None:
    """Void `server_id`'s credential and drop its heartbeats (deprovisioned, deleted)."""
    with client.pipeline(transaction=True) as pipe:
        pipe.delete(_auth_key(server_id))
        pipe.hdel(LATEST_KEY, str(server_id))
        pipe.hdel(SEQUENCE_KEY, str(server_id))
        pipe.zrem(SEEN_KEY, str(server_id))
        pipe.execute()


# One round trip per heartbeat: check, compare the sequence, store. Hashes of
# 32-byte random credentials are compared, so a timing difference reveals nothing.
_RECORD = """
local function answer(result)
  redis.call('HINCRBY', KEYS[5], result, 1)
  return result
end
local auth = redis.call('GET', KEYS[1])
if not auth then return answer('unknown') end
if auth ~= ARGV[2] .. ' ' .. ARGV[3] then return answer('denied') end
local last = redis.call('HGET', KEYS[3], ARGV[1])
if last and tonumber(ARGV[4]) <= tonumber(last) then return answer('stale') end
redis.call('HSET', KEYS[3], ARGV[1], ARGV[4])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[5])
redis.call('ZADD', KEYS[4], ARGV[6], ARGV[1])
return answer('ok')
"""


class _HeldConnection:
    """One connection of an asyncio client's pool, kept for `record_async` (the hot path).

    redis-py's per-command machinery (a pool checkout and check-in with their
    metrics hooks, the retry wrapper) cost more than the round trip itself: at
    333 heartbeats/s the same script on a held connection took about a tenth
    off the web process's CPU (bench/heartbeat.py, BENCHMARKS.md). Calls take
    turns (a round trip is well under a millisecond). NOSCRIPT (Redis restarted)
    or a broken connection: that call goes through the client's own path, which
    loads the script, reconnects and retries; the held connection, disconnected
    by redis-py on the error, connects again on its next use. The client's
    `aclose()` disconnects it with the rest of its pool.
    """

    def __init__(self, client: Any) -> None:
        self._client = client
        self._lock = asyncio.Lock()
        self._connection: Any = None

    async def run(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        """`script(keys=keys, args=args)`, on the held connection when it can."""
        async with self._lock:
            if self._connection is None:
                self._connection = await self._client.connection_pool.get_connection()
            connection = self._connection
            try:
                # hiredis packs the command in C, as redis-py would in Python (the same bytes).
                command = ("EVALSHA", script.sha, len(keys), *keys, *args)
                await connection.send_packed_command(hiredis.pack_command(command))
                return await connection.read_response()
            except (NoScriptError, redis.ConnectionError, redis.TimeoutError):
                pass
        return await script(keys=keys, args=args)


class HeartbeatStore:
    """The Redis edge of heartbeats, over an injected client (sync or asyncio).

    Args:
        client: a `redis.Redis` (jobs, CLI) or `redis.asyncio.Redis` (the web
            app); `record_async` needs the latter, and keeps one of its
            connections for itself.
    """

    def __init__(self, client: Any) -> None:
        self.client = client
        self._script = client.register_script(_RECORD)
        self._held: _HeldConnection | None = None

    def _args(
        self,
        server_id: int,
        credential: str,
        address: str,
        heartbeat: Heartbeat,
        *,
        body: bytes,
        now: float,
    ) -> tuple[list[str], list[Any]]:
        keys = [_auth_key(server_id), LATEST_KEY, SEQUENCE_KEY, SEEN_KEY, RESULTS_KEY]
        args = [
            str(server_id),
            hash_credential(credential),
            address,
            heartbeat.seq,
            body,
            now,
        ]
        return keys, args

    def record(
        self,
        server_id: int,
        credential: str,
        address: str,
        heartbeat: Heartbeat,
        *,
        body: bytes,
        now: float,
    ) -> Recorded:
        """Check and keep one heartbeat (`body` is its validated JSON) with a sync client."""
        keys, args = self._args(server_id, credential, address, heartbeat, body=body, now=now)
        return Recorded(_text(self._script(keys=keys, args=args)))

    async def record_async(
        self,
        server_id: int,
        credential: str,
        address: str,
        heartbeat: Heartbeat,
        *,
        body: bytes,
        now: float,
    ) -> Recorded:
        """`record` with an asyncio client (the web app's event loop), on a held connection."""
        keys, args = self._args(server_id, credential, address, heartbeat, body=body, now=now)
        if self._held is None:
            self._held = _HeldConnection(self.client)
        return Recorded(_text(await self._held.run(self._script, keys, args)))

    def results(self) -> dict[str, int]:
        """How many heartbeats got each answer since Redis started (a metrics counter)."""
        return {_text(k): int(v) for k, v in self.client.hgetall(RESULTS_KEY).items()}

    def seen(self) -> dict[int, float]:
        """Every server with a heartbeat, and when its latest arrived."""
        pairs = self.client.zrange(SEEN_KEY, 0, -1, withscores=True)
        return {int(member): float(score) for member, score in pairs}

    def latest(self, server_ids: Iterable[int]) -> dict[int, StoredHeartbeat]:
        """The latest heartbeat of each of `server_ids` that has one."""
        ids = [str(i) for i in server_ids]
        if not ids:
            return {}
        with self.client.pipeline(transaction=False) as pipe:
            pipe.hmget(LATEST_KEY, ids)
            pipe.zmscore(SEEN_KEY, ids)
            bodies, scores = pipe.execute()
        found: dict[int, StoredHeartbeat] = {}
        for key, body, score in zip(ids, bodies, scores, strict=True):
            if body is None or score is None:
                continue
            found[int(key)] = StoredHeartbeat(_DECODER.decode(body), float(score))
        return found

    def all_latest(self) -> dict[int, StoredHeartbeat]:
        """Every server's latest heartbeat (the health task's one read per pass)."""
        with self.client.pipeline(transaction=False) as pipe:
            pipe.hgetall(LATEST_KEY)
            pipe.zrange(SEEN_KEY, 0, -1, withscores=True)
            bodies, pairs = pipe.execute()
        arrived: Mapping[Any, float] = {member: score for member, score in pairs}
        found: dict[int, StoredHeartbeat] = {}
        for key, body in bodies.items():
            score = arrived.get(key)
            if score is not None:
                found[int(key)] = StoredHeartbeat(_DECODER.decode(body), float(score))
        return found


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)

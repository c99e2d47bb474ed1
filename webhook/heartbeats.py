"""The heartbeat endpoint: every VPS's agent pushes its state here (`core.domain.heartbeats`).

The web app's hot path (each ready server, every RACHEL_HEARTBEAT_INTERVAL:
333 requests/s at 10,000 servers), so it is async and does one Redis round
trip (the store's Lua `record`: credential, address, sequence, keep) and
nothing else: no database, no thread, no guard. Litestar decodes and
validates the body straight into the `Heartbeat` struct (unknown fields and
bad values: the app's usual 400), after the route's own size limit
(MAX_HEARTBEAT_BYTES: 413).

Only when Redis does not know the server (`Recorded.UNKNOWN`) is the
database asked, once: a server injecting its secrets or ready whose stored
credential hash and address match is registered again and the heartbeat
recorded, so a Redis that lost its keys heals itself within one interval.
"""

from __future__ import annotations

import hmac
import logging
import time
from typing import Annotated, Any

import redis
from litestar import Controller, MediaType, Request, Response, post
from litestar.concurrency import sync_to_thread
from litestar.params import Body, Parameter, RawBody

from core.domain import heartbeats
from core.domain.heartbeats import MAX_HEARTBEAT_BYTES, Heartbeat, Recorded
from core.domain.lifecycle import Status
from core.errors import RedisUnavailable
from core.store.db import connection
from core.store.models import Server
from webhook.context import WebContext, client_address
from webhook.errors import heartbeat_refused, responses
from webhook.guards import context_of
from webhook.structs import HeartbeatAccepted

log = logging.getLogger(__name__)

#: Statuses whose VPS runs an agent with the stored credential (armed by the injection).
ARMED = (Status.INJECTING_SECRETS.value, Status.READY.value)
#: Longer than any credential we issue (43 characters); longer ones are not hashed.
MAX_CREDENTIAL_CHARS = 128
#: The one success answer, encoded once.
ACCEPTED = b'{"accepted":true}'

ServerId = Annotated[int, Parameter(ge=1, le=2**31 - 1, description="The server's id.")]


class HeartbeatController(Controller):
    """Heartbeats pushed by each VPS's agent."""

    path = heartbeats.ROUTE
    tags = ["heartbeats"]  # noqa: RUF012 - Litestar's class attribute

    @post(
        "/{server_id:int}",
        status_code=202,
        summary="A VPS's heartbeat",
        description="Sent by the health agent every RACHEL_HEARTBEAT_INTERVAL with the "
        "server's heartbeat credential (`Authorization: Bearer ...`), from the server's own "
        "address. A missing or wrong credential, another address, an unknown or deleted "
        "server: the same 401. A sequence not above the last one: 409 `stale_sequence`.",
        security=[{"heartbeatCredential": []}],
        request_max_body_size=MAX_HEARTBEAT_BYTES,
        response_description='202 `{"accepted": true}`: the heartbeat is recorded.',
        responses=responses(400, 401, 404, 409, 413, 500, 503),
    )
    async def heartbeat(
        self,
        request: Request[Any, Any, Any],
        data: Annotated[
            Heartbeat,
            Body(description="What the agent saw (`core.cloud.vps_contract`); strict."),
        ],
        body: RawBody,
        server_id: ServerId,
    ) -> Response[HeartbeatAccepted]:
        """Record the heartbeat in Redis (202), or refuse it having recorded nothing."""
        credential = bearer(request.headers.get("authorization"))
        peer = request.client.host if request.client else None
        ctx = context_of(request)
        source = client_address(peer, request.headers.get("x-forwarded-for"), ctx.trusted_proxies)
        if credential is None or source is None:
            raise heartbeat_refused(Recorded.DENIED)
        result = await record(
            ctx, server_id=server_id, credential=credential, source=source, data=data, body=body
        )
        if result is not Recorded.OK:
            raise heartbeat_refused(result)
        return Response(ACCEPTED, status_code=202, media_type=MediaType.JSON)  # type: ignore[arg-type]


def bearer(header: str | None) -> str | None:
    """The credential of an `Authorization: Bearer ...` header; None when there is none."""
    if not header:
        return None
    scheme, _, credential = header.partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential or len(credential) > MAX_CREDENTIAL_CHARS:
        return None
    return credential


async def record(
    ctx: WebContext,
    *,
    server_id: int,
    credential: str,
    source: str,
    data: Heartbeat,
    body: bytes,
) -> Recorded:
    store = ctx.heartbeats()
    try:
        result = await store.record_async(
            server_id, credential, source, data, body=body, now=time.time()
        )
        if result is Recorded.UNKNOWN:
            digest = heartbeats.hash_credential(credential)
            if await sync_to_thread(rearm, ctx, server_id, digest, source):
                result = await store.record_async(
                    server_id, credential, source, data, body=body, now=time.time()
                )
    except redis.RedisError as exc:
        raise RedisUnavailable(f"Redis does not answer: {exc}") from exc
    return result


def rearm(ctx: WebContext, server_id: int, credential_hash: str, address: str) -> bool:
    """Register the server's credential again from the database, if it matches.

    Redis forgets registrations (flushed, failed over, restored from an old
    snapshot); the row keeps the hash. Only a server whose agent should be
    running (injecting its secrets, or ready), whose stored hash is the one
    presented and whose address is the sender's is registered.

    Returns:
        Whether it was registered (the heartbeat may be recorded again).

    Raises:
        DatabaseError: the database cannot be reached (503: the agent retries).
    """
    with connection():
        row = (
            Server.select(Server.status, Server.heartbeat_credential_hash, Server.ipv4)
            .where(Server.id == server_id)
            .first()
        )
    if (
        row is None
        or row.status not in ARMED
        or not row.heartbeat_credential_hash
        or not hmac.compare_digest(row.heartbeat_credential_hash, credential_hash)
        or row.ipv4 != address
    ):
        return False
    heartbeats.register(ctx.redis, server_id, row.heartbeat_credential_hash, row.ipv4)
    log.warning(
        "server %s: Redis had no heartbeat credential for it; registered it again from the "
        "database (was Redis flushed or restored?)",
        server_id,
        extra={"server_id": server_id},
    )
    return True

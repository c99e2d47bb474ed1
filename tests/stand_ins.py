"""Stand-ins for the health agent of each VPS and for the operators' webhook.

`Agents`: in tests of the health task and jobs.

It does what the agent and the web app's heartbeat route do between them: a
credential issued and registered as the injection registers it, and each
heartbeat recorded with the real `HeartbeatStore.record` (credential, address
and sequence checked in Redis). What a heartbeat says can be read off a
simulated VPS (`from_vps`), as the agent reads it from systemd.
"""

from __future__ import annotations

import itertools
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import msgspec
import redis

from core.cloud import vps_contract as vps
from core.domain import heartbeats
from core.domain.heartbeats import (
    Heartbeat,
    HeartbeatStore,
    Recorded,
    ServiceReport,
    TelegramReport,
)
from core.store.models import Server

COMMIT = "63f162e9302a66344772ab23653789f701c7bcf9"


def heartbeat(seq: int, **changes: Any) -> Heartbeat:
    """A heartbeat of a healthy VPS, with `changes`."""
    base = Heartbeat(
        seq=seq,
        sent_at=1_796_000_000.0,
        agent=vps.AGENT_VERSION,
        service=ServiceReport("active", "running", 0, "success", 0),
        commit=COMMIT,
        uptime_seconds=120.0,
        disk_free_bytes=10 << 30,
        disk_total_bytes=40 << 30,
        memory_available_bytes=1 << 30,
        memory_total_bytes=4 << 30,
        telegram=TelegramReport("ok", False, 0),
    )
    return msgspec.structs.replace(base, **changes)


def service_of(properties: dict[str, str]) -> ServiceReport:
    """A `ServiceReport` from `systemctl show` properties, as the agent builds it."""
    return ServiceReport(
        properties["ActiveState"],
        properties["SubState"],
        int(properties["NRestarts"] or 0),
        properties["Result"],
        int(properties["ExecMainStatus"] or 0),
    )


class Agents:
    """The agents of several servers: credentials, sequences, recorded heartbeats."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.store = HeartbeatStore(client)
        self.credentials: dict[int, tuple[str, str]] = {}
        self.seq = itertools.count(1)

    def enroll(self, server: Server) -> None:
        """Issue, store (hashed) and register a credential, as the injection does."""
        credential, digest = heartbeats.new_credential()
        Server.update(heartbeat_credential_hash=digest).where(Server.id == server.id).execute()
        address = server.ipv4 or "127.0.0.1"
        heartbeats.register(self.client, server.id, digest, address)
        self.credentials[server.id] = (credential, address)

    def beat(self, server_id: int, now: float, **changes: Any) -> Recorded:
        """Record one heartbeat of `server_id` arriving at `now` (epoch seconds)."""
        credential, address = self.credentials[server_id]
        sent = heartbeat(next(self.seq), **changes)
        return self.store.record(
            server_id, credential, address, sent, body=heartbeats.encode(sent), now=now
        )


class Receiver:
    """The operators' webhook: a loopback HTTP server keeping every JSON body POSTed."""

    def __init__(self, status: int = 204) -> None:
        self.status = status
        self.bodies: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                outer.bodies.append(json.loads(self.rfile.read(length)))
                self.send_response(outer.status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

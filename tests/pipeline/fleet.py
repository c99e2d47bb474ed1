"""A deployed fleet watched end to end, its faults injected through the simulator's admin API.

`Fleet` deploys servers through the real pipeline (the web app served, so the
VPSs call back and their agents POST real heartbeats to it), runs the health
task as the cron runs it (`jobs.health.check_health`, queued on the cron's
queue and run by a worker with the probes, repairs and notifications it
queues), and reads what happened the way an operator would: the server's
row and timeline, the simulator's admin API (`/_sim/vps`, `/_sim/stats`,
`/_sim/telegram/messages`) and the operators' webhook.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import redis

from core.domain.heartbeats import HeartbeatStore, StoredHeartbeat
from core.domain.lifecycle import Status
from core.store.models import Event, Server
from core.store.vault import reveal
from jobs import operator
from jobs.cron import CRON_QUEUE, JOB_TIMEOUT, RESULT_TTL
from jobs.queues import queue
from jobs.registry import JobFunction
from sim.rachel8_telegram import ONLINE
from sim.server import SimulatorServer
from sim.telegram import bot_id_of
from tests import factories
from tests.pipeline.harness import Stack, WebServer, served_stack
from tests.stand_ins import Receiver

#: Seconds between two health passes while a test watches (the cron's RACHEL_HEALTH_INTERVAL
#: is at least a second; the passes are only closer together here).
PASS_SECONDS = 0.2


@contextmanager
def watched(stack: Stack, receiver: Receiver) -> Iterator[Fleet]:
    """A `Fleet` on a served stack, the simulator's admin API beside it."""
    sim = stack.sim
    headers = {"Authorization": f"Bearer {sim.token}"}
    with httpx.Client(base_url=f"{sim.url}/_sim", headers=headers, timeout=10) as admin:
        yield Fleet(stack, receiver, admin)


@contextmanager
def served_fleet(
    tmp_path: Path,
    redis_client: redis.Redis,
    redis_url: str,
    sim: SimulatorServer,
    web: WebServer,
    receiver: Receiver,
    **env: str,
) -> Iterator[Fleet]:
    """A `Fleet` on a stack served for it: Rachel8 and the agent talk to the simulated
    Telegram, operators' alerts go to `receiver`, and `env` sets the rest."""
    with (
        served_stack(
            tmp_path,
            redis_client,
            redis_url,
            sim,
            web,
            RACHEL_TELEGRAM_API_URL=f"{sim.url}/telegram",
            RACHEL_OPERATOR_WEBHOOK_URL=receiver.url,
            **env,
        ) as stack,
        watched(stack, receiver) as fleet,
    ):
        yield fleet


@dataclass
class Fleet:
    """Servers deployed on a served stack, and the simulator's admin API beside them."""

    stack: Stack
    receiver: Receiver
    admin: httpx.Client

    # --- deploying and watching ----------------------------------------------------

    def deploy(self, n: int = 1) -> list[Server]:
        """`n` servers deployed, ready, heard from and judged healthy."""
        ids = []
        for _ in range(n):
            owner = factories.paying_customer(self.stack.ring)
            outcome = operator.deploy(
                self.stack.redis, self.stack.settings, owner.external_id, "operator:test"
            )
            ids.append(outcome.server_id)
        self.stack.drain(
            lambda: all(self.stack.status(i) == Status.READY for i in ids),
            timeout=90,
            what=f"{n} servers to be ready",
        )
        servers = [Server.get_by_id(i) for i in ids]
        self.watch(lambda: all(self.health(s)[0] == "healthy" for s in servers), "all healthy")
        return servers

    def cron(self) -> None:
        """One health pass, queued as the cron queues it, and every job it queued run."""
        queue(self.stack.redis, CRON_QUEUE).enqueue(
            JobFunction.CHECK_HEALTH.path, job_timeout=JOB_TIMEOUT, result_ttl=RESULT_TTL
        )
        self.stack.drain(lambda: True)

    def watch(self, until: Callable[[], bool], what: str, timeout: float = 40.0) -> None:
        """Health passes every `PASS_SECONDS` until `until()` holds."""
        deadline = time.monotonic() + timeout
        while True:
            self.cron()
            if until():
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(PASS_SECONDS)

    def heartbeat(self, server: Server) -> StoredHeartbeat | None:
        return HeartbeatStore(self.stack.redis).latest([server.id]).get(server.id)

    def fresh_heartbeat(self, server: Server, timeout: float = 20.0) -> StoredHeartbeat:
        """Wait for the next heartbeat of `server` to arrive (no health pass meanwhile)."""
        before = self.heartbeat(server)
        seq = before.heartbeat.seq if before is not None else -1
        deadline = time.monotonic() + timeout
        while True:
            found = self.heartbeat(server)
            if found is not None and found.heartbeat.seq > seq:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"no new heartbeat from server {server.id}")
            time.sleep(0.005)

    def wait_silent(self, servers: list[Server], missing: float, timeout: float = 20.0) -> None:
        """Wait (no health pass meanwhile) until none of `servers` was heard from for
        `missing` seconds."""
        deadline = time.monotonic() + timeout

        def silent(server: Server) -> bool:
            latest = self.heartbeat(server)
            return latest is None or time.time() - latest.received_at > missing + 0.1

        while not all(silent(s) for s in servers):
            if time.monotonic() > deadline:
                raise AssertionError("the servers kept heartbeating")
            time.sleep(0.02)

    def heartbeats(self, server: Server, count: int, timeout: float = 20.0) -> None:
        """Health passes until `count` more heartbeats of `server` were seen."""
        start = self.heartbeat(server)
        first = start.heartbeat.seq if start is not None else -1
        seen: set[int] = set()

        def arrived() -> bool:
            latest = self.heartbeat(server)
            if latest is not None and latest.heartbeat.seq > first:
                seen.add(latest.heartbeat.seq)
            return len(seen) >= count

        self.watch(arrived, f"{count} more heartbeats of server {server.id}", timeout)

    # --- what the control plane recorded --------------------------------------------

    def health(self, server: Server) -> tuple[str, str | None]:
        row = Server.get_by_id(server.id)
        return row.health, row.health_reason

    def row(self, server: Server) -> Server:
        found: Server = Server.get_by_id(server.id)
        return found

    def events(self, server: Server, kind: str) -> list[str]:
        query = Event.select().where((Event.server == server.id) & (Event.kind == kind))
        return [e.message for e in query.order_by(Event.id)]

    def timeline(self, server: Server) -> list[str]:
        """The health states the server went through, oldest first."""
        query = Event.select().where((Event.server == server.id) & (Event.kind == "health"))
        return [str(e.to_status) for e in query.order_by(Event.id)]

    def fleet_events(self, kind: str) -> list[str]:
        query = Event.select().where(Event.server.is_null() & (Event.kind == kind))
        return [e.message for e in query.order_by(Event.id)]

    def alerts(self, server: Server | None = None) -> list[str]:
        """What the operators' webhook received (about `server`, or fleet-wide)."""
        wanted = server.id if server is not None else None
        return [b["what"] for b in list(self.receiver.bodies) if b["server_id"] == wanted]

    # --- what the simulator saw -----------------------------------------------------

    def fault(self, fault: str, *servers: Server, **target: object) -> list[str]:
        """Aim `fault` at `servers` (by name), or at a `share=` of the fleet."""
        body: dict[str, object] = {"fault": fault, **target}
        if servers:
            body["servers"] = [s.name for s in servers]
        answer = self.admin.post("/vps/faults", json=body)
        assert answer.status_code == 200, answer.text
        applied: list[str] = answer.json()["applied"]
        return applied

    def clear(self, fault: str | None, *servers: Server) -> list[str]:
        body = {"fault": fault, "servers": [s.name for s in servers] if servers else None}
        answer = self.admin.request("DELETE", "/vps/faults", json=body)
        assert answer.status_code == 200, answer.text
        cleared: list[str] = answer.json()["cleared"]
        return cleared

    def box(self, server: Server) -> dict[str, Any]:
        """`GET /_sim/vps`'s view of the server's VPS."""
        answer = self.admin.get("/vps")
        answer.raise_for_status()
        (found,) = [v for v in answer.json()["vps"] if v["name"] == self.row(server).name]
        return dict(found)

    def ssh_connections(self, *servers: Server) -> list[int]:
        return [int(self.box(s)["ssh_connections"]) for s in servers]

    def hetzner_calls(self, operation: str) -> int:
        answer = self.admin.get("/stats")
        answer.raise_for_status()
        return int(answer.json()["requests"].get(operation, 0))

    def token(self, server: Server) -> str:
        token = reveal(self.stack.ring, self.row(server).customer, "telegram_bot_token")
        assert token is not None
        return token

    def telegram(self, server: Server, method: str, **params: str) -> dict[str, Any]:
        """A Bot API call with the server's bot token, on the simulated Telegram."""
        url = f"{self.stack.settings.telegram_api_url}/bot{self.token(server)}/{method}"
        answer: dict[str, Any] = httpx.post(url, data=params, timeout=10).json()
        return answer

    def _sent_to_owner(self, server: Server) -> list[str]:
        """Every text the owner got from the server's bot, oldest first."""
        owner = self.row(server).customer
        answer = self.admin.get(
            "/telegram/messages", params={"chat_id": str(owner.owner_telegram_user_id)}
        )
        answer.raise_for_status()
        bot = bot_id_of(self.token(server))
        return [m["text"] for m in answer.json()["messages"] if m["bot_id"] == bot]

    def owner_messages(self, server: Server) -> list[str]:
        """What we told the owner: all from their bot but Rachel8's own "I'm back online!"."""
        return [text for text in self._sent_to_owner(server) if text != ONLINE]

    def greetings(self, server: Server) -> int:
        """How many times Rachel8 started far enough to greet its owner."""
        return self._sent_to_owner(server).count(ONLINE)

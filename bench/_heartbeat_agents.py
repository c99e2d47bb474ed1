"""The fleet's agents for `bench/heartbeat.py`: every server's heartbeat, from its own address.

    python bench/_heartbeat_agents.py --fleet FLEET.json --port 8000 --period 30 \
        --start-at MONOTONIC --warmup 20 --duration 60

Run in a process of its own (its CPU is the load's, not the product's). The
fleet file lists each server's id, loopback address and credential. Server i
of N sends at `start + i * period / N + k * period`, uniformly spread over the
period (N / period heartbeats a second), the way the real agent does
(`core/cloud/vps_scripts/agent.py`, a oneshot process): a new TCP connection
from the server's own address, urllib's request with `Connection: close`, a
JSON body (`json.dumps` of a `Heartbeat`) whose sequence is the time in
milliseconds. It prints one JSON object: answers by status, errors by kind,
the latency (connect to answer read) of the heartbeats scheduled in the
window, and how late it sent them. With `--proxy N` the heartbeats reach the
web app as through a reverse proxy (TLS terminated there): over kept-alive
connections from 127.0.0.1, each agent's address in X-Forwarded-For.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import _common as c
from _http import exchange

c.ensure_repo_on_path()

import msgspec  # noqa: E402
import uvloop  # noqa: E402

from core.cloud import vps_contract as vps  # noqa: E402
from core.domain.heartbeats import Heartbeat, ServiceReport, TelegramReport  # noqa: E402

#: The Rachel8 commit every seeded server runs and reports (so a health pass sees no drift).
COMMIT = "63f162e9302a66344772ab23653789f701c7bcf9"
#: How long the seeded servers have been up when the run starts.
UPTIME_AT_START = 86_400.0


def heartbeat_of(seq: int, uptime: float) -> Heartbeat:
    """A healthy server's heartbeat, as the agent reports it."""
    return Heartbeat(
        seq=seq,
        sent_at=time.time(),
        agent=vps.AGENT_VERSION,
        service=ServiceReport("active", "running", 0, "success", 0),
        commit=COMMIT,
        uptime_seconds=uptime,
        disk_free_bytes=31_457_280_000,
        disk_total_bytes=40_231_960_576,
        memory_available_bytes=2_812_420_096,
        memory_total_bytes=4_005_834_752,
        telegram=TelegramReport("ok", False, 0),
    )


def agent_body(heartbeat: Heartbeat) -> bytes:
    """The body exactly as the agent writes it (`json.dumps`, its spacing)."""
    return json.dumps(msgspec.to_builtins(heartbeat)).encode()


def request_of(
    port: int, server_id: int, credential: str, body: bytes, forwarded_for: str | None = None
) -> bytes:
    """urllib's POST (what `urllib.request.urlopen(Request(url, body, headers))` sends).

    With `forwarded_for`, as a reverse proxy passes it on: the agent's address
    in X-Forwarded-For, on a connection it keeps alive.
    """
    last = f"X-Forwarded-For: {forwarded_for}" if forwarded_for else "Connection: close"
    return (
        f"POST /heartbeats/{server_id} HTTP/1.1\r\nAccept-Encoding: identity\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        f"Host: 127.0.0.1:{port}\r\nUser-Agent: Python-urllib/3.11\r\n"
        f"Authorization: Bearer {credential}\r\n{last}\r\n\r\n"
    ).encode() + body


class Agents:
    """The fleet's heartbeats over one run, and what they were answered."""

    def __init__(self, fleet: list[dict[str, Any]], args: argparse.Namespace) -> None:
        self.fleet = fleet
        self.port = args.port
        self.timeout = args.timeout
        self.start = args.start_at
        self.window = (args.start_at + args.warmup, args.start_at + args.warmup + args.duration)
        self.interval = args.period / len(fleet)
        self.statuses: Counter[int] = Counter()
        self.errors: Counter[str] = Counter()
        self.window_statuses: Counter[int] = Counter()
        self.window_errors: Counter[str] = Counter()
        self.latencies: list[float] = []
        self.lags: list[float] = []
        self.refusals: list[str] = []
        #: A reverse proxy's kept-alive connections (at most `proxy` idle), or 0: none.
        self.proxy = args.proxy
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.resent = 0

    async def run(self) -> None:
        """Send every heartbeat due before the window ends, then wait for their answers."""
        tasks: set[asyncio.Task[None]] = set()
        k = 0
        while (due := self.start + k * self.interval) < self.window[1]:
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(self.one(self.fleet[k % len(self.fleet)], due))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            k += 1
        if tasks:
            await asyncio.wait(tasks)

    async def one(self, server: dict[str, Any], due: float) -> None:
        """One agent run: connect from the server's address, POST, read the answer, close."""
        began = time.monotonic()
        counted = self.window[0] <= due < self.window[1]
        if counted:
            self.lags.append(began - due)
        body = agent_body(
            heartbeat_of(int(time.time() * 1000), UPTIME_AT_START + began - self.start)
        )
        forwarded = server["address"] if self.proxy else None
        request = request_of(self.port, server["id"], server["credential"], body, forwarded)
        try:
            async with asyncio.timeout(self.timeout):
                status, answer = await self.send(server["address"], request)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
            kind = type(exc).__name__
            self.errors[kind] += 1
            if counted:
                self.window_errors[kind] += 1
            return
        took = time.monotonic() - began
        self.statuses[status] += 1
        if status != 202 and len(self.refusals) < 5:
            self.refusals.append(f"{server['id']}: {status} {answer[:200]!r}")
        if counted:
            self.window_statuses[status] += 1
            self.latencies.append(took)

    async def send(self, address: str, request: bytes) -> tuple[int, bytes]:
        """The agent's own connection from `address`, or one of the proxy's kept-alive ones."""
        if not self.proxy:
            reader, writer = await asyncio.open_connection(
                "127.0.0.1", self.port, local_addr=(address, 0)
            )
            try:
                return await exchange(reader, writer, request)
            finally:
                writer.close()
        reused = bool(self.idle)
        if reused:
            reader, writer = self.idle.pop()
        else:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            answer = await exchange(reader, writer, request)
        except (ConnectionError, asyncio.IncompleteReadError):
            writer.close()
            if not reused:
                raise
            # The server closed it while idle (uvicorn's keep-alive timeout): as a
            # proxy does, send again on a new connection.
            self.resent += 1
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            answer = await exchange(reader, writer, request)
        except BaseException:
            writer.close()
            raise
        if len(self.idle) < self.proxy:
            self.idle.append((reader, writer))
        else:
            writer.close()
        return answer

    def figures(self) -> dict[str, Any]:
        sent = sum(self.window_statuses.values()) + sum(self.window_errors.values())
        return {
            "window_heartbeats": sent,
            "window_rate": sent / (self.window[1] - self.window[0]),
            "window_statuses": dict(self.window_statuses),
            "window_errors": dict(self.window_errors),
            "all_statuses": dict(self.statuses),
            "all_errors": dict(self.errors),
            "refusals": self.refusals,
            "latency": c.summary(self.latencies),
            "send_lag": c.summary(self.lags),
            "proxy_resent": self.resent,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fleet", type=Path, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--period", type=float, default=30.0)
    parser.add_argument("--start-at", type=float, required=True, help="time.monotonic() value")
    parser.add_argument("--warmup", type=float, required=True)
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--timeout", type=float, default=10.0, help="the agent's (urlopen's)")
    parser.add_argument(
        "--proxy",
        type=int,
        default=0,
        help="send as a reverse proxy would: over at most N kept-alive connections from "
        "127.0.0.1, the agent's address in X-Forwarded-For (0: each agent connects itself)",
    )
    args = parser.parse_args()
    agents = Agents(json.loads(args.fleet.read_text()), args)
    own = time.process_time()
    uvloop.run(agents.run())
    figures = agents.figures()
    figures["cpu_seconds"] = time.process_time() - own
    print(json.dumps(figures))


if __name__ == "__main__":
    main()

"""A lean HTTP/1.1 load generator: pre-built requests over keep-alive connections.

The benchmarks run their load on the same two cores as the stack they
measure, so the client must cost little: httpx took ~7 ms of CPU per deploy
in bench/provision.py (signing, its request machinery and the answer's
parsing), 13% of the machine at 35 deploys/s. Here a request is bytes built
up front and an answer is its status line, a content-length and the body.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass


def signed_request(port: int, path: str, secret: str, body: bytes) -> bytes:
    """A complete signed POST of a JSON body (Standard Webhooks headers)."""
    # Imported here: scripts import this module before `_common` puts the repo on the path.
    from core.security.signing import sign  # noqa: PLC0415

    head = "".join(f"{k}: {v}\r\n" for k, v in sign(secret, body).items())
    return (
        f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n{head}\r\n"
    ).encode() + body


async def exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, bytes]:
    """Send one request on a keep-alive connection; (status, body) of its answer."""
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    return status, await reader.readexactly(length)


@dataclass(frozen=True)
class Answer:
    """One request's outcome: when it was (last) sent, how long it took, the answer."""

    sent: float  # wall clock (time.time())
    took: float
    status: int
    body: bytes


async def send_all(
    port: int, requests: list[bytes], concurrency: int, rate: float = 0
) -> tuple[list[Answer], int]:
    """Send every request, `concurrency` at a time; the answers in order, and resends.

    With `rate` (per second), request i goes out no earlier than i / rate
    seconds in. A connection the server closes is opened again and the
    request sent again (a webhook sender retries; the same webhook-id makes
    that a replay, answered as before).
    """
    answers: list[Answer | None] = [None] * len(requests)
    order = iter(range(len(requests)))
    start = time.monotonic()
    resent = 0

    async def connection_loop() -> None:
        nonlocal resent
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for i in order:
                if rate:
                    await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
                for attempt in range(3):
                    sent = time.time()
                    try:
                        status, body = await exchange(reader, writer, requests[i])
                        break
                    except (ConnectionError, asyncio.IncompleteReadError):
                        if attempt == 2:
                            raise
                        resent += 1
                        writer.close()
                        reader, writer = await asyncio.open_connection("127.0.0.1", port)
                answers[i] = Answer(sent, time.time() - sent, status, body)
        finally:
            writer.close()

    await asyncio.gather(*(connection_loop() for _ in range(min(concurrency, len(requests)))))
    return [a for a in answers if a is not None], resent

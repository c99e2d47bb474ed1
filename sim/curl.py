"""The HTTP requests a simulated VPS makes: its bootstrap's `curl` POST and its agent's calls.

The bootstrap script (`core.cloud.cloudinit`) runs `curl -X POST` with a JSON body
and a bearer token, once per attempt, on a fresh connection, and looks at the
status code only; the health agent (`sim.agent`) asks Telegram (GET, reading
the JSON answer) and POSTs its heartbeat. This does the same on asyncio
streams, one connection per request, from the VPS's own address. It
replaced an httpx client per VPS, which cost a fifth of the simulator's CPU
(anyio cancel scopes, httpcore's pool, h11) for one request, on the event
loop that also serves the API and every VPS's SSH, and so slowed what it
simulates (bench/provision.py, py-spy).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from urllib.parse import urlsplit

#: An answer's head larger than this is refused (curl's own limit is larger; ours are tiny).
MAX_HEAD_BYTES = 64 * 1024
#: An answer's body larger than this is refused (the agent reads small JSON answers).
MAX_BODY_BYTES = 1024 * 1024


class CurlError(Exception):
    """The request got no HTTP answer (connection, TLS, timeout, malformed reply)."""


async def post_json(
    url: str,
    body: bytes,
    *,
    headers: dict[str, str],
    local_address: str,
    timeout: float,
    ssl_context: ssl.SSLContext,
) -> int:
    """POST `body` (JSON) to `url` on a new connection and return the status code.

    Raises:
        CurlError: no HTTP answer (what curl reports as code 000).
    """
    status, _ = await request(
        "POST",
        url,
        body,
        headers={"Content-Type": "application/json", **headers},
        local_address=local_address,
        timeout=timeout,
        ssl_context=ssl_context,
    )
    return status


async def request(
    method: str,
    url: str,
    body: bytes = b"",
    *,
    headers: dict[str, str],
    local_address: str,
    timeout: float,
    ssl_context: ssl.SSLContext,
) -> tuple[int, bytes]:
    """One HTTP/1.1 request on a new connection from `local_address`: (status, body).

    Raises:
        CurlError: no HTTP answer (connection, TLS, timeout, malformed reply), or
            an answer larger than `MAX_BODY_BYTES`.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CurlError(f"unsupported URL {url!r}")
    secure = parts.scheme == "https"
    port = parts.port or (443 if secure else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host_header = parts.netloc.rsplit("@", 1)[-1]
    lines = [
        f"{method} {target} HTTP/1.1",
        f"Host: {host_header}",
        "User-Agent: curl/8.5.0",
        "Accept: */*",
        *([f"Content-Length: {len(body)}"] if body or method == "POST" else []),
        "Connection: close",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(
                parts.hostname,
                port,
                ssl=ssl_context if secure else None,
                server_hostname=parts.hostname if secure else None,
                local_addr=(local_address, 0),
                limit=MAX_HEAD_BYTES,
            )
            try:
                writer.write(head + body)
                await writer.drain()
                return await _answer(reader)
            finally:
                writer.close()
                with contextlib.suppress(OSError, ssl.SSLError):
                    await writer.wait_closed()
    except TimeoutError as exc:
        raise CurlError(f"timed out after {timeout}s") from exc
    except (OSError, ssl.SSLError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
        raise CurlError(f"{type(exc).__name__}: {exc}") from exc


async def _answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    status = _status(await reader.readline())
    length = None
    while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        if name.strip().lower() == "content-length" and value.strip().isdigit():
            length = int(value.strip())
    if length is not None:
        if length > MAX_BODY_BYTES:
            raise CurlError(f"answer of {length} bytes, more than {MAX_BODY_BYTES}")
        return status, await reader.readexactly(length)
    chunks, size = [], 0
    while chunk := await reader.read(65536):
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise CurlError(f"answer larger than {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return status, b"".join(chunks)


def _status(line: bytes) -> int:
    version, _, rest = line.decode("latin-1").partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/") or not code.isdigit():
        raise CurlError(f"not an HTTP answer: {line[:80]!r}")
    return int(code)

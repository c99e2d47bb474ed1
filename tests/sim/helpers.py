"""Test helpers: SSH keys, a real HTTP callback receiver, polling."""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519


@dataclass
class KeyPair:
    """An ed25519 key pair: paramiko's private key and the OpenSSH public line."""

    private: paramiko.PKey
    public: str


def key_pair() -> KeyPair:
    """A fresh ed25519 key pair."""
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return KeyPair(paramiko.Ed25519Key.from_private_key(io.StringIO(pem)), public.decode())


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll until `predicate()` is truthy; return its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


@dataclass
class Call:
    """One callback the receiver got."""

    path: str
    client_ip: str
    authorization: str | None
    body: dict[str, Any]
    content_type: str | None = None


@dataclass
class CallbackReceiver:
    """A real HTTP server standing in for the control plane's callback endpoint.

    Attributes:
        fail_first: answer 500 to this many calls before answering `status`.
        status: the answer after those (200; a heartbeat endpoint answers 202).
    """

    fail_first: int = 0
    status: int = 200
    calls: list[Call] = field(default_factory=list)

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                receiver.calls.append(
                    Call(
                        self.path,
                        self.client_address[0],
                        self.headers.get("Authorization"),
                        body,
                        self.headers.get("Content-Type"),
                    )
                )
                status = 500 if len(receiver.calls) <= receiver.fail_first else receiver.status
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        """A URL on this receiver."""
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self) -> None:
        """Stop serving."""
        self.httpd.shutdown()
        self.httpd.server_close()


def user_data(
    *,
    callback_url: str | None = None,
    token: str = "one-time-token",
    root_keys: list[str] = (),  # type: ignore[assignment]
    top_level_keys: list[str] = (),  # type: ignore[assignment]
) -> str:
    """A cloud-config like the control plane's: the Rachel8 unit and the bootstrap env."""
    lines = ["#cloud-config", "users:", "  - name: root", "    ssh_authorized_keys:"]
    lines += [f"      - {k}" for k in root_keys] or ["      []"]
    if top_level_keys:
        lines += ["ssh_authorized_keys:"] + [f"  - {k}" for k in top_level_keys]
    lines += [
        "write_files:",
        "  - path: /etc/systemd/system/rachel8.service",
        "    permissions: '0644'",
        "    content: |",
        "      [Service]",
        "      EnvironmentFile=/etc/rachel8/secrets.env",
        "      EnvironmentFile=-/etc/rachel8/optional.env",
        "      ExecStart=/usr/local/bin/rachel8",
    ]
    if callback_url:
        lines += [
            "  - path: /etc/rachel-cloud/bootstrap.env",
            "    permissions: '0600'",
            "    content: |",
            f"      RACHEL_CALLBACK_URL={callback_url}",
            f"      RACHEL_CALLBACK_TOKEN={token}",
        ]
    lines += ["runcmd:", "  - [/usr/local/sbin/rachel-cloud-bootstrap]"]
    return "\n".join(lines) + "\n"

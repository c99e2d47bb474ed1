"""What a job needs, built once per worker process: settings, keys, Redis, Hetzner.

Jobs receive a server id only and reach everything else through `context()`.
A forked work horse inherits its parent's context (the database connection is
reset after the fork by `core.store.db`); tests install their own with `use_context`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from functools import partial

import redis

from core.cloud.hetzner import HetznerAdapter
from core.domain.events import publish, redis_publisher
from core.domain.lifecycle import Publisher, set_event_publisher
from core.platform.clock import SYSTEM_CLOCK, Clock
from core.platform.redis import configured_url, connect
from core.platform.settings import Settings
from core.security.crypto import KeyRing
from core.store.vault import load_keyring


@dataclass
class JobContext:
    """Shared, long-lived collaborators of the job functions."""

    settings: Settings
    keyring: KeyRing
    redis: redis.Redis
    clock: Clock = SYSTEM_CLOCK
    _hetzner: HetznerAdapter | None = field(default=None, repr=False)

    @property
    def hetzner(self) -> HetznerAdapter:
        if self._hetzner is None:
            self._hetzner = HetznerAdapter.connect(
                self.settings.effective_hcloud_endpoint,
                self.settings.effective_hcloud_token,
                env=self.settings.name_prefix,
                redis_client=self.redis,
            )
        return self._hetzner

    @property
    def publish(self) -> Publisher:
        return redis_publisher(self.redis)


_context: JobContext | None = None
_lock = threading.Lock()


def _install(ctx: JobContext | None) -> None:
    global _context  # noqa: PLW0603 - the per-process job context
    _context = ctx
    set_event_publisher(None if ctx is None else partial(publish, ctx.redis))


def use_context(ctx: JobContext | None) -> None:
    """Install the context jobs in this process use (None to reset)."""
    with _lock:
        _install(ctx)


def context() -> JobContext:
    """The process's job context, built from the environment on first use."""
    with _lock:
        if _context is None:
            settings = Settings.load()
            _install(
                JobContext(
                    settings=settings,
                    keyring=load_keyring(settings),
                    redis=connect(configured_url(settings)),
                )
            )
        assert _context is not None
        return _context

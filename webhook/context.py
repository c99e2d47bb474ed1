"""What the web app's handlers share: settings, key ring, verifier, API keys, Redis, jobs.

Built once per process (`WebContext.build`) and injected into handlers as the
`ctx` dependency. The synchronous Redis client serves code running in worker
threads (enqueueing, publishing); the asyncio client, created on start-up in
the server's event loop, serves the heartbeats, the health checks and metrics; the SSE
streams share one subscription on a connection of their own (`webhook.hub`). The job
system is reached through `core.domain.work.WorkQueue`, which `cli` provides.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress

import redis
import redis.asyncio as aioredis
from litestar.di import NamedDependency

from core.cloud.telegram import BotApi, TokenCheck
from core.domain.heartbeats import HeartbeatStore
from core.domain.work import WorkQueue
from core.platform.dev_secrets import api_keys, webhook_secrets
from core.platform.redis import configured_url
from core.platform.settings import Settings
from core.security.crypto import KeyRing
from core.security.signing import WebhookVerifier
from core.store.vault import load_keyring
from webhook.hub import EventHub
from webhook.intake import IntakeWriter
from webhook.observe import ResultCounts

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class WebContext:
    """Process-wide state of the web app.

    A plain class, not a dataclass: Litestar validates dependencies by type and
    would otherwise walk (and copy) every field.
    """

    def __init__(
        self,
        *,
        settings: Settings,
        keyring: KeyRing,
        verifier: WebhookVerifier,
        api_keys: tuple[str, ...],
        redis_url: str,
        redis: redis.Redis,
        trusted_proxies: tuple[Network, ...],
        work: WorkQueue,
        telegram: TokenCheck | None = None,
    ) -> None:
        self.settings = settings
        self.keyring = keyring
        self.verifier = verifier
        self.api_keys = api_keys
        self.redis_url = redis_url
        self.redis = redis
        self.trusted_proxies = trusted_proxies
        self.work = work
        #: The deploy's bot token check (None: RACHEL_TELEGRAM_CHECK is off).
        self.telegram = telegram
        self.async_redis: aioredis.Redis | None = None
        self._heartbeats: HeartbeatStore | None = None
        self.intake = IntakeWriter(keyring, lambda: work.request_intake(self.redis))
        self.results = ResultCounts()
        #: The SSE streams' one Redis subscription (its own connection, not the pool's).
        self.hub = EventHub(redis_url, settings.sse_max_streams)

    @classmethod
    def build(cls, settings: Settings, work: WorkQueue, url: str | None = None) -> WebContext:
        """Everything from settings, and the job system's port.

        Args:
            settings: the process's settings.
            work: the job system (`jobs.work.RQWork`, given by `cli`).
            url: overrides the Redis URL (for tests).

        Raises:
            SettingsError: malformed secrets, keys or key ring.
        """
        url = url or configured_url(settings)
        return cls(
            settings=settings,
            keyring=load_keyring(settings),
            verifier=WebhookVerifier(webhook_secrets(settings)),
            api_keys=api_keys(settings),
            redis_url=url,
            redis=redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=10),
            trusted_proxies=tuple(ipaddress.ip_network(c) for c in settings.trusted_proxies),
            work=work,
            telegram=(
                TokenCheck(BotApi(settings.telegram_api_url))
                if settings.telegram_check_enabled
                else None
            ),
        )

    def aredis(self) -> aioredis.Redis:
        """The asyncio Redis client (created by the app's start-up hook)."""
        if self.async_redis is None:
            self.async_redis = aioredis.Redis.from_url(
                self.redis_url, socket_connect_timeout=5, health_check_interval=30
            )
        return self.async_redis

    def heartbeats(self) -> HeartbeatStore:
        """The heartbeat store over the asyncio client (its Lua script registered once)."""
        store = self._heartbeats
        if store is None or store.client is not self.async_redis:
            store = self._heartbeats = HeartbeatStore(self.aredis())
        return store

    async def close(self) -> None:
        """Store the deploys still queued, then release the Redis connections."""
        await asyncio.to_thread(self.intake.close)
        await self.hub.close()
        if self.async_redis is not None:
            await self.results.flush(self.async_redis)
        if self.async_redis is not None:
            await self.async_redis.aclose()
            self.async_redis = None
        self.redis.close()

    def api_key_valid(self, presented: str | None) -> bool:
        """Whether `presented` is one of the API keys (constant-time per key)."""
        if not presented:
            return False
        candidate = presented.encode("utf-8", "replace")
        found = False
        for key in self.api_keys:
            found |= hmac.compare_digest(candidate, key.encode("utf-8"))
        return found

    def url(self, path: str) -> str:
        """An absolute URL of this app (for status links)."""
        return f"{self.settings.public_url}{path}"


def client_address(
    peer: str | None, forwarded_for: str | None, trusted: tuple[Network, ...]
) -> str | None:
    """The client's address: the peer, or what trusted proxies say in X-Forwarded-For.

    Walks X-Forwarded-For from the right, skipping proxies we trust; the first
    address that is not one of them is the client. Without trusted proxies, or
    when the peer is not one, the header is ignored (anyone can send it).
    """
    if not peer or not trusted or not _trusted(peer, trusted) or not forwarded_for:
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, trusted):
            return hop
    return hops[0] if hops else peer


def _trusted(address: str, trusted: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


#: How handlers declare the injected context.
Ctx = NamedDependency[WebContext]

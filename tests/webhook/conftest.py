"""Fixtures of the webhook app tests: the app over a real database and Redis, reached
through the Litestar test client or served by uvicorn on a loopback port."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import msgspec
import peewee
import pytest
import redis
import uvicorn
from litestar import Litestar
from litestar.testing import TestClient
from rq import Queue
from rq.job import Job

from core.cloud.rachel8 import ClaudeCredentials
from core.domain.deploy_order import check_order
from core.platform.dev_secrets import generate_api_key, generate_webhook_secret
from core.platform.settings import Settings
from core.security.signing import sign
from core.store.models import Customer
from jobs.context import JobContext, use_context
from jobs.queues import START
from jobs.work import RQWork
from tests import factories
from tests.conftest import make_settings
from webhook.app import create_app
from webhook.context import WebContext
from webhook.services import deploy_input
from webhook.structs import DeployRequest

OLD_SECRET = generate_webhook_secret()
NEW_SECRET = generate_webhook_secret()
API_KEY = generate_api_key()
PUBLIC_URL = "http://rachel.test"
#: Planted secrets: they must never appear in a response, a log line, an event or Redis.
BOT_TOKEN = "7123456789:AAH-planted-telegram-token-0123456789abcdef"
ACCESS_TOKEN = "sk-ant-oat01-planted-claude-access-0123456789"
REFRESH_TOKEN = "sk-ant-ort01-planted-claude-refresh-0123456789"
CLAUDE_OAUTH = {
    "access_token": ACCESS_TOKEN,
    "refresh_token": REFRESH_TOKEN,
    "expires_at": factories.EXPIRES_AT_MS,
}
#: The document the triple above is stored as.
CLAUDE = ClaudeCredentials(ACCESS_TOKEN, REFRESH_TOKEN, factories.EXPIRES_AT_MS).document()
OWNER_ID = factories.OWNER_ID


def deploy_payload(customer_id: str = "cus_web_1", **extra: Any) -> dict[str, Any]:
    """A deploy Rachel8 would start with; `extra` replaces fields (None removes one)."""
    payload: dict[str, Any] = {
        "customer_id": customer_id,
        "email": f"{customer_id}@example.com",
        "telegram_bot_token": BOT_TOKEN,
        "owner_telegram_user_id": OWNER_ID,
        "claude_oauth": CLAUDE_OAUTH,
    }
    payload.update(extra)
    return {k: v for k, v in payload.items() if v is not None}


def sealed_order(payload: dict[str, Any]) -> bytes:
    """What the web app seals for this payload: the checked order, encoded."""
    request = msgspec.convert(payload, DeployRequest)
    order = check_order(deploy_input(request), now_ms=int(time.time() * 1000))
    return msgspec.json.encode(order)


def active(customer_id: str = "cus_web_1") -> Customer:
    """A customer with an active subscription, in the database."""
    customer = factories.customer(external_id=customer_id)
    factories.subscription(customer, "active")
    return customer


def subscription_payload(
    customer_id: str = "cus_web_1", status: str = "active", at: datetime | None = None, **extra: Any
) -> dict[str, Any]:
    when = at or datetime.now(UTC) - timedelta(seconds=1)
    payload: dict[str, Any] = {
        "customer_id": customer_id,
        "status": status,
        "occurred_at": when.isoformat(),
    }
    payload.update(extra)
    return payload


def signed_headers(
    body: bytes,
    *,
    secret: str = NEW_SECRET,
    webhook_id: str | None = None,
    shift: float = 0.0,
) -> dict[str, str]:
    """Standard Webhooks headers for `body`, signed `shift` seconds from now."""
    when = datetime.now(UTC) + timedelta(seconds=shift)
    headers = sign(secret, body, webhook_id=webhook_id, timestamp=when)
    headers["content-type"] = "application/json"
    return headers


class Http:
    """One way of reaching the app (test client or uvicorn), with signing helpers."""

    def __init__(self, client: httpx.Client | TestClient[Litestar], kind: str) -> None:
        self.client = client
        self.kind = kind

    def signed(
        self, path: str, payload: Any, *, webhook_id: str | None = None, **sign_options: Any
    ) -> httpx.Response:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        headers = signed_headers(body, webhook_id=webhook_id, **sign_options)
        return self.client.post(path, content=body, headers=headers)

    def deploy(self, payload: Any = None, **options: Any) -> httpx.Response:
        return self.signed(
            "/webhooks/deploy", deploy_payload() if payload is None else payload, **options
        )

    def subscribe(self, payload: Any = None, **options: Any) -> httpx.Response:
        return self.signed(
            "/webhooks/subscription",
            subscription_payload() if payload is None else payload,
            **options,
        )

    def api(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.client.get(path, headers={"X-API-Key": API_KEY}, **kwargs)


@pytest.fixture
def web_settings(tmp_path: Path, redis_server_url: str) -> Settings:
    return make_settings(
        tmp_path,
        REDIS_URL=redis_server_url,
        RACHEL_WEBHOOK_SECRETS=f"{OLD_SECRET},{NEW_SECRET}",
        RACHEL_API_KEYS=API_KEY,
        RACHEL_PUBLIC_URL=PUBLIC_URL,
        RACHEL_TRUSTED_PROXIES="127.0.0.2/32",
        RACHEL_MAX_BODY_BYTES="4096",
    )


@pytest.fixture
def ctx(db: peewee.Database, redis_client: redis.Redis, web_settings: Settings) -> WebContext:
    return WebContext.build(web_settings, RQWork())


@pytest.fixture
def app(ctx: WebContext) -> Litestar:
    return create_app(ctx, heartbeat=0.3)


@pytest.fixture
def client(app: Litestar) -> Iterator[TestClient[Litestar]]:
    with TestClient(app) as test_client:
        yield test_client


class Served:
    """The app served by uvicorn in a thread on 127.0.0.1 and an ephemeral port."""

    def __init__(self, app: Litestar) -> None:
        config = uvicorn.Config(
            app,
            host="127.0.0.1",
            port=0,
            log_config=None,
            proxy_headers=False,
            lifespan="on",
            timeout_graceful_shutdown=2,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture
def served(app: Litestar) -> Iterator[str]:
    """The base URL of the app served by uvicorn."""
    with Served(app) as base_url:
        yield base_url


@pytest.fixture(params=["testclient", "uvicorn"])
def http(request: pytest.FixtureRequest, app: Litestar) -> Iterator[Http]:
    """The app through the Litestar test client, and served by uvicorn."""
    if request.param == "testclient":
        with TestClient(app) as test_client:
            yield Http(test_client, "testclient")
        return
    with Served(app) as base_url, httpx.Client(base_url=base_url, timeout=10) as http_client:
        yield Http(http_client, "uvicorn")


@pytest.fixture
def tc(client: TestClient[Litestar]) -> Http:
    """The app through the Litestar test client only."""
    return Http(client, "testclient")


class Intake:
    """Runs the deploy intake jobs the webhooks queued, as a worker would (RQ's perform)."""

    def __init__(self, ctx: WebContext, client: redis.Redis) -> None:
        self.client = client
        self.queue = Queue(START, connection=client)
        use_context(JobContext(settings=ctx.settings, keyring=ctx.keyring, redis=client))

    def queued(self) -> list[str]:
        return [jid for jid in self.queue.job_ids if jid.startswith("intake-")]

    def run(self) -> int:
        """Perform every queued intake job (only those); how many deploys they carried out."""
        handled = 0
        for jid in self.queued():
            job = Job.fetch(jid, connection=self.client)
            self.queue.remove(job)
            handled += int(job.perform())
        return handled


@pytest.fixture
def intake(ctx: WebContext, redis_client: redis.Redis) -> Iterator[Intake]:
    yield Intake(ctx, redis_client)
    use_context(None)

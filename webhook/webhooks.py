"""Controllers of the signed webhooks and the cloud-init callback (thin: see services)."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, Response, post
from litestar.params import HeaderParameter, JSONBody, Parameter, RawBody

from webhook import services
from webhook.context import Ctx, client_address
from webhook.errors import RequestRejected, responses
from webhook.guards import json_limits, signed
from webhook.structs import (
    CallbackAccepted,
    CloudInitCallback,
    DeployAccepted,
    DeployRequest,
    ImageCallbackAccepted,
    PoolCallbackAccepted,
    SubscriptionEvent,
    SubscriptionRecorded,
)

WebhookId = Annotated[
    str,
    HeaderParameter(
        name="webhook-id",
        min_length=1,
        max_length=128,
        description="Unique id of the delivery; the idempotency key (retries reuse it).",
    ),
]
WebhookTimestamp = Annotated[
    str,
    HeaderParameter(
        name="webhook-timestamp",
        min_length=1,
        max_length=20,
        description="Unix time of the signature; must be within 5 minutes of ours.",
    ),
]
WebhookSignature = Annotated[
    str,
    HeaderParameter(
        name="webhook-signature",
        min_length=1,
        max_length=4096,
        description="`v1,<base64 HMAC-SHA256 of id.timestamp.body>`, space-separated if several.",
    ),
]
REPLAYED_HEADER = "Idempotent-Replayed"


class WebhookController(Controller):
    """Signed (Standard Webhooks) deliveries from the dashboard."""

    path = "/webhooks"
    tags = ["webhooks"]  # noqa: RUF012 - Litestar's class attribute
    guards = [signed]  # noqa: RUF012

    @post(
        "/deploy",
        status_code=202,
        summary="Deploy the customer's Rachel8 server",
        response_description="202: the deploy is stored and will be carried out; its "
        "outcome (the server, or why not) is at `status_url`. A repeated delivery gets "
        f"the same answer with `{REPLAYED_HEADER}: true`.",
        responses=responses(400, 401, 402, 409, 413, 422, 500, 503),
    )
    async def deploy(
        self,
        *,
        ctx: Ctx,
        data: JSONBody[DeployRequest],
        body: RawBody,
        webhook_id: WebhookId,
        webhook_timestamp: WebhookTimestamp,
        webhook_signature: WebhookSignature,
    ) -> Response[DeployAccepted]:
        """Check the deploy with Rachel8's rules (and Telegram), store it (secrets encrypted)
        for the intake job; answer once it is durable."""
        answer = await services.deploy(ctx, webhook_id, body, data)
        return _respond(answer.body, answer.status, answer.replayed)

    @post(
        "/subscription",
        status_code=200,
        sync_to_thread=True,
        summary="Record a subscription status change",
        responses=responses(400, 401, 409, 413, 422, 500, 503),
    )
    def subscription(
        self,
        *,
        ctx: Ctx,
        data: JSONBody[SubscriptionEvent],
        body: RawBody,
        webhook_id: WebhookId,
        webhook_timestamp: WebhookTimestamp,
        webhook_signature: WebhookSignature,
    ) -> Response[SubscriptionRecorded]:
        """Record active, past_due, canceled or unpaid, with the times grace needs."""
        answer = services.subscription(ctx, webhook_id, body, data)
        return _respond(answer.body, answer.status, answer.replayed)


def _respond(body: Any, status: int, replayed: bool) -> Response[Any]:
    headers = {REPLAYED_HEADER: "true"} if replayed else {}
    return Response(body, status_code=status, headers=headers)


class CallbackController(Controller):
    """The cloud-init callback of a booting VPS."""

    path = "/callbacks"
    tags = ["callbacks"]  # noqa: RUF012
    guards = [json_limits]  # noqa: RUF012

    @post(
        "/cloud-init/{server_id:int}",
        status_code=200,
        sync_to_thread=True,
        summary="cloud-init finished: report the SSH host key and the install's outcome",
        security=[{"callbackToken": []}],
        responses=responses(400, 401, 404, 409, 413, 422, 500, 503),
    )
    def cloud_init(
        self,
        ctx: Ctx,
        request: Request[Any, Any, Any],
        data: JSONBody[CloudInitCallback],
        server_id: Annotated[int, Parameter(ge=1, le=2**31 - 1)],
    ) -> CallbackAccepted:
        """Accept the one-time bearer token; pin the host key and queue secret injection,
        or, when the install failed, fail the server and queue its cleanup (200 either
        way: the VPS has nothing more to report)."""
        token, source = _bearer(ctx, request)
        return services.callback(ctx, server_id, token, data, source)

    @post(
        "/image-build/{image_id:int}",
        status_code=200,
        sync_to_thread=True,
        summary="an image builder's cloud-init finished: its host key and install outcome",
        security=[{"callbackToken": []}],
        responses=responses(400, 401, 404, 413, 422, 500, 503),
    )
    def image_build(
        self,
        ctx: Ctx,
        request: Request[Any, Any, Any],
        data: JSONBody[CloudInitCallback],
        image_id: Annotated[int, Parameter(ge=1, le=2**31 - 1)],
    ) -> ImageCallbackAccepted:
        """Accept the builder's one-time bearer token; record its host key and the
        install's outcome, which the build acts on (200 either way)."""
        token, source = _bearer(ctx, request)
        return services.image_callback(token, image_id, data, source)

    @post(
        "/pool/{pool_id:int}",
        status_code=200,
        sync_to_thread=True,
        summary="a warm pool server's cloud-init finished: its host key and install outcome",
        security=[{"callbackToken": []}],
        responses=responses(400, 401, 404, 413, 422, 500, 503),
    )
    def pool(
        self,
        ctx: Ctx,
        request: Request[Any, Any, Any],
        data: JSONBody[CloudInitCallback],
        pool_id: Annotated[int, Parameter(ge=1, le=2**31 - 1)],
    ) -> PoolCallbackAccepted:
        """Accept the pool server's one-time bearer token; pin its host key: it is warm
        (or, when its install failed, recycled; 200 either way)."""
        token, source = _bearer(ctx, request)
        return services.pool_callback(token, pool_id, data, source)


def _bearer(ctx: Ctx, request: Request[Any, Any, Any]) -> tuple[str, str | None]:
    """A callback's bearer token and the client address it came from.

    Raises:
        RequestRejected: 401 without a bearer token.
    """
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise RequestRejected("a Bearer token is required", code="unauthorized", status=401)
    peer = request.client.host if request.client else None
    return token.strip(), client_address(
        peer, request.headers.get("x-forwarded-for"), ctx.trusted_proxies
    )

"""The OpenAPI schema at /schema, and schemathesis over it: no 5xx, every response conforms."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from litestar import Litestar
from litestar.testing import TestClient
from schemathesis import GenerationMode
from schemathesis import checks as st_checks
from schemathesis.specs.openapi import checks as oa_checks

from tests import factories
from tests.webhook.conftest import API_KEY, Served, signed_headers
from webhook.app import create_app
from webhook.context import WebContext

EXAMPLES = 15
PATHS = {
    "/webhooks/deploy": "post",
    "/webhooks/subscription": "post",
    "/callbacks/cloud-init/{server_id}": "post",
    "/callbacks/image-build/{image_id}": "post",
    "/callbacks/pool/{pool_id}": "post",
    "/heartbeats/{server_id}": "post",
    "/api/servers/{server_id}": "get",
    "/api/servers/{server_id}/events": "get",
    "/api/servers/{server_id}/restart": "post",
    "/api/servers/{server_id}/logs": "get",
    "/api/customers/{customer_id}/server": "get",
    "/api/deploys/{webhook_id}": "get",
    "/healthz": "get",
    "/readyz": "get",
    "/metrics": "get",
}


def test_schema_documents_every_endpoint_and_its_errors(client: TestClient[Litestar]) -> None:
    schema = client.get("/schema/openapi.json").json()
    assert set(schema["paths"]) == set(PATHS)
    error_ref = "#/components/schemas/ErrorBody"
    for path, method in PATHS.items():
        responses = schema["paths"][path][method]["responses"]
        assert "500" in responses, path
        for status, response in responses.items():
            if int(status) >= 400:
                ref = response["content"]["application/json"]["schema"]["$ref"]
                assert ref == error_ref, (path, status)
    deploy = schema["paths"]["/webhooks/deploy"]["post"]
    assert {"202", "400", "401", "402", "409", "413", "422", "503"} <= set(deploy["responses"])
    assert "telegram_token_rejected" in deploy["responses"]["422"]["description"]
    request = schema["components"]["schemas"]["DeployRequest"]
    assert {"owner_telegram_user_id", "telegram_bot_token"} <= set(request["required"])
    assert {"claude_oauth", "claude_credentials", "speech_to_text"} <= set(request["properties"])
    oauth = schema["components"]["schemas"]["ClaudeOAuth"]
    assert set(oauth["required"]) == {"access_token", "refresh_token", "expires_at"}
    assert "field" in schema["components"]["schemas"]["ErrorInfo"]["properties"]
    headers = {p["name"] for p in deploy["parameters"] if p["in"] == "header"}
    assert headers == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    assert schema["components"]["securitySchemes"]["apiKey"]["name"] == "X-API-Key"


CHECKS = [
    st_checks.not_a_server_error,
    oa_checks.status_code_conformance,
    oa_checks.content_type_conformance,
    oa_checks.response_schema_conformance,
    oa_checks.response_headers_conformance,
]


def _call_and_check(case: Any, session: requests.Session) -> None:
    headers = {"X-API-Key": API_KEY}
    kwargs: dict[str, Any] = {}
    if case.path.startswith("/webhooks/") and isinstance(case.body, dict):
        # Sign what is sent, so the generated bodies reach the handlers, not just the guard.
        body = json.dumps(case.body).encode()
        headers.update(signed_headers(body))
        kwargs["data"] = body
    # An event stream never ends: schemathesis reads it until the timeout (in total).
    timeout = 0.3 if case.path.endswith("/events") else 10.0
    response = case.call(headers=headers, session=session, timeout=timeout, **kwargs)
    case.validate_response(response, checks=CHECKS)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_api_conforms_to_its_schema(ctx: WebContext, mode: GenerationMode) -> None:
    # Some data for the generated requests to find: a subscribed customer with a server.
    customer = factories.customer(external_id="cus_1")
    factories.subscription(customer)
    factories.server(customer, status="ready")
    with Served(create_app(ctx)) as served, requests.Session() as session:
        schema = schemathesis.openapi.from_url(f"{served}/schema/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) == len(PATHS)
        for operation in operations:

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                derandomize=True,
                suppress_health_check=list(HealthCheck),
            )
            def run(case: Any) -> None:
                _call_and_check(case, session)

            try:
                run()
            except Unsatisfiable:
                # Nothing to get wrong in a request to, say, /healthz: no negative case exists.
                assert mode is GenerationMode.NEGATIVE

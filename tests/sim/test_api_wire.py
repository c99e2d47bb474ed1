"""The wire format, raw over HTTP: auth, error bodies, headers, pagination,
bad input. Every response is validated against the spec."""

from __future__ import annotations

import re

import httpx
import pytest

from sim.app import API_ROUTES
from sim.server import SimulatorServer
from tests.sim.conftest import OpenApi


@pytest.fixture
def http(sim: SimulatorServer, openapi: OpenApi) -> httpx.Client:
    client = httpx.Client(
        base_url=sim.endpoint + "/",
        headers={"Authorization": f"Bearer {sim.token}"},
        event_hooks={"response": [lambda r: (r.read(), openapi.validate_response(r))[1]]},
    )
    return client


def _server(fields: bytes) -> bytes:
    return b'{"server_type": "cx23", "image": "debian-12", ' + fields + b"}"


def error_code(response: httpx.Response) -> str:
    body = response.json()
    assert set(body["error"]) == {"code", "message", "details"}
    return str(body["error"]["code"])


def test_every_route_is_a_spec_operation(openapi: OpenApi) -> None:
    for route in API_ROUTES:
        concrete = re.sub(r"\{\w+\}", "1", route.template)
        template, operation = openapi.operation(route.method, concrete)
        assert template == route.template
        assert operation["operationId"] == route.operation


def test_auth(sim: SimulatorServer, openapi: OpenApi) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": sim.token}):
        response = httpx.get(f"{sim.endpoint}/servers", headers=headers)
        openapi.validate_response(response)
        assert response.status_code == 401 and error_code(response) == "unauthorized"


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("POST", "servers", b"{broken", 400, "json_error"),
        ("POST", "servers", b"", 400, "json_error"),
        ("POST", "servers", b"[1, 2]", 422, "invalid_input"),
        ("POST", "servers", _server(b'"name": 5'), 422, "invalid_input"),
        ("POST", "servers", _server(b'"name": "a", "labels": {"a": 1}'), 422, "invalid_input"),
        ("POST", "servers", _server(b'"name": "a", "ssh_keys": ["nope"]'), 422, "invalid_input"),
        ("POST", "servers", _server(b'"name": "a", "user_data": 7'), 422, "invalid_input"),
        ("POST", "ssh_keys", b'{"name": "k"}', 422, "invalid_input"),
        ("POST", "firewalls", b'{"name": "f", "rules": [{}]}', 422, "invalid_input"),
        ("GET", "servers/abc", None, 422, "invalid_input"),
        ("GET", "servers/42", None, 404, "not_found"),
        ("GET", "servers?page=0", None, 422, "invalid_input"),
        ("GET", "servers?sort=colour", None, 422, "invalid_input"),
        ("GET", "servers?status=sleeping", None, 422, "invalid_input"),
        ("GET", "servers?label_selector=a%20in%20(", None, 422, "invalid_input"),
        ("GET", "actions", None, 422, "invalid_input"),
        ("GET", "actions?id=x", None, 422, "invalid_input"),
        ("GET", "actions/1", None, 404, "not_found"),
        ("DELETE", "ssh_keys/1", None, 404, "not_found"),
        ("POST", "firewalls/1/actions/set_rules", b"{}", 404, "not_found"),
        ("GET", "firewalls/1/actions", None, 404, "not_found"),
        ("GET", "servers/1/actions", None, 404, "not_found"),
    ],
)  # fmt: skip
def test_bad_input_gets_hetzner_errors(
    http: httpx.Client, method: str, path: str, body: bytes | None, status: int, code: str
) -> None:
    response = http.request(method, path, content=body)
    assert response.status_code == status
    assert error_code(response) == code


def test_unknown_paths_and_methods(sim: SimulatorServer) -> None:
    auth = {"Authorization": f"Bearer {sim.token}"}
    for method, path in (("GET", "/v1/volumes"), ("PATCH", "/v1/servers"), ("GET", "/nowhere")):
        response = httpx.request(method, f"{sim.url}{path}", headers=auth)
        assert response.status_code == 404 and error_code(response) == "not_found"
        assert response.headers["X-Correlation-Id"]


def test_headers_pagination_and_links(http: httpx.Client, sim: SimulatorServer) -> None:
    for index in range(3):
        created = http.post(
            "servers", json={"name": f"s{index}", "server_type": "cx23", "image": "debian-12"}
        )
        assert created.status_code == 201
        assert created.json()["server"]["status"] == "initializing"
        assert created.json()["action"]["status"] == "running"
    first = http.get("servers", params={"per_page": 2, "sort": "id:desc"})
    assert [s["name"] for s in first.json()["servers"]] == ["s2", "s1"]
    assert first.json()["meta"]["pagination"]["next_page"] == 2
    assert 'rel="next"' in first.headers["Link"] and 'rel="last"' in first.headers["Link"]
    second = http.get("servers", params={"per_page": 2, "page": 2, "sort": "id:desc"})
    assert [s["name"] for s in second.json()["servers"]] == ["s0"]
    assert 'rel="prev"' in second.headers["Link"] and 'rel="next"' not in second.headers["Link"]
    clamped = http.get("servers", params={"per_page": 500})
    assert clamped.json()["meta"]["pagination"]["per_page"] == 50
    remaining = [int(http.get("locations").headers["RateLimit-Remaining"]) for _ in range(2)]
    assert remaining[0] > remaining[1]
    assert int(first.headers["RateLimit-Reset"]) > 0
    ids = {http.get("locations").headers["X-Correlation-Id"] for _ in range(3)}
    assert len(ids) == 3

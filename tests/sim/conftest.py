"""Fixtures for the simulator tests: the shared reference files, an OpenAPI
response validator, a running simulator and SDK clients whose every response
is validated against the spec.
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import hcloud
import pytest
import requests
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from sim.config import SimConfig
from sim.server import SimulatorServer

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED = REPO_ROOT / ".." / "shared"
OPENAPI_PATH = SHARED / "hetzner" / "hcloud-openapi.json"
_SPEC_URI = "urn:hcloud-openapi"


def _nullable(node: Any) -> Any:
    """OpenAPI 3.0 schema -> JSON Schema 2020-12: `nullable: true` becomes null-or-X."""
    if isinstance(node, list):
        return [_nullable(n) for n in node]
    if not isinstance(node, dict):
        return node
    converted = {k: _nullable(v) for k, v in node.items()}
    if converted.pop("nullable", False) is True:
        if "enum" in converted and None not in converted["enum"]:
            converted["enum"] = [*converted["enum"], None]
        if isinstance(converted.get("type"), str):
            converted["type"] = [converted["type"], "null"]
        else:
            converted = {"anyOf": [{"type": "null"}, converted]}
    return converted


def _rewrite_refs(node: Any) -> Any:
    if isinstance(node, list):
        return [_rewrite_refs(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _rewrite_refs(v) for k, v in node.items()}
    ref = out.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        out["$ref"] = _SPEC_URI + ref
    return out


@dataclass
class OpenApi:
    """Validates responses against the operation's schema in the spec.

    Attributes:
        seen: (method, template, status) of every validated response.
    """

    spec: dict[str, Any]
    registry: Registry
    seen: set[tuple[str, str, int]] = field(default_factory=set)

    def operation(self, method: str, path: str) -> tuple[str, dict[str, Any]]:
        """The (template, operation) of a concrete API path (below /v1)."""
        candidates = []
        for template, item in self.spec["paths"].items():
            regex = "^" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$"
            if re.match(regex, path) and method.lower() in item:
                candidates.append((template.count("{"), template, item[method.lower()]))
        if not candidates:
            raise AssertionError(f"{method} {path} is not an operation of the spec")
        _, template, operation = min(candidates, key=lambda c: c[0])
        return template, operation

    def validate(self, method: str, path: str, status: int, body: Any) -> None:
        """Assert that `body` is what the spec allows for this operation and status."""
        template, operation = self.operation(method, path)
        responses = operation["responses"]
        key = str(status) if str(status) in responses else f"{str(status)[0]}XX"
        assert key in responses, f"{method} {template}: status {status} not in the spec"
        content = responses[key].get("content")
        if content is None:
            assert body in (None, b"", ""), f"{method} {template} {status} must have no body"
        else:
            schema = content["application/json"]["schema"]
            validator = Draft202012Validator(
                _rewrite_refs(_nullable(schema)), registry=self.registry
            )
            errors = sorted(validator.iter_errors(body), key=lambda e: list(e.path))
            assert not errors, f"{method} {template} {status}: " + "; ".join(
                f"{list(e.path)}: {e.message}" for e in errors[:5]
            )
        self.seen.add((method.upper(), template, status))

    def validate_response(self, response: requests.Response | Any) -> None:
        """Validate an HTTP response (requests or httpx) from the simulator's /v1."""
        path = urlsplit(str(response.url)).path
        assert path.startswith("/v1/"), path
        assert response.headers.get("X-Correlation-Id")
        for header in ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"):
            assert response.headers.get(header, "").isdigit(), header
        body = response.json() if response.content else None
        method = response.request.method
        self.validate(method, path[len("/v1") :], response.status_code, body)


@pytest.fixture(scope="session")
def openapi() -> OpenApi:
    """The spec from ../shared, with its schemas converted for jsonschema."""
    if not OPENAPI_PATH.is_file():
        pytest.skip(f"../shared is absent: {OPENAPI_PATH} not found")
    spec = json.loads(OPENAPI_PATH.read_text())
    document = _rewrite_refs(_nullable(spec))
    registry = Registry().with_resource(
        _SPEC_URI, Resource.from_contents(document, default_specification=DRAFT202012)
    )
    return OpenApi(spec, registry)


def free_port() -> int:
    """A free TCP port on the loopback interface (for SSH of test VPSs)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def make_sim(tmp_path: Path) -> Iterator[Callable[..., SimulatorServer]]:
    """Start simulators with given config fields; all are stopped after the test."""
    started: list[SimulatorServer] = []

    def make(**fields: Any) -> SimulatorServer:
        fields.setdefault("ssh_port", free_port())
        fields.setdefault("vps_dir", tmp_path)
        server = SimulatorServer(SimConfig(**fields)).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture
def sim(make_sim: Callable[..., SimulatorServer]) -> SimulatorServer:
    """A simulator with zero timings."""
    return make_sim()


def fast_client(
    sim: SimulatorServer, openapi: OpenApi | None = None, *, token: str | None = None
) -> hcloud.Client:
    """An SDK client for `sim` that does not sleep between retries; with `openapi`,
    every response it receives is validated against the spec."""
    client = hcloud.Client(
        token=token or sim.token, api_endpoint=sim.endpoint, poll_interval=0.02, timeout=10
    )
    client._client._retry_interval_func = lambda retries: 0.01
    if openapi is not None:
        hooks = client._client._session.hooks["response"]
        hooks.append(lambda response, *args, **kwargs: openapi.validate_response(response))
    return client


@pytest.fixture
def client(sim: SimulatorServer, openapi: OpenApi) -> hcloud.Client:
    """A validated SDK client for the `sim` fixture."""
    return fast_client(sim, openapi)

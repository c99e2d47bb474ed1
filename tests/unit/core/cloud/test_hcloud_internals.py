"""The hcloud internals `core.cloud.hcloud_internals` relies on are there and honoured.

These fail when an hcloud release moves the retry count or the session: the
requests below go through a transport mounted on the session the module
returns, so a client that sent elsewhere would not be counted.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Mapping
from types import SimpleNamespace
from typing import Any, cast

import pytest
import requests
from hcloud import APIException, Client
from requests.adapters import BaseAdapter
from requests.structures import CaseInsensitiveDict

from core.cloud.hcloud_internals import SdkInternalsChanged, disable_sdk_retries, sdk_session

ENDPOINT = "http://hcloud.invalid/v1"


class Canned(BaseAdapter):
    """A transport that answers every request with the same response, or raises."""

    def __init__(
        self, status: int = 200, body: Mapping[str, Any] | None = None, raises: bool = False
    ) -> None:
        super().__init__()
        self.status, self.body, self.raises = status, body or {}, raises
        self.sent = 0

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: float | tuple[float | None, float | None] | None = None,
        verify: bool | str = True,
        cert: str | tuple[str, str] | None = None,
        proxies: dict[str, str] | None = None,
    ) -> requests.Response:
        self.sent += 1
        if self.raises:
            raise requests.exceptions.ConnectTimeout("canned timeout", request=request)
        response = requests.Response()
        response.status_code = self.status
        response.raw = io.BytesIO(json.dumps(self.body).encode())
        response.headers = CaseInsensitiveDict(
            {"Content-Type": "application/json", "RateLimit-Remaining": "3599"}
        )
        response.request = request
        response.url = request.url or ""
        return response

    def close(self) -> None:
        pass


def client_with(transport: Canned) -> Client:
    client = Client(token="token", api_endpoint=ENDPOINT)
    sdk_session(client).mount("http://", transport)
    return client


def error(code: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": code, "details": {}}}


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The SDK's backoff sleeps, recorded instead of slept."""
    slept: list[float] = []
    monkeypatch.setattr("hcloud._client.time.sleep", slept.append)
    return slept


TRANSIENT: list[Callable[[], Canned]] = [
    lambda: Canned(409, error("conflict")),
    lambda: Canned(429, error("rate_limit_exceeded")),
    lambda: Canned(502, {}),
    lambda: Canned(raises=True),
]


@pytest.mark.parametrize("make", TRANSIENT)
def test_the_sdk_retries_transient_errors_through_its_session(
    make: Callable[[], Canned], sleeps: list[float]
) -> None:
    # What disabling is for: left alone, the SDK retries (and sleeps) in the caller.
    transport = make()
    with pytest.raises((APIException, requests.exceptions.Timeout)):
        client_with(transport).servers.get_by_id(1)
    assert transport.sent > 1 and sleeps


@pytest.mark.parametrize("make", TRANSIENT)
def test_disabled_retries_make_one_attempt(make: Callable[[], Canned], sleeps: list[float]) -> None:
    transport = make()
    client = client_with(transport)
    disable_sdk_retries(client)
    with pytest.raises((APIException, requests.exceptions.Timeout)):
        client.servers.get_by_id(1)
    assert transport.sent == 1 and not sleeps


def test_response_hooks_on_the_session_see_every_response() -> None:
    seen: list[str | None] = []

    def hook(response: requests.Response, *args: Any, **kwargs: Any) -> None:
        seen.append(response.headers.get("RateLimit-Remaining"))

    client = client_with(Canned(200, {"servers": []}))
    sdk_session(client).hooks["response"].append(hook)
    client.servers.get_list()
    assert seen == ["3599"]


def test_missing_internals_fail_loudly() -> None:
    moved = cast(Client, SimpleNamespace(_client=SimpleNamespace()))
    with pytest.raises(SdkInternalsChanged):
        disable_sdk_retries(moved)
    with pytest.raises(SdkInternalsChanged):
        sdk_session(moved)
    with pytest.raises(SdkInternalsChanged):
        sdk_session(cast(Client, SimpleNamespace()))

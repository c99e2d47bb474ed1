"""The private parts of the `hcloud` SDK (pinned: hcloud==2.27.0) that the adapter relies on.

`core.cloud.hetzner` needs two things the SDK's public API does not offer:

- No SDK-internal retries. `hcloud.Client` retries timeouts, 502/504 and the
  `conflict`, `rate_limit_exceeded`, `bad_gateway` and `timeout` errors up to
  5 times, sleeping in the caller's thread (backoff capped at 60 s: minutes in
  all). A job holding a worker that long starves the queue; ours reschedule
  themselves instead. The constructor takes no retry setting, so the count,
  `ClientBase._retry_max_retries` on `Client._client`, is set to 0.
- The HTTP session. The SDK reads and drops the `RateLimit-*` headers of every
  response, which feed the rate budget shared by the workers, and it offers no
  hook; the `requests.Session` it sends through (`ClientBase._session`) does.

`Client._client` is the base client of the Cloud API (`api.hetzner.cloud`);
`Client._client_hetzner` (the `api.hetzner.com` endpoints) is left as it is:
the control plane calls none of them.

Both are checked on use, so an SDK release that renames them fails loudly
at connect instead of silently retrying again; tests/unit/core/cloud/
test_hcloud_internals.py checks that the SDK still honours them.
"""

from __future__ import annotations

from typing import Any

import requests
from hcloud import Client


class SdkInternalsChanged(RuntimeError):
    """The installed hcloud no longer has an internal this module relies on."""


def _base(client: Client) -> Any:
    base = getattr(client, "_client", None)
    if base is None:
        raise SdkInternalsChanged("hcloud.Client has no `_client` (the Cloud API base client)")
    return base


def disable_sdk_retries(client: Client) -> None:
    """Make every request of `client` a single attempt: errors reach the caller at once.

    Raises:
        SdkInternalsChanged: the SDK's retry count is no longer where it was.
    """
    base = _base(client)
    if not isinstance(getattr(base, "_retry_max_retries", None), int):
        raise SdkInternalsChanged("hcloud's base client has no `_retry_max_retries` count")
    base._retry_max_retries = 0


def sdk_session(client: Client) -> requests.Session:
    """The `requests.Session` every Cloud API request of `client` goes through.

    Raises:
        SdkInternalsChanged: the SDK no longer keeps its session there.
    """
    session = getattr(_base(client), "_session", None)
    if not isinstance(session, requests.Session):
        raise SdkInternalsChanged("hcloud's base client has no `_session` requests.Session")
    return session

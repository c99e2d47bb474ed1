"""The one adapter over the official `hcloud` SDK: the few operations the jobs need.

- SDK errors become `HetznerError`s (`core.cloud.provider`) that say transient or
  permanent, carrying the API's code and correlation id (`raise HetznerError(...) from exc`).
- The SDK's own retries (which sleep inside the call, up to minutes) are off:
  a job that meets a transient error reschedules itself instead of holding a
  worker, and the `RateLimit-*` headers of every response feed a budget shared
  by all workers, so creates back off before the project's bucket is empty.
- Creates are adoption-safe: when an earlier attempt may have reached Hetzner,
  look the server up by label first, and read `uniqueness_error` on the name
  as "already created, adopt it".
- The shared firewall (SSH only) and the fleet SSH key are get-or-create by
  name, their ids cached in Redis for every worker, creation races handled:
  `core.cloud.hetzner_project` (mixed in).
- Every API call is counted (`calls`), by method and path.
- Snapshots, shutdown/power-off and server type availability come from
  `core.cloud.hetzner_images` (mixed in).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis
import requests
from hcloud import APIException, Client
from hcloud.firewalls import Firewall
from hcloud.locations import Location
from hcloud.server_types import ServerType
from hcloud.servers import Server
from hcloud.ssh_keys import SSHKey

from core.cloud.hcloud_internals import disable_sdk_retries, sdk_session
from core.cloud.hetzner_images import ImageOperations, image_reference
from core.cloud.hetzner_project import ProjectObjects, stale_reference
from core.cloud.provider import (
    LABEL_ENV,
    LABEL_MANAGED,
    LABEL_SERVER,
    CreateSpec,
    HetznerError,
    ProviderServer,
    translate,
)
from core.cloud.ratebudget import RateBudget, read_budget, record_call

log = logging.getLogger(__name__)


def settle_environment(session: requests.Session, endpoint: str) -> None:
    """Read the proxy and CA bundle settings from the environment once, not per request.

    requests derives them on every request (`trust_env`), scanning the whole
    environment for proxy variables: 4% of a worker's CPU in bench/provision.py.
    The environment of a running process does not change and we call one
    endpoint, so they are settled here (HTTPS_PROXY, NO_PROXY, REQUESTS_CA_BUNDLE,
    CURL_CA_BUNDLE keep working). Without `trust_env`, a ~/.netrc entry for the
    API host can no longer replace the bearer token either.
    """
    session.proxies.update(requests.utils.get_environ_proxies(endpoint))
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle and session.verify is True:
        session.verify = bundle
    session.trust_env = False


@dataclass
class HetznerAdapter(ProjectObjects, ImageOperations):
    """The operations the control plane performs on Hetzner Cloud.

    Build with `HetznerAdapter.connect(...)`; tests may pass any `hcloud.Client`.
    """

    client: Client
    env: str
    store: redis.Redis | None = None  # shared by workers: cached ids, rate-limit state
    calls: Counter[str] = field(default_factory=Counter)
    budget: RateBudget = field(default_factory=RateBudget)
    _ids: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    clock: Callable[[], float] = time.time

    @classmethod
    def connect(
        cls,
        endpoint: str,
        token: str,
        *,
        env: str,
        redis_client: redis.Redis | None = None,
        timeout: float = 30.0,
    ) -> HetznerAdapter:
        """An adapter with its own SDK client (no SDK-internal retries)."""
        client = Client(
            token=token,
            api_endpoint=endpoint,
            application_name="rachel-cloud",
            poll_interval=1.0,
            timeout=(5.0, timeout),
        )
        adapter = cls(client=client, env=env, store=redis_client)
        adapter._instrument(endpoint)
        return adapter

    def _instrument(self, endpoint: str) -> None:
        disable_sdk_retries(self.client)
        session = sdk_session(self.client)
        session.hooks["response"].append(self._on_response)
        settle_environment(session, endpoint)

    def _on_response(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        path = response.request.path_url.split("?", 1)[0] if response.request else "?"
        # /v1/servers/42/actions/reboot -> /v1/servers/{id}/actions/reboot
        template = "/".join("{id}" if part.isdigit() else part for part in path.split("/"))
        key = f"{response.request.method if response.request else '?'} {template}"
        with self._lock:
            self.calls[key] += 1
        headers = response.headers
        try:
            budget = RateBudget(
                int(headers["RateLimit-Limit"]),
                int(headers["RateLimit-Remaining"]),
                float(headers["RateLimit-Reset"]),
            )
        except (KeyError, ValueError):
            budget = None
        if budget is not None:
            self.budget = budget
        if self.store is not None:
            record_call(self.store, key, budget, self.clock())

    def shared_budget(self) -> RateBudget:
        """The freshest budget: this process's, or what another worker saw last."""
        if self.store is None:
            return self.budget
        return read_budget(self.store) or self.budget

    def require_budget(self, reserve: int) -> None:
        """Refuse to spend a request that would eat into the reserve.

        Raises:
            HetznerError: transient `rate_limit_reserve`, with `retry_after`.
        """
        wait = self.shared_budget().wait_for(reserve, self.clock())
        if wait > 0:
            raise HetznerError(
                f"Hetzner API budget low (reserve {reserve}); waiting {wait:.0f}s for refill",
                code="rate_limit_reserve",
                transient=True,
                retry_after=wait,
            )

    def _call(self, operation: str, func: Callable[[], Any]) -> Any:
        try:
            return func()
        except APIException as exc:
            error = translate(exc, operation)
            if error.code == "rate_limit_exceeded":
                error.retry_after = self.budget.wait_for(0, self.clock()) or 1.0
            raise error from exc
        except requests.RequestException as exc:
            raise HetznerError(
                f"{operation}: cannot reach the Hetzner API: {exc}",
                code="network_error",
                transient=True,
            ) from exc

    # --- servers ------------------------------------------------------------------

    def find_server(self, server_id: int) -> ProviderServer | None:
        """Our server `server_id` on Hetzner, found by its label."""
        found = self._call(
            "find server",
            lambda: self.client.servers.get_list(
                label_selector=f"{LABEL_SERVER}={server_id},{LABEL_ENV}={self.env}"
            ),
        )
        servers = found.servers
        return ProviderServer.from_bound(servers[0]) if servers else None

    def create_server(
        self,
        spec: CreateSpec,
        firewall_id: int,
        ssh_key_id: int,
        *,
        refresh: Callable[[], tuple[int, int]] | None = None,
    ) -> tuple[ProviderServer, bool]:
        """Create the server, or adopt it if an earlier attempt already did.

        Args:
            spec: the server to create.
            firewall_id: the shared firewall, as cached.
            ssh_key_id: the fleet SSH key, as cached.
            refresh: when Hetzner answers that the firewall or the key named in
                the request does not exist (deleted in the console, or ids cached
                by a previous simulator), the cache is dropped, this is called
                for fresh ids (looked up again, recreated if gone) and the create
                is tried once more with them.

        Returns:
            (the server, True when it was adopted rather than created now).

        Raises:
            HetznerError: transient or permanent; a name held by a server that is
                not ours is permanent.
        """
        if spec.maybe_exists:
            found = self.find_server(spec.server_id)
            if found is not None:
                return found, True
        try:
            return self._create_or_adopt(spec, firewall_id, ssh_key_id)
        except HetznerError as exc:
            if not stale_reference(exc):
                raise
            self.forget_cached()
            if refresh is None:
                raise
            log.warning(
                "server %s: Hetzner no longer knows the cached firewall %s or SSH key %s (%s); "
                "looking them up again and retrying the create once",
                spec.server_id,
                firewall_id,
                ssh_key_id,
                exc,
            )
            firewall_id, ssh_key_id = refresh()
            return self._create_or_adopt(spec, firewall_id, ssh_key_id)

    def _create_or_adopt(
        self, spec: CreateSpec, firewall_id: int, ssh_key_id: int
    ) -> tuple[ProviderServer, bool]:
        try:
            response = self._call(
                "create server",
                lambda: self.client.servers.create(
                    name=spec.name,
                    server_type=ServerType(name=spec.server_type),
                    image=image_reference(spec.image),
                    location=Location(name=spec.location),
                    ssh_keys=[SSHKey(id=ssh_key_id)],
                    firewalls=[Firewall(id=firewall_id)],
                    user_data=spec.user_data,
                    labels=spec.labels(),
                    start_after_create=True,
                ),
            )
        except HetznerError as exc:
            if exc.code != "uniqueness_error":
                raise
            found = self.find_server(spec.server_id)
            if found is not None:
                log.info(
                    "server %s: create met uniqueness_error, adopting Hetzner server %s",
                    spec.server_id,
                    found.id,
                )
                return found, True
            raise HetznerError(
                f"create server: the name {spec.name} is taken by a server without our labels",
                code="uniqueness_error",
                transient=False,
            ) from exc
        return ProviderServer.from_bound(response.server), False

    def delete_server(self, provider_id: int) -> bool:
        """Delete a server; False when Hetzner no longer has it (a success too)."""
        try:
            self._call("delete server", lambda: self.client.servers.delete(Server(id=provider_id)))
        except HetznerError as exc:
            if exc.code == "not_found":
                return False
            raise
        return True

    def reboot_server(self, provider_id: int, hard: bool) -> int:
        """Reboot a server: `reboot` (ACPI, the OS shuts down cleanly) or, `hard`, `reset`
        (power cut and on: for a VPS that no longer answers). Does not wait for it.

        Returns:
            The id of Hetzner's action (its progress, for the timeline).

        Raises:
            HetznerError: transient (network, 5xx, `locked`, rate limit) or permanent
                (`not_found`: the server is gone).
        """
        command = "reset" if hard else "reboot"
        target = Server(id=provider_id)
        action = self._call(
            f"{command} server",
            lambda: (
                self.client.servers.reset(target) if hard else self.client.servers.reboot(target)
            ),
        )
        return int(action.id or 0)

    def list_managed(self) -> list[ProviderServer]:
        """Every server of this environment that carries our managed label."""
        servers = self._call(
            "list servers",
            lambda: self.client.servers.get_all(
                label_selector=f"{LABEL_MANAGED}=true,{LABEL_ENV}={self.env}"
            ),
        )
        return [ProviderServer.from_bound(s) for s in servers]

    def call_count(self) -> int:
        with self._lock:
            return sum(self.calls.values())

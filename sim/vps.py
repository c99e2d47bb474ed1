"""One simulated VPS: its root directory, host key, users, authorised keys,
SSH server, the Rachel8 install its cloud-init runs and the bootstrap callback.

cloud-init's order is kept: `write_files` (owners must exist already), then
`users`, then deferred `write_files`, and at the end (`run_cloud_init`) the
runcmd's install script, before the bootstrap calls back with the host key
and the install's result.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import shutil
import ssl
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh

from core.cloud import vps_contract
from sim import curl, sshd
from sim.cloudconfig import (
    DEFAULT_USER,
    CloudConfig,
    WriteFile,
    parse_env_file,
    parse_user_data,
    runs,
)
from sim.install import InstallRun
from sim.rootfs import RootFs
from sim.service import Clock
from sim.systemd import Systemd

log = logging.getLogger(__name__)

#: Journal lines of the Rachel8 unit `/_sim/vps` shows.
JOURNAL_TAIL = 20


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    return ssl.create_default_context()


@dataclass(frozen=True)
class CallbackPolicy:
    """How the bootstrap retries its callback: exponential backoff, bounded.

    Attributes:
        first_delay: seconds before the first retry.
        max_delay: the backoff cap.
        max_attempts: give up after this many tries (bounded, like the script).
        timeout: per-request timeout in seconds.
    """

    first_delay: float = 0.2
    max_delay: float = 5.0
    max_attempts: int = 60
    timeout: float = 10.0


@dataclass
class CallbackRecord:
    """What happened to a VPS's callback, for stats and tests."""

    url: str | None = None
    attempts: int = 0
    last_status: int | None = None
    last_error: str | None = None
    succeeded: bool = False
    #: Seconds spent waiting for answers (every attempt), not counting backoff sleeps.
    request_seconds: float = 0.0


class Vps:
    """The machine behind a simulated server.

    Attributes:
        ip: its loopback address (also its public IPv4 in the API).
        root: the temp directory that is its `/`.
        host_key: its ed25519 host key (private).
        callback: the state of its bootstrap callback.
    """

    def __init__(
        self,
        *,
        server_id: int,
        name: str,
        ip: str,
        ssh_port: int,
        base_dir: Path | None,
        user_data: str | None,
        api_keys: list[str],
        install_fail: str | None = None,
        time_scale: float = 1.0,
    ) -> None:
        self.server_id = server_id
        self.name = name
        self.ip = ip
        self.ssh_port = ssh_port
        self.root = Path(tempfile.mkdtemp(prefix=f"rachel-sim-vps-{server_id}-", dir=base_dir))
        self.fs = RootFs(self.root)
        self.systemd = Systemd(self.fs, hostname=name, clock=Clock(time_scale))
        #: A fault: the install step that fails on this VPS.
        self.install_fail = install_fail
        #: The install's result (the contract's JSON), once the install ran.
        self.install_result: dict[str, Any] | None = None
        #: Packages installed (cloud-config `packages:` and the install's).
        self.packages: list[str] = []
        self._config = CloudConfig()
        self.host_key = asyncssh.generate_private_key("ssh-ed25519", comment=f"root@{name}")
        self.authorized: dict[str, set[bytes]] = {}
        self.cloud_config_errors: list[str] = []
        self.callback = CallbackRecord()
        #: True once cloud-init's run is over (whether or not it called back).
        self.cloud_init_done = False
        self.connections: set[asyncssh.SSHServerConnection] = set()
        self._acceptor: asyncssh.SSHAcceptor | None = None
        self._install(user_data, api_keys)

    @property
    def host_public_key(self) -> str:
        """The host public key in OpenSSH one-line format."""
        return self.host_key.export_public_key("openssh").decode().strip()

    @property
    def ssh_listening(self) -> bool:
        """True while the SSH server accepts connections."""
        return self._acceptor is not None

    def _authorize(self, user: str, lines: list[str]) -> None:
        for line in lines:
            try:
                key = asyncssh.import_public_key(line.strip())
            except (asyncssh.KeyImportError, ValueError):
                self.cloud_config_errors.append(f"ignored invalid key for {user}")
                continue
            self.authorized.setdefault(user, set()).add(key.public_data)
            account = self.fs.accounts.get(user)
            home = account.home if account else sshd.home_of(user)
            owner = (account.uid, account.gid) if account else None
            self.fs.makedirs(f"{home}/.ssh", 0o700, owner)
            self.fs.write(
                f"{home}/.ssh/authorized_keys",
                (line.strip() + "\n").encode(),
                0o600,
                append=True,
                owner=owner,
            )

    def _install(self, user_data: str | None, api_keys: list[str]) -> None:
        # What the image and cloud-init leave behind before sshd starts.
        for directory in ("root", "etc/ssh", "tmp", "etc/systemd/system"):
            (self.root / directory).mkdir(parents=True, exist_ok=True)
        self.fs.real("/root", "/").chmod(0o700)
        private = self.host_key.export_private_key("openssh")
        self.fs.write("/etc/ssh/ssh_host_ed25519_key", private, 0o600)
        self.fs.write(vps_contract.HOST_KEY_PATH, (self.host_public_key + "\n").encode(), 0o644)
        self._authorize(DEFAULT_USER, api_keys)
        config = self._config = parse_user_data(user_data)
        self.cloud_config_errors.extend(config.errors)
        self._write_files([f for f in config.write_files if not f.defer])
        for spec in config.users:
            try:
                account = self.fs.accounts.add(
                    spec.name,
                    home=spec.home,
                    shell=spec.shell,
                    sudo_rule=spec.sudo_rule,
                    groups=spec.groups,
                )
            except ValueError as exc:
                self.cloud_config_errors.append(f"users {spec.name}: {exc}")
                continue
            if spec.create_home:
                # useradd -m on Ubuntu 24.04: HOME_MODE 0750.
                self.fs.makedirs(account.home, 0o750, (account.uid, account.gid))
        for user, keys in config.authorized_keys.items():
            self._authorize(user, keys)
        self._write_files([f for f in config.write_files if f.defer])
        self.packages.extend(config.packages)

    def _write_files(self, items: list[WriteFile]) -> None:
        for item in items:
            try:
                owner = self.fs.accounts.resolve(item.owner)
            except KeyError as exc:
                # cloud-init writes the file, fails to chown it and abandons the module.
                self.fs.write(item.path, item.content, item.permissions, append=item.append)
                self.cloud_config_errors.append(
                    f"write_files {item.path}: owner {item.owner}: {exc.args[0]}"
                )
                return
            try:
                self.fs.write(
                    item.path, item.content, item.permissions, append=item.append, owner=owner
                )
            except OSError as exc:
                self.cloud_config_errors.append(f"write_files {item.path}: {exc}")

    def run_cloud_init(self) -> None:
        """cloud-init's final stage: run the install where runcmd runs it (blocking I/O)."""
        script = vps_contract.INSTALL_SCRIPT_PATH
        for command in self._config.runcmd:
            if not runs(command, script):
                continue
            real = self.fs.real(script, "/")
            direct = (command[0] if isinstance(command, list) else command.split()[0]) == script
            if not real.is_file():
                self.cloud_config_errors.append(f"runcmd: {script}: not found")
            elif direct and not self.fs.mode(script) & 0o100:
                self.cloud_config_errors.append(f"runcmd: {script}: Permission denied")
            else:
                self._run_install()
            return

    def _run_install(self) -> None:
        manifest_file = self.fs.real(vps_contract.INSTALL_ENV_PATH, "/")
        manifest = (
            parse_env_file(manifest_file.read_text(errors="replace"))
            if manifest_file.is_file()
            else {}
        )
        run = InstallRun(self.fs, self.systemd, manifest, self.install_fail, self.packages)
        self.install_result = run.run(self.cloud_config_errors)
        outcome = self.install_result
        if outcome["ok"]:
            log.info("VPS %s: Rachel8 installed at %s", self.name, outcome["commit"])
        else:
            log.info(
                "VPS %s: the Rachel8 install failed at step %s (exit %s); the callback reports it",
                self.name,
                outcome["failed_step"],
                outcome["exit_status"],
            )

    def authorized_keys(self) -> Mapping[str, set[bytes]]:
        """user -> public key blobs allowed to log in."""
        return self.authorized

    async def start_ssh(self) -> None:
        """Start answering SSH (idempotent)."""
        if self._acceptor is None:
            self._acceptor = await sshd.listen(
                host=self.ip,
                port=self.ssh_port,
                host_key=self.host_key,
                fs=self.fs,
                systemd=self.systemd,
                authorized=self.authorized_keys,
                connections=self.connections,
            )

    async def stop_ssh(self) -> None:
        """Stop listening and cut open connections, as a powered-off box would."""
        acceptor, self._acceptor = self._acceptor, None
        if acceptor is not None:
            acceptor.close()
            await acceptor.wait_closed()
        for conn in list(self.connections):
            conn.abort()
        self.connections.clear()

    def bootstrap_env(self) -> dict[str, str] | None:
        """The bootstrap env file's values, or None when the user data wrote none."""
        path = self.fs.real(vps_contract.BOOTSTRAP_ENV_PATH, "/")
        if not path.is_file():
            return None
        return parse_env_file(path.read_text(errors="replace"))

    async def run_callback(self, policy: CallbackPolicy) -> bool:
        """Do what the bootstrap script does last: POST the host key and the install's
        result (when the install wrote one), retrying.

        Sent from the VPS's own address, because the control plane binds the
        token to the IP the provider assigned. Returns True on a 2xx answer.
        """
        env = self.bootstrap_env()
        if not env:
            return False
        url = env.get(vps_contract.CALLBACK_URL_VAR)
        token = env.get(vps_contract.CALLBACK_TOKEN_VAR)
        if not url or not token:
            return False
        host_key_file = self.fs.real(vps_contract.HOST_KEY_PATH, "/")
        document: dict[str, Any] = {"host_key": host_key_file.read_text().strip()}
        result_file = self.fs.real(vps_contract.INSTALL_RESULT_PATH, "/")
        if result_file.is_file():
            try:
                document["install"] = json.loads(result_file.read_text())
            except ValueError:
                log.warning("VPS %s: its install result is not JSON; not reported", self.name)
        body = json.dumps(document).encode()
        self.callback.url = url
        delay = policy.first_delay
        for attempt in range(1, policy.max_attempts + 1):
            self.callback.attempts = attempt
            sent = time.monotonic()
            try:
                status = await curl.post_json(
                    url,
                    body,
                    headers={"Authorization": f"Bearer {token}"},
                    local_address=self.ip,
                    timeout=policy.timeout,
                    # One SSL context for every VPS: building one loads the CA bundle (tens
                    # of milliseconds on the event loop, which a thousand VPSs share).
                    ssl_context=_ssl_context(),
                )
                self.callback.request_seconds += time.monotonic() - sent
                self.callback.last_status = status
                self.callback.last_error = None
                if 200 <= status < 300:
                    self.callback.succeeded = True
                    return True
            except curl.CurlError as exc:
                self.callback.request_seconds += time.monotonic() - sent
                self.callback.last_error = f"{type(exc).__name__}: {exc}"
            if attempt < policy.max_attempts:
                await asyncio.sleep(delay)
                delay = min(policy.max_delay, delay * 2)
        log.warning("VPS %s gave up its callback after %d attempts", self.name, policy.max_attempts)
        return False

    async def destroy(self) -> None:
        """Stop SSH and remove the root directory."""
        await self.stop_ssh()
        await asyncio.to_thread(shutil.rmtree, self.root, True)

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary for `/_sim/vps`."""
        return {
            "server_id": self.server_id,
            "name": self.name,
            "ip": self.ip,
            "ssh_port": self.ssh_port,
            "root_dir": str(self.root),
            "ssh_listening": self.ssh_listening,
            "host_key": self.host_public_key,
            "authorized_users": sorted(self.authorized),
            "cloud_init_done": self.cloud_init_done,
            "units": self.systemd.states,
            "users": [
                {
                    "name": a.name,
                    "uid": a.uid,
                    "gid": a.gid,
                    "home": a.home,
                    "shell": a.shell,
                    "sudo": a.has_sudo,
                }
                for a in self.fs.accounts.all()
            ],
            "packages": list(self.packages),
            "install": self.install_result,
            "rachel8": self._rachel8_state(),
            "cloud_config_errors": list(self.cloud_config_errors),
            "callback": {
                "url": self.callback.url,
                "attempts": self.callback.attempts,
                "last_status": self.callback.last_status,
                "last_error": self.callback.last_error,
                "succeeded": self.callback.succeeded,
            },
        }

    def _rachel8_state(self) -> dict[str, Any] | None:
        unit = vps_contract.SERVICE_UNIT
        if unit not in self.systemd.services:
            return {"loaded": False, "enabled": unit in self.systemd.enabled}
        props = self.systemd.properties(unit)
        state: dict[str, Any] = {key: props[key] for key in vps_contract.SERVICE_PROPERTIES}
        state |= {"loaded": True, "enabled": unit in self.systemd.enabled}
        state["journal_tail"] = self.systemd.journal(unit, JOURNAL_TAIL)
        return state

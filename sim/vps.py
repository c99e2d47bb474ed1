"""One simulated VPS: its root directory, host key, users, authorised keys,
SSH server, the Rachel8 install its cloud-init runs, the bootstrap callback,
its timers and health agent, its faults and its power.

cloud-init's order is kept: `write_files` (owners must exist already), then
`users`, then deferred `write_files`, and at the end (`run_cloud_init`) the
runcmd's install script, before the bootstrap calls back with the host key
and the install's result (`sim.bootstrap`).

Once attached to the simulator's loop (`attach`), its timers elapse
(`sim.timer_loop`) and its health agent runs (`sim.agent`). Faults
(`sim.faults.VpsFaults`): a frozen or partitioned box's SSH port hangs
(`sshd.silent_listener`) and its agent sends nothing. `power_off` and
`boot` are the Hetzner power actions: a boot clears `freeze` and
`crash_once`, and starts the enabled units afresh (uptime 0, NRestarts 0).

A VPS made from a snapshot image starts with the image's disk
(`sim.disk.Disk`): its files, users, enabled units and packages, and the
keys authorised in its `authorized_keys` files. Then it is a new instance
like any other: a new host key (cloud-init's `ssh` module replaces the
image's on a new instance), its own user data run against those files (a
user that exists already is skipped, as cloud-init does; the install, if
the runcmd runs it, finds its work done), its enabled units started by its
first boot. The callback runs only when the runcmd runs the bootstrap:
an image's leftover bootstrap env calls nobody by itself.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import shutil
import socket
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import asyncssh

from core.cloud import vps_contract
from sim import agent, sshd, vps_view
from sim.agent import AgentRecord
from sim.bootstrap import CallbackPolicy, CallbackRecord, run_callback
from sim.cloudconfig import (
    DEFAULT_USER,
    CloudConfig,
    WriteFile,
    parse_env_file,
    parse_user_data,
    runs,
    runs_with,
)
from sim.disk import Disk
from sim.faults import CLEARED_BY_REBOOT, VpsFaults
from sim.hardware import Hardware
from sim.install import STEP_WORK, InstallRun, pending_work
from sim.rachel8_telegram import Outside, rachel8_fault
from sim.rootfs import RootFs
from sim.service import Clock
from sim.systemd import Systemd
from sim.telegram import TelegramSim
from sim.timer_loop import TimerLoop

__all__ = ["CallbackPolicy", "CallbackRecord", "Vps"]

log = logging.getLogger(__name__)


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
        update_seconds: float = 0.0,
        telegram: TelegramSim | None = None,
        hardware: Hardware | None = None,
        disk: Disk | None = None,
    ) -> None:
        self.server_id = server_id
        self.name = name
        self.ip = ip
        self.ssh_port = ssh_port
        #: Simulated seconds an update's `prepare` takes to install a release (`sim.update`).
        self.update_seconds = update_seconds
        self.root = Path(tempfile.mkdtemp(prefix=f"rachel-sim-vps-{server_id}-", dir=base_dir))
        self.fs = RootFs(self.root)
        #: Faults aimed at this box (`sim.faults.VpsFaults`).
        self.faults = VpsFaults()
        self.outside = Outside(telegram, self.faults)
        self.hardware = hardware or Hardware()
        self.agent_record = AgentRecord()
        self.systemd = Systemd(
            self.fs,
            hostname=name,
            clock=Clock(time_scale),
            outside=self.outside,
            hardware=self.hardware,
        )
        self.systemd.agent = functools.partial(agent.run, self)
        self.timers: TimerLoop | None = None
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
        #: SSH connections accepted since the box was created (reboots included):
        #: what shows that nobody opened one to a healthy server.
        self.ssh_connections = 0
        self._acceptor: asyncssh.SSHAcceptor | None = None
        self._silent: socket.socket | None = None
        #: Made from a snapshot image: its disk came with the image.
        self.from_image = disk is not None
        if disk is not None:
            self.packages = disk.restore(self.fs, self.systemd)
            self._authorize_from_files()
        #: What the disk held before cloud-init's `packages:` (apt's work is the install's).
        self._disk_packages = list(self.packages)
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

    def _authorize_from_files(self) -> None:
        """sshd reads `authorized_keys` files: an image's keys let in whom they let in."""
        for account in self.fs.accounts.all():
            keys = self.fs.real(f"{account.home}/.ssh/authorized_keys", "/")
            if not keys.is_file():
                continue
            for line in keys.read_text(errors="replace").splitlines():
                try:
                    key = asyncssh.import_public_key(line.strip())
                except (asyncssh.KeyImportError, ValueError):
                    continue
                self.authorized.setdefault(account.name, set()).add(key.public_data)

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
            if self.fs.accounts.get(spec.name) is not None:
                # cloud-init: "User <name> already exists, skipping." (an image's user).
                continue
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

    def _runcmd(self, program: str) -> list[str] | str | None:
        """The first runcmd entry that runs `program`, if any."""
        return next((c for c in self._config.runcmd if runs(c, program)), None)

    def _install_refused(self, command: list[str] | str) -> str | None:
        """Why the shell cannot run the install script as `command` runs it, or None."""
        script = vps_contract.INSTALL_SCRIPT_PATH
        direct = (command[0] if isinstance(command, list) else command.split()[0]) == script
        if not self.fs.real(script, "/").is_file():
            return f"runcmd: {script}: not found"
        if direct and not self.fs.mode(script) & 0o100:
            return f"runcmd: {script}: Permission denied"
        return None

    def _manifest(self) -> dict[str, str]:
        manifest_file = self.fs.real(vps_contract.INSTALL_ENV_PATH, "/")
        if not manifest_file.is_file():
            return {}
        return parse_env_file(manifest_file.read_text(errors="replace"))

    @property
    def runs_bootstrap(self) -> bool:
        """Whether cloud-init's runcmd runs the bootstrap (which calls back)."""
        return self._runcmd(vps_contract.BOOTSTRAP_SCRIPT_PATH) is not None

    def install_work(self) -> float:
        """The share of the stock install's time cloud-init's install takes on this disk
        now (0 when the runcmd runs no install); see `sim.install.pending_work`."""
        command = self._runcmd(vps_contract.INSTALL_SCRIPT_PATH)
        if command is not None and self._verifies(command):
            return 0.0  # checks only: no install work
        if command is not None and self._install_refused(command) is None:
            return pending_work(self.fs, self._manifest(), self._disk_packages, self.install_fail)
        # No install: cloud-config's `packages:` alone still runs apt.
        apt = any(p not in self._disk_packages for p in self._config.packages)
        return STEP_WORK[vps_contract.STEP_PACKAGES] if apt else 0.0

    def _verifies(self, command: list[str] | str) -> bool:
        """Whether the runcmd runs the install script to check, not install."""
        return runs_with(command, vps_contract.INSTALL_SCRIPT_PATH, vps_contract.INSTALL_VERIFY_ARG)

    def run_cloud_init(self) -> None:
        """cloud-init's final stage: run the install where runcmd runs it (blocking I/O)."""
        command = self._runcmd(vps_contract.INSTALL_SCRIPT_PATH)
        if command is None:
            return
        refused = self._install_refused(command)
        if refused is not None:
            self.cloud_config_errors.append(refused)
        else:
            self._run_install(self._verifies(command))

    def _run_install(self, verify: bool) -> None:
        run = InstallRun(
            self.fs, self.systemd, self._manifest(), self.install_fail, self.packages,
            verify=verify,
        )  # fmt: skip
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

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Run this box's timers and agent on the simulator's loop (call on the loop)."""
        if self.timers is None:
            self.timers = TimerLoop(self.systemd, loop, lambda: self.faults.freeze, self.name)
            self.timers.start()

    async def start_ssh(self) -> None:
        """Start answering SSH (idempotent); a frozen or cut-off box's port hangs instead."""
        if self.faults.unreachable:
            if self._silent is None:
                self._silent = sshd.silent_listener(self.ip, self.ssh_port)
            return
        if self._acceptor is None:
            self._acceptor = await sshd.listen(
                host=self.ip,
                port=self.ssh_port,
                host_key=self.host_key,
                fs=self.fs,
                systemd=self.systemd,
                authorized=self.authorized_keys,
                connections=self.connections,
                opened=self._ssh_opened,
                update_seconds=self.update_seconds,
            )

    def _ssh_opened(self) -> None:
        self.ssh_connections += 1

    async def stop_ssh(self) -> None:
        """Stop listening and cut open connections, as a powered-off box would."""
        silent, self._silent = self._silent, None
        if silent is not None:
            silent.close()
        acceptor, self._acceptor = self._acceptor, None
        if acceptor is not None:
            acceptor.close()
            await acceptor.wait_closed()
        for conn in list(self.connections):
            conn.abort()
        self.connections.clear()

    async def run_callback(self, policy: CallbackPolicy) -> bool:
        """Do what the bootstrap script does last (`sim.bootstrap`); True on a 2xx answer.

        Nothing when the runcmd does not run the bootstrap."""
        if not self.runs_bootstrap:
            return False
        return await run_callback(self.fs, self.name, self.ip, self.callback, policy)

    async def set_fault(self, name: str, on: bool) -> None:
        """Set or clear one fault (`sim.faults.VPS_FAULTS`) and let it take effect now."""
        was_unreachable = self.faults.unreachable
        setattr(self.faults, name, on)
        hits_rachel8 = on and name in ("crash_once", "crash_loop", "conflict")
        if hits_rachel8 and rachel8_fault(self.systemd, name) and name == "crash_once":
            self.faults.crash_once = False  # spent on the running process
        if self.faults.unreachable != was_unreachable and self.ssh_listening_or_silent:
            await self.stop_ssh()
            await self.start_ssh()
        self.systemd.changed()

    @property
    def ssh_listening_or_silent(self) -> bool:
        """The box is up as far as SSH goes (answering or hanging)."""
        return self._acceptor is not None or self._silent is not None

    async def power_off(self) -> None:
        """The box goes down: SSH closes, processes end, timers stop."""
        await self.stop_ssh()
        self.systemd.power_off()

    def boot(self) -> None:
        """A new boot (after a Hetzner power action): `freeze` and `crash_once` are gone,
        the enabled units start afresh; the caller starts SSH."""
        for name in CLEARED_BY_REBOOT:
            setattr(self.faults, name, False)
        self.systemd.boot()

    async def destroy(self) -> None:
        """Stop the timers and SSH and remove the root directory."""
        if self.timers is not None:
            await self.timers.close()
        await self.stop_ssh()
        await asyncio.to_thread(shutil.rmtree, self.root, True)

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary for `/_sim/vps` (`sim.vps_view`)."""
        return vps_view.describe(self)

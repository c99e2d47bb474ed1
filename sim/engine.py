"""The simulator core: state, faults, rate limit, stats, the tasks of each server
and the making of its VPS.

The asynchronous lifecycle of servers (create -> running -> SSH -> cloud-init
callback; delete; power actions) is `sim.lifecycle`, which runs as tasks of
the server here (`spawn_task`) and makes VPSs with `make_vps`. Timings are
simulated seconds (`SimConfig.time_scale` real seconds each; `sleep`).

Everything runs on the event loop of the API server. Other threads (tests,
the in-process runner) read and change state through the lock, and run
coroutines with `call_soon`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import msgspec

from sim import images
from sim.addresses import AddressPool
from sim.config import SimConfig
from sim.faults import Faults, action_fails, pick_error_rule
from sim.fleet_faults import FleetWatcher
from sim.hardware import Hardware
from sim.ratelimit import TokenBucket
from sim.scratch import Scratch
from sim.state import Action, Server, Store
from sim.stats import Stats
from sim.telegram import TelegramSim
from sim.vps import Vps

log = logging.getLogger(__name__)


def _copy_faults(faults: Faults) -> Faults:
    return msgspec.convert(msgspec.to_builtins(faults), Faults)


class Simulator:
    """One simulated Hetzner project and its VPSs.

    Attributes:
        config: the configuration it was built with.
        lock: guards every attribute below against other threads.
        store: the API's records.
        faults: the active faults (replace with `set_faults`).
        stats: the counters.
        vpss: server id -> its VPS, once it has booted.
        telegram: the simulated Telegram Bot API every VPS's bot talks to.
    """

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        self.lock = threading.RLock()
        self.loop: asyncio.AbstractEventLoop | None = None
        seed = config.seed if config.seed is not None else config.faults.seed
        self._rng = random.Random(seed)  # noqa: S311 - fault dice, not secrets
        # Not from the seed: two simulators seeded alike (parallel test runs) must
        # not hand out the same addresses, or one's SSH clients reach the other's VPSs.
        self.addresses = AddressPool(config.ssh_port)
        self._tasks: dict[int, set[asyncio.Task[None]]] = {}
        #: This simulator's own directory for VPS roots (when config.vps_dir is unset).
        self._scratch: Scratch | None = None
        self._scratch_lock = threading.Lock()  # not self.lock: making it may sweep for a while
        #: VPSs being built in worker threads, which cancelling their task does not stop.
        self._builds = 0
        self._builds_done = threading.Condition(threading.Lock())
        self.telegram = TelegramSim(watcher=FleetWatcher(self))
        self._fresh()

    def _fresh(self) -> None:
        self.store = Store()
        self.stats = Stats()
        self.faults = _copy_faults(self.config.faults)
        self.bucket = TokenBucket(
            self.config.rate_limit, self.config.rate_refill, updated=time.monotonic()
        )
        self.vpss: dict[int, Vps] = {}

    # -- running on a loop ------------------------------------------------

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Bind to the event loop the API server runs on."""
        self.loop = loop

    def call_soon(self, coro: Coroutine[Any, Any, Any], timeout: float = 30.0) -> Any:
        """Run a coroutine on the simulator's loop from another thread and wait."""
        if self.loop is None:
            raise RuntimeError("the simulator is not running")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def sleep(self, simulated: float, extra: float = 0.0) -> None:
        """Wait `simulated` seconds of the simulated cloud, plus `extra` real ones."""
        await asyncio.sleep(simulated * self.config.time_scale + extra)

    def spawn_task(self, server_id: int, coro: Coroutine[Any, Any, Any]) -> None:
        """Run `coro` on the loop as a task of server `server_id` (0: of none); on the loop."""
        task = asyncio.get_running_loop().create_task(coro)
        tasks = self._tasks.setdefault(server_id, set())
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        task.add_done_callback(_log_failure)

    def cancel_tasks(self, server_id: int) -> None:
        """Cancel the tasks of server `server_id` (but the current one); on the loop."""
        for task in self._tasks.pop(server_id, set()):
            if task is not asyncio.current_task():
                task.cancel()

    async def close(self) -> None:
        """Cancel every lifecycle task and destroy every VPS."""
        for server_id in list(self._tasks):
            self.cancel_tasks(server_id)
        # A cancelled task leaves its VPS build running in its thread; let those
        # finish before their directory goes.
        await asyncio.to_thread(self._wait_for_builds, 15.0)
        with self.lock:
            vpss, self.vpss = list(self.vpss.values()), {}
        await asyncio.gather(*(v.destroy() for v in vpss), return_exceptions=True)
        with self.lock:
            disks = images.every_disk(self)
            self.store.images = {}
        for disk in disks:
            await asyncio.to_thread(disk.remove)
        with self._scratch_lock:
            scratch, self._scratch = self._scratch, None
        if scratch is not None:
            await asyncio.to_thread(scratch.remove)

    def _wait_for_builds(self, timeout: float) -> None:
        with self._builds_done:
            if not self._builds_done.wait_for(lambda: self._builds == 0, timeout):
                log.warning("%d VPS builds still running at close", self._builds)

    async def reset(self) -> None:
        """Back to an empty project: no servers, keys, firewalls, stats; initial faults."""
        await self.close()
        with self.lock:
            self._fresh()
        self.telegram.reset()

    # -- faults and rate limit ---------------------------------------------

    @property
    def rng(self) -> random.Random:
        """The fault dice (seeded by the configuration's or the fault document's seed)."""
        return self._rng

    def set_faults(self, faults: Faults) -> None:
        """Replace the active faults."""
        with self.lock:
            self.faults = faults
            if faults.seed is not None:
                self._rng.seed(faults.seed)

    def injected_error(self, operation: str) -> tuple[str, str | None] | None:
        """The (code, message) a fault makes `operation` answer, consuming its count."""
        with self.lock:
            rule = pick_error_rule(self.faults, operation, self._rng.random())
            if rule is None:
                return None
            if rule.count is not None:
                rule.count -= 1
            return rule.code, rule.message

    def take_rate_token(self) -> bool:
        """Spend one request: False when a 429 burst or an empty bucket refuses it."""
        with self.lock:
            if self.faults.rate_limit_burst > 0:
                self.faults.rate_limit_burst -= 1
                return False
            return self.bucket.take(time.monotonic())

    def rate_headers(self) -> dict[str, str]:
        """The `RateLimit-*` headers for a response sent now."""
        with self.lock:
            now = time.monotonic()
            remaining = self.bucket.remaining(now)
            reset = time.time() + self.bucket.seconds_until_full(now)
        return {
            "RateLimit-Limit": str(self.config.rate_limit),
            "RateLimit-Remaining": str(remaining),
            "RateLimit-Reset": str(int(reset)),
        }

    def action_fails(self, command: str) -> bool:
        """Whether an action with `command` ends in error now (the fault dice)."""
        with self.lock:
            return action_fails(self.faults, command, self._rng.random())

    # -- VPSs ---------------------------------------------------------------

    def vps_dir(self) -> Path:
        """Where VPS roots and image disks are made (blocking the first time)."""
        if self.config.vps_dir is not None:
            return self.config.vps_dir
        with self._scratch_lock:
            if self._scratch is None:
                self._scratch = Scratch.make(self.config.vps_parent)
                log.info("simulated VPSs keep their root directories in %s", self._scratch.path)
            return self._scratch.path

    def _build_vps(self, server: Server) -> Vps:
        with self._builds_done:
            self._builds += 1
        try:
            return Vps(
                server_id=server.id,
                name=server.name,
                ip=server.ipv4 or "127.0.0.1",
                ssh_port=self.config.ssh_port,
                base_dir=self.vps_dir(),
                user_data=server.user_data,
                api_keys=server.public_keys,
                install_fail=server.faults.install_fail,
                time_scale=self.config.time_scale,
                update_seconds=self.config.update_seconds,
                telegram=self.telegram,
                hardware=Hardware(server.server_type["disk"], server.server_type["memory"]),
                disk=server.disk,
            )
        finally:
            with self._builds_done:
                self._builds -= 1
                self._builds_done.notify_all()

    async def make_vps(self, server: Server) -> Vps:
        """Build `server`'s VPS in a worker thread and attach it to the loop; on the loop."""
        # The scratch directory, key generation and file writes block: keep
        # the loop free for the API while a thousand VPSs come up.
        vps = await asyncio.to_thread(self._build_vps, server)
        with self.lock:
            self.vpss[server.id] = vps
            images.release(self, server.disk)  # its image may be gone meanwhile
        vps.attach(asyncio.get_running_loop())
        return vps

    # -- quick actions ------------------------------------------------------

    def quick_action(
        self,
        command: str,
        scope: str,
        resources: list[tuple[str, int]],
        apply: Callable[[], None] | None = None,
    ) -> Action:
        """An action that finishes after the fault delay (firewall changes); on the loop."""
        action = self.store.new_action(command, scope, resources)
        self.spawn_task(0, self._finish_quick(action, apply))
        return action

    async def _finish_quick(self, action: Action, apply: Callable[[], None] | None) -> None:
        await asyncio.sleep(self.faults.action_delay)
        failed = self.action_fails(action.command)
        with self.lock:
            if failed:
                action.fail("action_failed", f"{action.command} failed (simulated fault)")
                return
            if apply is not None:
                apply()
            action.succeed()


def _log_failure(task: asyncio.Task[None]) -> None:
    with contextlib.suppress(asyncio.CancelledError):
        exc = task.exception()
        if exc is not None:
            log.error("simulator task failed", exc_info=exc)

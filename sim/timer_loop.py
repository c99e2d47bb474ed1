"""The clock of one simulated VPS: an asyncio task that wakes its systemd when a timer elapses.

It sleeps until the earliest timer of the box is due (`Systemd.fire_due`,
in real seconds through the time scale), or until something changes what
is due (a `systemctl` call, a process ending, a fault): `kick`. It also
runs the box's asynchronous processes (the health agent's HTTP calls) and
reports their end to systemd. A frozen or powered-off box's timers do not
elapse. One task per VPS, asleep almost always: a thousand boxes cost a
thousand idle tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from sim.service import ProcessRun, Service
from sim.systemd import Systemd

log = logging.getLogger(__name__)

#: The least real time between two wake-ups (a timer due at once must not spin the loop).
MIN_SLEEP = 0.001


class TimerLoop:
    """Drives the timers and the asynchronous processes of one VPS.

    Args:
        systemd: the VPS's systemd.
        loop: the simulator's event loop.
        paused: True while the box is frozen (nothing on it runs).
        name: the VPS's name, for logs.
    """

    def __init__(
        self,
        systemd: Systemd,
        loop: asyncio.AbstractEventLoop,
        paused: Callable[[], bool],
        name: str,
    ) -> None:
        self.systemd = systemd
        self.loop = loop
        self.paused = paused
        self.name = name
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._processes: set[asyncio.Task[None]] = set()
        systemd.on_change = self.kick
        systemd.run_process = self.run_process

    def start(self) -> None:
        """Begin ticking (call on the loop)."""
        if self._task is None:
            self._task = self.loop.create_task(self._run(), name=f"timers-{self.name}")

    def kick(self) -> None:
        """Something changed: look at the timers again (from any thread)."""
        with contextlib.suppress(RuntimeError):  # the loop is closed: nothing to wake
            self.loop.call_soon_threadsafe(self._wake.set)

    async def _run(self) -> None:
        clock = self.systemd.clock
        while True:
            self._wake.clear()
            due = None if self.paused() else self.systemd.fire_due()
            delay = None if due is None else max(MIN_SLEEP, (due - clock.now()) * clock.scale)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    def run_process(self, service: Service, pid: int, run: ProcessRun) -> None:
        """Run an asynchronous main process; its end goes to `service` (from any thread)."""

        def begin() -> None:
            task = self.loop.create_task(self._process(service, pid, run))
            self._processes.add(task)
            task.add_done_callback(self._processes.discard)

        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(begin)

    async def _process(self, service: Service, pid: int, run: ProcessRun) -> None:
        try:
            status, lines = await run()
        except Exception:
            log.exception("VPS %s: the simulated %s failed", self.name, service.name)
            status, lines = 1, ("Traceback (most recent call last): (simulator error)",)
        with self.systemd.lock:
            service.exit_now(status, lines, pid=pid)
        self.systemd.changed()

    async def close(self) -> None:
        """Stop ticking and end the running processes."""
        tasks = [*self._processes, *([self._task] if self._task else [])]
        self._task = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

"""The replaced service's health check, run by `bench/detection.py` as its baseline.

Every `period` seconds a pass over the servers, `concurrency` SSH sessions at
a time: paramiko with the pinned host key (`core.cloud.vps_ops.probe`), and a
Rachel8 found not running is restarted (`core.cloud.vps_ops.restart_service`,
`reset-failed` + `restart`). After `max_failed` restarts in a row that the
next pass still finds down, a server's circuit breaker opens for `cooldown`
seconds, as the replaced service's did (3 failed restarts, 30 minutes). A
pass that outlasts the period delays the next one: the replaced design's
problem at 1,000 servers.

Every check is recorded (when, how long, what it found, what it did), for the
benchmark to match against the crashes it caused.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from core.cloud import vps_ops
from core.cloud.ssh import SSHError, Target


@dataclass(frozen=True)
class Check:
    """One server looked at in one pass.

    Attributes:
        server_id: the server.
        pass_no: the pass (0 first).
        started, ended: epoch seconds of the SSH look (the probe), start and end.
        reachable: an SSH session opened.
        running: Rachel8 was running (None: unreachable or unreadable).
        state: what the probe saw, in words.
        restarted_at: epoch seconds when the restart it did returned (None: none done).
        restart_running: Rachel8 running right after that restart, by systemd.
        skipped: why no restart was done although it was down (the breaker).
    """

    server_id: int
    pass_no: int
    started: float
    ended: float
    reachable: bool
    running: bool | None
    state: str
    restarted_at: float | None = None
    restart_running: bool | None = None
    skipped: str | None = None


@dataclass
class _Breaker:
    failed: int = 0
    restarted_last: bool = False
    open_until: float = 0.0


@dataclass
class Sweep:
    """The sweep, in a thread of its own (`start`, `stop`)."""

    targets: dict[int, Target]
    period: float = 60.0
    concurrency: int = 5
    timeout: float = 10.0
    max_failed: int = 3
    cooldown: float = 1800.0
    checks: list[Check] = field(default_factory=list)
    #: (started, ended) epoch seconds of each pass
    passes: list[tuple[float, float]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _breakers: dict[int, _Breaker] = field(default_factory=dict)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="baseline-sweep", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop after the pass under way (at most one SSH timeout per slot later)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout * 3 + 5)

    def _loop(self) -> None:
        pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="sweep")
        try:
            due = time.time()
            pass_no = 0
            while not self._stop.is_set():
                started = time.time()
                ids = sorted(self.targets)
                list(pool.map(lambda sid, n=pass_no: self._check(sid, n), ids))
                with self._lock:
                    self.passes.append((started, time.time()))
                pass_no += 1
                due += self.period
                # A pass longer than the period: the next starts at once.
                self._stop.wait(max(0.0, due - time.time()))
        finally:
            pool.shutdown(wait=True)

    def _check(self, server_id: int, pass_no: int) -> Check:
        target = self.targets[server_id]
        started = time.time()
        found = vps_ops.probe(target, self.timeout)
        ended = time.time()
        running = found.service.running if found.service is not None else None
        state = found.describe()
        check = Check(server_id, pass_no, started, ended, found.reachable, running, state)
        breaker = self._breakers.setdefault(server_id, _Breaker())
        if found.reachable and running is False:
            check = self._repair(check, target, breaker)
        else:
            if running:
                breaker.failed = 0
            breaker.restarted_last = False
        with self._lock:
            self.checks.append(check)
        return check

    def _repair(self, check: Check, target: Target, breaker: _Breaker) -> Check:
        """Restart a Rachel8 found down, unless its breaker is open."""
        if breaker.restarted_last:
            breaker.failed += 1  # the last restart did not keep it up
        if breaker.failed >= self.max_failed and breaker.open_until == 0.0:
            breaker.open_until = time.time() + self.cooldown
        if breaker.open_until > time.time():
            breaker.restarted_last = False
            return replace(check, skipped="circuit breaker open")
        if breaker.open_until:
            breaker.open_until, breaker.failed = 0.0, 0  # the cooldown ended: try again
        try:
            state = vps_ops.restart_service(target, self.timeout)
        except SSHError as exc:
            breaker.restarted_last = True
            return replace(check, restarted_at=time.time(), skipped=f"{exc.code}: {exc.message}")
        breaker.restarted_last = True
        return replace(check, restarted_at=time.time(), restart_running=state.running)

"""Supervised child processes for `rachel-cloud up`: start, prefix logs, restart, stop.

Each child runs in its own session, so a Ctrl-C in the terminal reaches only
the supervisor, which then stops the children in reverse start order: SIGTERM
to the child's whole process group (an RQ worker's work horses and scheduler
included), SIGKILL to what is left after the grace period. Children are also
told by the kernel (PR_SET_PDEATHSIG) to stop if the supervisor dies without
cleaning up, so nothing outlives `up`.

A child that exits on its own is restarted with exponential backoff, at most
`max_restarts` times a minute; after that the supervisor gives up on it and
says so.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from core.domain import backoff

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
Sink = Callable[[str, str], None]  # (child name, line)


@dataclass(frozen=True)
class ChildSpec:
    """One process to run."""

    name: str
    argv: Sequence[str]
    env: dict[str, str] = field(default_factory=dict)
    restart: bool = True


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: ask the kernel for SIGTERM when
    # the supervisor dies, however it dies.
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Child:
    """A running (or restartable) child process."""

    def __init__(self, spec: ChildSpec, sink: Sink, base_env: dict[str, str]) -> None:
        self.spec = spec
        self.sink = sink
        self.base_env = base_env
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts: list[float] = []
        self.gave_up = False
        self._pump: threading.Thread | None = None

    def start(self) -> None:
        env = {**self.base_env, **self.spec.env}
        self.process = subprocess.Popen(  # noqa: S603 - our own argv
            list(self.spec.argv),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,  # noqa: PLW1509
        )
        self._pump = threading.Thread(
            target=self._read,
            args=(self.process.stdout,),
            name=f"log-{self.spec.name}",
            daemon=True,
        )
        self._pump.start()

    def _read(self, stream: IO[bytes] | None) -> None:
        if stream is None:
            return
        for raw in iter(stream.readline, b""):
            self.sink(self.spec.name, raw.decode("utf-8", "replace").rstrip("\n"))
        stream.close()

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def exited(self) -> int | None:
        return self.process.poll() if self.process else None

    def stop(self, grace: float) -> None:
        proc = self.process
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.sink(self.spec.name, f"did not stop within {grace:.0f}s; killing it")
        # Whatever is left in its group (a stuck work horse) goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        if self._pump is not None:
            self._pump.join(timeout=2)


class Supervisor:
    """Runs children, restarts the ones that die, stops them all in order."""

    def __init__(
        self,
        specs: Sequence[ChildSpec],
        sink: Sink,
        *,
        base_env: dict[str, str] | None = None,
        max_restarts: int = 5,
        stop_grace: float = 10.0,
    ) -> None:
        self.children = [Child(s, sink, base_env or dict(os.environ)) for s in specs]
        self.sink = sink
        self.max_restarts = max_restarts
        self.stop_grace = stop_grace
        self._stopping = threading.Event()
        self._monitor: threading.Thread | None = None

    def start(self) -> None:
        for child in self.children:
            child.start()
            self.sink("up", f"started {child.spec.name} (pid {child.pid})")
        self._monitor = threading.Thread(target=self._watch, name="supervisor", daemon=True)
        self._monitor.start()

    def _watch(self) -> None:
        while not self._stopping.wait(0.2):
            now = time.monotonic()
            for child in self.children:
                code = child.exited()
                if code is None or child.gave_up or self._stopping.is_set():
                    continue
                if not child.spec.restart:
                    continue
                child.restarts = [t for t in child.restarts if now - t < 60]
                if len(child.restarts) >= self.max_restarts:
                    child.gave_up = True
                    self.sink(
                        "up",
                        f"{child.spec.name} exited ({code}) {self.max_restarts} "
                        "times within a minute; not restarting it (see its log)",
                    )
                    continue
                wait = backoff.ceiling(len(child.restarts), 0.5, 10.0)
                self.sink("up", f"{child.spec.name} exited with {code}; restarting in {wait:.1f}s")
                child.restarts.append(now)
                if self._stopping.wait(wait):
                    return
                child.start()

    def alive(self) -> dict[str, bool]:
        return {c.spec.name: c.exited() is None for c in self.children}

    def stop(self) -> None:
        """Stop every child, newest first, and wait for them."""
        self._stopping.set()
        if self._monitor is not None:
            self._monitor.join(timeout=5)
        for child in reversed(self.children):
            child.stop(self.stop_grace)
            self.sink("up", f"stopped {child.spec.name}")


class LogFiles:
    """A sink that writes each child's lines to `<dir>/<name>.log` (TUI mode)."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self._files: dict[str, IO[str]] = {}
        self._lock = threading.Lock()

    def __call__(self, name: str, line: str) -> None:
        with self._lock:
            handle = self._files.get(name)
            if handle is None:
                handle = self._files[name] = (self.directory / f"{name}.log").open(
                    "a", encoding="utf-8"
                )
            handle.write(line + "\n")
            handle.flush()

    def close(self) -> None:
        with self._lock:
            for handle in self._files.values():
                handle.close()
            self._files.clear()


class Console:
    """A sink that prints `name | line` with a colour per child (headless mode)."""

    COLOURS = (36, 33, 32, 35, 34, 31, 96, 93)

    def __init__(self, stream: IO[str], width: int = 9, colour: bool = True) -> None:
        self.stream = stream
        self.width = width
        self.colour = colour
        self._lock = threading.Lock()
        self._assigned: dict[str, int] = {}

    def __call__(self, name: str, line: str) -> None:
        with self._lock:
            code = self._assigned.setdefault(
                name, self.COLOURS[len(self._assigned) % len(self.COLOURS)]
            )
            prefix = f"{name:<{self.width}}|"
            if self.colour:
                prefix = f"\033[{code}m{prefix}\033[0m"
            self.stream.write(f"{prefix} {line}\n")
            self.stream.flush()

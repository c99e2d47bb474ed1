"""The web side of the deploy intake: deploys stored in shared transactions.

Handlers hand their verified, validated deploy to the process's
`IntakeWriter` and await the verdict. One thread takes whatever has queued
up since its last transaction and stores it with `core.intake.admit` (three
statements and a commit for the lot), asks once for an intake job, then
answers every waiting handler. Under load a transaction carries dozens of
deploys; alone, a deploy waits for nothing but its own commit.
Nothing is answered before its commit: a 202 means the deploy is durable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass

import peewee
import redis

from core.domain.intake import ACCEPTED, Admission, Submission, admit
from core.errors import DatabaseError
from core.security.crypto import KeyRing
from core.store.db import connection

log = logging.getLogger(__name__)

#: Deploys per transaction at most (the batch a burst at high concurrency forms).
MAX_BATCH = 256


@dataclass
class _Waiting:
    submission: Submission
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Admission]


class IntakeWriter:
    """Stores deploys in batches from one thread; handlers `await submit(...)`.

    Args:
        ring: seals each deploy's request before it is stored.
        signal: called after a batch with accepted deploys committed (queues
            the intake job); its Redis errors are logged, the sweeper recovers.
    """

    def __init__(self, ring: KeyRing, signal: Callable[[], object]) -> None:
        self._ring = ring
        self._signal = signal
        self._queue: queue.SimpleQueue[_Waiting | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    async def submit(self, submission: Submission) -> Admission:
        """Store `submission` (or not) and return the verdict once committed.

        Raises:
            DatabaseError: the database failed; nothing was stored.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Admission] = loop.create_future()
        self._start()
        self._queue.put(_Waiting(submission, loop, future))
        return await future

    def _start(self) -> None:
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="rachel-intake-writer", daemon=True
                )
                self._thread.start()

    def close(self, timeout: float = 10.0) -> None:
        """Store what is queued, then stop the thread."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(timeout)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            self._store(batch)
            if stop:
                return

    def _store(self, batch: list[_Waiting]) -> None:
        try:
            with connection():
                verdicts = admit([w.submission for w in batch], self._ring)
        except (peewee.PeeweeException, DatabaseError) as exc:
            error = exc if isinstance(exc, DatabaseError) else DatabaseError(str(exc))
            log.warning("could not store %d deploy(s): %s; each is answered 503", len(batch), exc)
            for waiting in batch:
                _resolve(waiting, error=error)
            return
        except Exception as exc:  # a bug: answer 500 rather than leave handlers hanging
            log.exception("storing %d deploy(s) failed", len(batch))
            for waiting in batch:
                _resolve(waiting, error=exc)
            return
        # The job is queued before anyone is answered: a 202 means a job will come.
        if any(v.verdict == ACCEPTED for v in verdicts):
            try:
                self._signal()
            except redis.RedisError as exc:
                log.warning(
                    "%d deploy(s) stored, but the intake job could not be queued (%s); "
                    "the sweeper will queue it",
                    len(batch),
                    exc,
                )
        for waiting, verdict in zip(batch, verdicts, strict=True):
            _resolve(waiting, verdict)


def _resolve(
    waiting: _Waiting, verdict: Admission | None = None, error: BaseException | None = None
) -> None:
    def settle() -> None:
        if waiting.future.done():
            return  # the handler was cancelled (client gone); the verdict stands anyway
        if error is not None:
            waiting.future.set_exception(error)
        else:
            waiting.future.set_result(verdict)  # type: ignore[arg-type]

    # RuntimeError: the loop closed (shutdown), nobody is waiting any more.
    with contextlib.suppress(RuntimeError):
        waiting.loop.call_soon_threadsafe(settle)

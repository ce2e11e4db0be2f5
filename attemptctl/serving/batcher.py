"""Dynamic batching: requests that arrive within ``max_wait`` of the first one waiting run together, up to
``max_batch`` rows, on one worker thread that owns every forward pass.

A request's rows are never split across batches unless the request alone is larger than ``max_batch``.
Under load the wait is already over when the worker frees up, and the batch is simply what has queued.
``close`` stops taking requests, answers every one already queued, and ends the thread.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from attemptctl.serving.errors import ServeError

log = logging.getLogger("attemptctl.serve")


@dataclass
class Job:
    """One request: what to answer (``what``, e.g. a prompt record) for ``rows`` input rows, and the future
    its answers (one per row) or its error are set on."""

    what: Any
    rows: Sequence[Any]
    future: Future = field(default_factory=Future)
    arrived: float = field(default_factory=time.monotonic)


_STOP = object()


class Batcher:
    """Collects jobs into batches for ``run``, which answers them (it sets every job's future)."""

    def __init__(self, run: Callable[[list[Job]], None], *, max_batch: int, max_wait_s: float) -> None:
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._run = run
        self._queue: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._closed = False
        self.batches = 0
        """Batches run so far."""
        self.pending = 0
        """Requests queued or being answered."""
        self._thread = threading.Thread(target=self._loop, name="attemptctl-serve-batcher", daemon=True)
        self._thread.start()

    def submit(self, what: Any, rows: Sequence[Any]) -> Future:
        """Queue a job; its future gets the answers. Refused (503) once the server is stopping."""
        job = Job(what, rows)
        with self._lock:  # a job is queued before the stop mark or refused, never after it
            if self._closed:
                raise ServeError(503, "the server is shutting down; retry on another instance")
            self.pending += 1
            self._queue.put(job)
        return job.future

    def close(self, timeout: float | None = None) -> None:
        """Answer what is queued, then stop the worker."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._queue.put(_STOP)
        self._thread.join(timeout)

    def _loop(self) -> None:
        carried = None
        while True:
            first = carried if carried is not None else self._queue.get()
            if first is _STOP:
                return
            jobs, carried = self._collect(first)
            self._answer(jobs)

    def _collect(self, first: Job) -> tuple[list[Job], Any]:
        """``first`` and the jobs that join it; the job (or stop mark) left for the next batch."""
        jobs, rows = [first], len(first.rows)
        deadline = first.arrived + self.max_wait_s
        while rows < self.max_batch:
            wait = deadline - time.monotonic()
            try:
                job = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if job is _STOP or rows + len(job.rows) > self.max_batch:
                return jobs, job
            jobs.append(job)
            rows += len(job.rows)
        return jobs, None

    def _answer(self, jobs: list[Job]) -> None:
        self.batches += 1
        try:
            self._run(jobs)
        except BaseException as exc:  # noqa: BLE001 - the worker must outlive any one batch
            log.exception("a batch failed")
            error = ServeError(500, f"internal error: {type(exc).__name__}: {exc}")
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(error)
        finally:
            with self._lock:
                self.pending -= len(jobs)

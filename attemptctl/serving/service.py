"""What the HTTP layer calls: the loaded backbone, the servable prompts and the batcher between them.

Free of FastAPI: tests and the benchmark drive it directly too.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass

from attemptctl.errors import ConfigError
from attemptctl.method.backbones import Backbone
from attemptctl.serving.batch import Answer, Row, answer_rows
from attemptctl.serving.batcher import Batcher, Job
from attemptctl.serving.errors import ServeError
from attemptctl.serving.inputs import checked_examples
from attemptctl.serving.prompts import PromptCatalog, ServedPrompt
from registry import PromptRecord

log = logging.getLogger("attemptctl.serve")


@dataclass(frozen=True)
class BatchConfig:
    """How requests are batched."""

    max_batch: int = 32
    """Rows one forward pass may hold (a request larger than this runs alone, in pieces of this size)."""
    max_wait_ms: float = 5.0
    """How long the first request waiting may wait for others to join its batch."""

    def __post_init__(self) -> None:
        if self.max_batch < 1:
            raise ConfigError(f"--max-batch must be at least 1, got {self.max_batch}")
        if not 0 <= self.max_wait_ms <= 10_000:
            raise ConfigError(f"--max-wait-ms must be between 0 and 10000, got {self.max_wait_ms}")


@dataclass(frozen=True)
class Prediction:
    """The answers to one request: the prompt version that gave them and one answer per input row."""

    record: PromptRecord
    answers: list[Answer]

    def as_json(self) -> dict:
        return {"prompt": self.record.ref, "kind": self.record.kind,
                "predictions": [answer.as_json() for answer in self.answers]}


class Service:
    """One backbone serving every prompt of ``catalog``, through one batching worker."""

    def __init__(self, backbone: Backbone, catalog: PromptCatalog, config: BatchConfig | None = None) -> None:
        self.backbone = backbone
        self.catalog = catalog
        self.config = config = config or BatchConfig()
        self.batcher = Batcher(self._run, max_batch=config.max_batch, max_wait_s=config.max_wait_ms / 1000)

    def health(self) -> dict:
        return {"status": "ok", "backbone": self.backbone.name, "prompts": len(self.catalog),
                "batches": self.batcher.batches, "pending": self.batcher.pending}

    def submit(self, prompt: str, inputs: Sequence) -> tuple[PromptRecord, Future]:
        """Check a request and queue it: its record and the future of its answers (404/409/422 at once)."""
        record, task = self.catalog.resolve(prompt)
        return record, self.batcher.submit(record, checked_examples(task, inputs))

    def predict(self, prompt: str, inputs: Sequence, timeout: float | None = None) -> Prediction:
        """``submit`` and wait (callers without an event loop)."""
        record, future = self.submit(prompt, inputs)
        return Prediction(record, future.result(timeout))

    def reload(self) -> dict:
        before = len(self.catalog)
        now = self.catalog.refresh()
        return {"status": "ok", "prompts": now, "before": before}

    def close(self) -> None:
        """Answer every queued request, then stop (the in-flight batch drains)."""
        self.batcher.close()

    # -- the batching thread ---------------------------------------------------------------------

    def _run(self, jobs: list[Job]) -> None:
        """Answer a batch of jobs; a prompt that cannot load fails its own jobs, and a batch that fails is
        answered job by job, so one bad request never takes the others with it."""
        ready: list[tuple[Job, ServedPrompt]] = []
        for job in jobs:
            try:
                ready.append((job, self.catalog.load(job.what)))
            except ServeError as exc:
                _settle(job.future, error=exc)
        if len(ready) > 1:
            try:
                return self._answer(ready)
            except Exception:  # noqa: BLE001 - retried alone below, where the failure is reported
                log.warning("a mixed batch failed; answering its requests one by one", exc_info=True)
        for pair in ready:
            try:
                self._answer([pair])
            except Exception as exc:  # noqa: BLE001 - a bug: this request gets a 500, the server goes on
                log.exception("request for %s failed", pair[1].record.label)
                _settle(pair[0].future, error=ServeError(500, f"internal error answering {pair[1].record.label}: "
                                                              f"{type(exc).__name__}: {exc}"))

    def _answer(self, ready: list[tuple[Job, ServedPrompt]]) -> None:
        rows = [Row(served, example) for job, served in ready for example in job.rows]
        size = self.config.max_batch
        answers = [answer for start in range(0, len(rows), size)
                   for answer in answer_rows(self.backbone, rows[start:start + size])]
        at = 0
        for job, _ in ready:
            _settle(job.future, result=answers[at:at + len(job.rows)])
            at += len(job.rows)


def _settle(future: Future, *, result=None, error: BaseException | None = None) -> None:
    """Set a job's outcome unless its client has gone (the future was cancelled)."""
    try:
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
    except InvalidStateError:  # cancelled: nobody waits for it
        pass

"""The prompts a server answers with: a read-only view of the registry, each prompt loaded on first use.

The view is a snapshot of the registry's records taken at start and on ``reload``: resolving a
reference reads no file. A prompt's tensors are read, verified and moved to the LM's device on its
first request, and kept: a registered version never changes. A prompt whose file is corrupt fails its
own requests (500, naming the file) and is read again on the next; every other prompt keeps serving.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import torch

from attemptctl.engine.evaluate import label_candidates
from attemptctl.errors import AttemptError
from attemptctl.method import lm
from attemptctl.method.backbones import Backbone, check_fingerprint
from attemptctl.method.mixture import PromptMixture
from attemptctl.method.variants import variant_of
from attemptctl.serving.errors import ServeError
from attemptctl.tasks import Task, task_of
from attemptctl.workflows import payloads
from attemptctl.workflows.eval import generation_limit
from registry import KINDS, PromptRecord, Registry, RegistryError
from registry.records import parse_ref

SERVED_KINDS = ("target", "source")
"""What a request can name, in the order a bare name is looked up (as ``predict`` does)."""
_LISTED = 20


@dataclass(frozen=True)
class ServedPrompt:
    """A prompt ready to answer: its mixture on the LM's device and what scoring its rows needs."""

    record: PromptRecord
    task: Task
    mixture: PromptMixture
    candidates: list[tuple[int, ...]] | None
    """Token ids of each label word (label tasks); None: free-form, generated."""
    max_length: int
    """Input tokens kept, as the prompt was trained."""
    max_new_tokens: int
    fixed: torch.Tensor | None
    """(m, d): the instance prompt when it does not depend on the input (no G), else None."""
    fixed_weights: torch.Tensor | None
    """(t+1,): the constant attention of a ``uniform`` prompt, else None."""
    prefix: lm.Prefix | None
    """``fixed``'s keys and values (one row), computed once: decoder-only label tasks."""

    @property
    def key(self) -> str:
        return key_of(self.record)

    @property
    def length(self) -> int:
        return self.mixture.prompts[0].shape[0]

    def encode(self, backbone: Backbone, input_text: str, cut) -> lm.Encoded:
        return lm.encode(backbone, input_text, None, self.max_length, cut)


def key_of(record: PromptRecord) -> str:
    """``kind:name@V``: a prompt's identity (a source and a target may share a name)."""
    return f"{record.kind}:{record.ref}"


@torch.no_grad()
def load_served(registry: Registry, record: PromptRecord, backbone: Backbone) -> ServedPrompt:
    """Read and verify ``record`` (with its sources and G) and prepare it for serving."""
    task = task_of(record)
    mixture = payloads.load_mixture(registry, [record], backbone).eval()
    fixed = fixed_weights = prefix = None
    candidates = label_candidates(backbone, task) if task.labels else None
    if not variant_of(record.variant).has_attention:
        # No G: the instance prompt is the same for every input, so it (and its keys/values) is made once.
        prompt, weights = mixture(torch.zeros(1, dtype=torch.long, device=backbone.model.device))
        fixed, fixed_weights = prompt[0], None if weights is None else weights[0]
        if candidates is not None and not backbone.is_encoder_decoder:
            with backbone.autocast():
                prefix = lm.prompt_prefix(backbone, fixed.unsqueeze(0))
    return ServedPrompt(record, task, mixture, candidates,
                        max_length=record.config.get("max_length") or task.max_length,
                        max_new_tokens=generation_limit(record), fixed=fixed, fixed_weights=fixed_weights,
                        prefix=prefix)


class PromptCatalog:
    """Every servable prompt of a registry (opened read-only) for one loaded backbone.

    Thread-safe: requests resolve references on the server's threads while the batching thread loads
    prompts and ``refresh`` may swap the snapshot.
    """

    def __init__(self, registry: Registry, backbone: Backbone) -> None:
        self.registry = registry
        self.backbone = backbone
        self._lock = threading.Lock()
        self._records: dict[str, PromptRecord] = {}
        self._tasks: dict[str, Task] = {}
        self._refused: dict[str, str] = {}
        self._loaded: dict[str, ServedPrompt] = {}
        self.refresh()

    def refresh(self) -> int:
        """Take a new snapshot of the registry (prompts registered or removed since); returns how many serve."""
        records, tasks, refused = {}, {}, {}
        for kind in SERVED_KINDS:
            for record in self.registry.list(kind=kind):
                try:
                    check_fingerprint(record.label, dict(record.fingerprint), self.backbone)
                    tasks[key_of(record)] = task_of(record)
                except AttemptError as exc:  # another backbone, or a custom task no longer declared
                    refused[key_of(record)] = str(exc)
                    continue
                records[key_of(record)] = record
        with self._lock:
            self._records, self._tasks, self._refused = records, tasks, refused
            self._loaded = {key: served for key, served in self._loaded.items() if key in records}
        return len(records)

    def __len__(self) -> int:
        return len(self._records)

    def resolve(self, ref: str) -> tuple[PromptRecord, Task]:
        """The record ``ref`` names (``NAME``: the latest target, else source; ``NAME@V``; ``KIND:NAME[@V]``)
        and its task; 404 when there is none, 409 when it cannot serve on this backbone."""
        kinds, name, version = _parsed(ref)
        with self._lock:
            records, refused = self._records, self._refused
        for kind in kinds:
            versions = [r for r in records.values() if r.kind == kind and r.name == name
                        and (version is None or r.version == version)]
            if versions:
                record = max(versions, key=lambda r: r.version)
                return record, self._tasks[key_of(record)]
        for kind in kinds:
            for key, reason in refused.items():
                if key.startswith(f"{kind}:{name}@") and (version is None or key == f"{kind}:{name}@{version}"):
                    raise ServeError(409, f"prompt {ref!r} cannot be served here: {reason}")
        names = sorted({r.name for r in records.values()})
        listed = ", ".join(names[:_LISTED]) + (f" and {len(names) - _LISTED} more" if len(names) > _LISTED else "")
        raise ServeError(404, f"no prompt {ref!r} in registry {self.registry.root}; available: {listed or 'none'} "
                              "(GET /v1/prompts lists them; POST /v1/reload picks up new ones)")

    def listing(self) -> list[dict]:
        """What ``GET /v1/prompts`` shows of each servable prompt, latest versions marked."""
        with self._lock:
            records, tasks = list(self._records.values()), dict(self._tasks)
        latest: dict[tuple[str, str], int] = {}
        for r in records:
            latest[r.kind, r.name] = max(latest.get((r.kind, r.name), 0), r.version)
        records.sort(key=lambda r: (KINDS.index(r.kind), r.name, r.version))
        return [{"ref": r.ref, "kind": r.kind, "variant": r.variant or "prompt-tuning", "task": r.task,
                 "labels": None if tasks[key_of(r)].labels is None else list(tasks[key_of(r)].labels),
                 "sources": list(r.sources), "dev": _dev_score(r), "latest": r.version == latest[r.kind, r.name]}
                for r in records]

    def load(self, record: PromptRecord) -> ServedPrompt:
        """The prompt ready to answer, loaded on first use; a 500 naming the file when it cannot be read."""
        key = key_of(record)
        served = self._loaded.get(key)
        if served is not None:
            return served
        try:
            served = load_served(self.registry, record, self.backbone)
        except (RegistryError, AttemptError) as exc:  # messages name the prompt (or its source) and the file
            message = str(exc) if record.ref in str(exc) else f"{record.label}: {exc}"
            raise ServeError(500, message) from None
        with self._lock:
            if key in self._records:  # not removed by a reload meanwhile
                self._loaded[key] = served
        return served


def _parsed(ref: str) -> tuple[tuple[str, ...], str, int | None]:
    kinds = SERVED_KINDS
    if ":" in ref:
        kind, ref = ref.split(":", 1)
        if kind not in SERVED_KINDS:
            raise ServeError(422, f"prompt: unknown kind {kind!r}; write NAME, NAME@V or KIND:NAME[@V] with KIND "
                                  f"{' or '.join(SERVED_KINDS)}")
        kinds = (kind,)
    try:
        name, version = parse_ref(ref)
    except RegistryError as exc:
        raise ServeError(422, f"prompt: {exc}") from None
    return kinds, name, version


def _dev_score(record: PromptRecord) -> dict[str, float] | None:
    """The dev metrics the prompt was kept for, on its own task (None when it recorded none)."""
    dev = record.metrics.get("dev")
    scores = dev.get(record.task) if isinstance(dev, dict) else None
    return dict(scores) if scores else None

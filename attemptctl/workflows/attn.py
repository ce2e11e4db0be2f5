"""`attn show`'s per-example attention weights of target prompts (computed once per prompt version and
cached), and `attn pretrain`, the attention prior.

G scores each input against the prompts (DESIGN §1): ``a = softmax(P̂_j · H / (d·e^K))`` over the
sources and the target's own prompt. This module keeps every example's row of ``a`` — the target's
column is ``a_{t+1}`` *before* the +1, as the paper plots it — so one computation serves every
view: the mean heatmap, per-label means and the examples that weigh a source most and least.

Weights are stored in the registry's cache as safetensors bytes under a key naming the prompt
version, the split, the limit and a fingerprint of everything the numbers depend on (prompt and
G blobs, max length, the examples' text). A cached answer needs neither torch nor the backbone:
``attn show`` for a computed target is data loading plus a SQLite read.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as load_bytes
from safetensors.numpy import save as save_bytes

from attemptctl.errors import AttemptError, ConfigError
from attemptctl.method.variants import mixes_sources, variant_of
from attemptctl.tasks import Example, Task
from attemptctl.workflows.workspace import SPLITS, select_records, split_examples
from registry import PromptRecord, Registry

if TYPE_CHECKING:
    from attemptctl.engine.train import Event, TrainResult
    from attemptctl.workflows.workspace import Workspace

CACHE_FORMAT = "1"
"""Bumped when the payload layout changes, so old entries are recomputed rather than misread."""


@dataclass(frozen=True)
class AttentionWeights:
    """One target's attention over the examples of a split.

    weights (N, C): row i is example i's softmax over ``columns`` (sources in the target's order,
    then ``(target)`` unless the variant mixes no target prompt); each row sums to 1.
    """

    record: PromptRecord
    task: Task
    split: str
    columns: tuple[str, ...]
    weights: np.ndarray
    examples: tuple[Example, ...]
    cached: bool
    """True when read from the registry cache rather than computed now."""

    def mean(self) -> dict[str, float]:
        """Column -> mean weight over every example (0 everywhere for an empty split)."""
        means = self.weights.mean(0) if len(self.weights) else np.zeros(len(self.columns))
        return {c: float(w) for c, w in zip(self.columns, means)}

    def spread(self) -> dict[str, float]:
        """Column -> standard deviation of its weight across the examples: how much G's mix depends on the input."""
        stds = self.weights.std(0) if len(self.weights) else np.zeros(len(self.columns))
        return {c: float(w) for c, w in zip(self.columns, stds)}

    def by_label(self) -> dict[str, dict[str, float]]:
        """Gold label word -> column -> mean weight over that label's examples, in label order."""
        if not self.task.is_classification:
            raise AttemptError(f"{self.record.ref}: task {self.task.name} has free-form answers, not labels; "
                               "drop --by-label")
        order = {word: i for i, word in enumerate(self.task.labels)}
        labels = sorted({e.target for e in self.examples}, key=lambda w: (order.get(w, len(order)), w))
        targets = np.array([e.target for e in self.examples])
        return {label: {c: float(w) for c, w in zip(self.columns, self.weights[targets == label].mean(0))}
                for label in labels}

    def extremes(self, n: int) -> dict[str, dict[str, list[tuple[float, Example]]]]:
        """Column -> {"highest": [...], "lowest": [...]}: the n examples weighing it most and least."""
        result = {}
        for j, column in enumerate(self.columns):
            # Stable sorts: ties keep data order, so the listing is reproducible.
            highest = np.argsort(-self.weights[:, j], kind="stable")[:n]
            lowest = np.argsort(self.weights[:, j], kind="stable")[:n]
            result[column] = {side: [(float(self.weights[i, j]), self.examples[i]) for i in idx]
                              for side, idx in (("highest", highest), ("lowest", lowest))}
        return result


OnBatch = Callable[[int, int], None]
"""Progress callback: (examples done in this batch, total examples still to compute)."""


def attention_weights(ws, refs: Sequence[str] | None = None, *, split: str = "test", limit: int | None = None,
                      batch_size: int = 64, on_batch: OnBatch | None = None) -> list[AttentionWeights]:
    """Per-example attention of targets (default: every latest target), from cache where possible.

    Order: registry look-ups and data first (cheap, and what the cache key needs), then the cache,
    and only if some target is missing from it the backbone load and G's forward passes.
    """
    if split not in SPLITS:
        raise ConfigError(f"unknown split '{split}'; choose dev or test")
    registry = ws.registry()
    jobs = []
    for record in _targets(registry, refs):
        task, examples, max_length = _examples(ws, record, split, limit)
        jobs.append(_Job(record, task, examples, max_length,
                         _cache_key(registry, record, split, limit, max_length, examples)))
    found = {job.key: _read_cache(registry, job.key) for job in jobs}
    missing = [job for job in jobs if found[job.key] is None]
    if missing:
        total = sum(len(job.examples) for job in missing)
        progress = (lambda done: on_batch(done, total)) if on_batch else None
        for job, (columns, weights) in zip(missing, _compute(ws, registry, missing, batch_size, progress)):
            registry.put_cache(job.key, _payload(columns, weights, job.record))
            found[job.key] = (columns, weights, False)
    results = []
    for job in jobs:
        columns, weights, cached = found[job.key]
        results.append(AttentionWeights(job.record, job.task, split, columns, weights, tuple(job.examples), cached))
    return results


@dataclass(frozen=True)
class _Job:
    record: PromptRecord
    task: Task
    examples: list[Example]
    max_length: int
    key: str


def _targets(registry: Registry, refs: Sequence[str] | None) -> list[PromptRecord]:
    records = select_records(registry, refs, kinds=("target",))
    for record in records:
        if not mixes_sources(record.variant):
            raise AttemptError(f"target {record.ref} is variant '{record.variant}'; it mixes no sources, so it has no "
                               "attention")
    return records


def _examples(ws, record: PromptRecord, split: str, limit: int | None) -> tuple[Task, list[Example], int]:
    """The split's examples as evaluation sees them, and the max length."""
    task, examples = split_examples(ws, record, split, limit)
    return task, examples, int(record.config.get("max_length") or task.max_length)


def _cache_key(registry: Registry, record: PromptRecord, split: str, limit: int | None, max_length: int,
               examples: Sequence[Example]) -> str:
    """``attention/<ref>/<split>/<limit>/<fingerprint>``: a new prompt, G, source or data changes the key.

    The prompt's own sha256 is in the fingerprint because a ref can be reused: remove every
    version of a name and the next training is ``@1`` again.
    """
    digest = hashlib.sha256()
    linked = [registry.get("source", ref) for ref in record.sources]
    if record.attention:
        linked.append(registry.get("attention", record.attention))
    for part in (CACHE_FORMAT, record.sha256, *(r.sha256 for r in linked), record.variant, str(max_length)):
        digest.update(part.encode() + b"\0")
    for example in examples:
        digest.update(example.input.encode() + b"\0")
    return f"attention/{record.ref}/{split}/{limit or 'all'}/{digest.hexdigest()[:16]}"


def _payload(columns: Sequence[str], weights: np.ndarray, record: PromptRecord) -> bytes:
    return save_bytes({"weights": np.ascontiguousarray(weights, dtype=np.float32)},
                      metadata={"format": CACHE_FORMAT, "columns": json.dumps(list(columns)), "prompt": record.ref})


def _read_cache(registry: Registry, key: str) -> tuple[tuple[str, ...], np.ndarray, bool] | None:
    payload = registry.get_cache(key)
    if payload is None:
        return None
    try:
        weights = load_bytes(payload)["weights"]
        columns = tuple(json.loads(_metadata(payload)["columns"]))
    except (SafetensorError, KeyError, ValueError):
        return None  # unreadable entry: recompute and overwrite it rather than fail the view
    if weights.ndim != 2 or weights.shape[1] != len(columns):
        return None
    return columns, weights, True


def _metadata(payload: bytes) -> dict[str, str]:
    """The ``__metadata__`` of safetensors bytes: an 8-byte little-endian length, then a JSON header."""
    size = int.from_bytes(payload[:8], "little")
    return json.loads(payload[8:8 + size]).get("__metadata__", {})


def _compute(ws, registry: Registry, jobs, batch_size: int, on_batch: Callable[[int], None] | None):
    """(columns, weights (N, C)) for each job, with one backbone load for all of them.

    G only needs the input token embeddings, not an LM forward pass, so this is fast even on CPU.
    Torch and the backbone are imported here, not at module level: cached answers never need them.
    """
    import torch

    from attemptctl.engine.batching import length_grouped_batches
    from attemptctl.method import lm
    from attemptctl.workflows import payloads

    backbone = ws.load_backbone(ws.backbone or jobs[0].record.backbone)
    results = []
    with torch.no_grad():
        for job in jobs:
            record, examples, max_length = job.record, job.examples, job.max_length
            mixture = payloads.load_mixture(registry, [record], backbone)
            items = [lm.encode(backbone, e.input, None, max_length, e.cut) for e in examples]
            weights = np.zeros((len(items), len(mixture.columns)), dtype=np.float32)
            for indices in length_grouped_batches([len(i) for i in items], batch_size, shuffle=False):
                batch = lm.collate(backbone, [items[i] for i in indices], [0] * len(indices))
                _, attn = mixture(batch.task_ids, backbone.embed(batch.input_ids), batch.input_mask)
                weights[indices] = attn.float().cpu().numpy()  # batches are length-sorted: put rows back
                if on_batch:
                    on_batch(len(indices))
            columns = list(mixture.columns)
            if not variant_of(record.variant).adds_target:  # its softmax never covered the target: the column is all 0
                weights, columns = weights[:, :-1], columns[:-1]
            results.append((tuple(columns), weights))
    return results


def pretrain_attention(ws: Workspace, source_refs: Sequence[str], *, name: str = "prior", preset: str = "cpu",
                       overrides: dict | None = None, on_event: Event | None = None, resume: bool = False,
                       force: bool = False) -> tuple[PromptRecord | None, TrainResult]:
    """The attention prior: train G on the source tasks (a fresh prompt per source) and register G alone."""
    from attemptctl.method.mixture import PromptMixture
    from attemptctl.workflows import payloads
    from attemptctl.workflows.runs import (
        attention_module,
        calibrate_attention,
        load_splits,
        plan_run,
        register_attention,
        train_run,
        vocab_prompt,
    )

    if len(source_refs) < 2:
        raise ConfigError("the attention prior is learned across sources; give at least two with --sources a,b")
    registry = ws.registry()
    records = [registry.get("source", ref) for ref in source_refs]
    run = plan_run(ws, [r.task for r in records], source_refs, "attempt", preset, overrides)
    splits = {t.name: load_splits(ws, t, run.config) for t in run.tasks}
    backbone = ws.load_backbone(run.backbone_spec)
    sources = {r.ref: payloads.load_prompt(registry, r, backbone) for r in records}
    fresh = {t.name: vocab_prompt(backbone, run.config.prompt_length, run.config.seed + i) for i, t in enumerate(run.tasks)}
    mixture = PromptMixture(fresh, sources=sources, attention=attention_module(registry, None, backbone, run.config),
                            variant="attempt")
    calibrate_attention(backbone, mixture, {n: s.train for n, s in splits.items()}, {t.name: t for t in run.tasks},
                        run.config)
    result = train_run(ws, backbone, mixture, splits, {t.name: t for t in run.tasks}, run.config,
                       checkpoint=f"attention-{name}", on_event=on_event, resume=resume, force=force)
    if not result.main_process:
        return None, result
    record = register_attention(registry, backbone, run.backbone_spec, mixture.attention, result, name=name,
                                task=",".join(mixture.tasks), variant="prior",
                                config={**run.config.to_dict(), "preset": preset, "sources": list(sources)})
    return record, result

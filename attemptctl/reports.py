"""Evaluation and attention reports over registered prompts, from one loaded backbone."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from attemptctl import artifacts
from attemptctl import model as lm
from attemptctl.backbones import load_backbone
from attemptctl.batching import length_grouped_batches
from attemptctl.data import load_task
from attemptctl.errors import AttemptError, ConfigError
from attemptctl.evaluate import DECODES, evaluate
from attemptctl.mixture import TARGET_COLUMN
from attemptctl.operations import Workspace
from attemptctl.tasks import get_task
from registry import PromptRecord, Registry

SPLITS = ("dev", "test")


@dataclass(frozen=True)
class EvalRow:
    """One evaluated prompt version."""

    record: PromptRecord
    split: str
    metrics: dict[str, float]
    examples: int
    seconds: float


@dataclass(frozen=True)
class AttentionSummary:
    """Mean attention of one target over its examples: column -> weight (target column before the +1)."""

    record: PromptRecord
    weights: dict[str, float]
    examples: int


def _select(registry: Registry, refs: Sequence[str] | None, kinds=("target", "source")) -> list[PromptRecord]:
    if refs:
        return [registry.find(ref, kinds=kinds) for ref in refs]
    records = registry.list(kind="target", latest_only=True)
    if not records:
        raise AttemptError(f"registry {registry.root} has no target prompts; train one with "
                           "`attemptctl target train TASK --sources a,b`")
    return records


def _groups(records: Sequence[PromptRecord]) -> list[list[PromptRecord]]:
    """Records that share one mixture: targets trained together share their attention module G."""
    groups: dict[str, list[PromptRecord]] = defaultdict(list)
    for record in records:
        groups[f"attention:{record.attention}" if record.attention else f"{record.kind}:{record.ref}"].append(record)
    return list(groups.values())


def _examples(ws: Workspace, record: PromptRecord, split: str, limit: int | None):
    task = get_task(record.task)
    seed = int(record.config.get("seed", 42))
    limit = limit or record.config.get(f"{split}_limit")
    splits = load_task(task, data_dir=ws.data_dir, seed=seed, dev_limit=limit, test_limit=limit, train_limit=1)
    return task, (splits.dev if split == "dev" else splits.test)


def evaluate_prompts(ws: Workspace, refs: Sequence[str] | None = None, *, split: str = "test", decode: str = "rank",
                     limit: int | None = None, batch_size: int = 16, on_batch=None) -> list[EvalRow]:
    """Evaluate prompts (default: every latest target) and store the results with each version."""
    if split not in SPLITS:
        raise ConfigError(f"unknown split '{split}'; choose dev or test")
    if decode not in DECODES:
        raise ConfigError(f"unknown decode '{decode}'; choose rank or generate")
    registry = ws.registry()
    records = _select(registry, refs)
    data = {r.ref: _examples(ws, r, split, limit) for r in records}
    backbone = load_backbone(ws.backbone or records[0].backbone)
    rows = []
    for group in _groups(records):
        mixture = artifacts.load_mixture(registry, group, backbone)
        results = evaluate(backbone, mixture, {r.name: data[r.ref][1] for r in group},
                           {r.name: data[r.ref][0] for r in group}, max_length=group[0].config.get("max_length"),
                           batch_size=batch_size, decode=decode, on_batch=on_batch)
        for record in group:
            result = results[record.name]
            registry.add_evaluation(record.kind, record.ref, split, result.metrics, result.examples, result.seconds)
            rows.append(EvalRow(record, split, result.metrics, result.examples, result.seconds))
    return rows


@torch.no_grad()
def attention_summaries(ws: Workspace, refs: Sequence[str] | None = None, *, limit: int | None = None,
                        batch_size: int = 64) -> list[AttentionSummary]:
    """Mean attention weights of targets over their test examples.

    G only needs the input token embeddings, not an LM forward pass, so this is fast.
    """
    registry = ws.registry()
    records = _select(registry, refs, kinds=("target",))
    data = {r.ref: _examples(ws, r, "test", limit) for r in records}
    backbone = load_backbone(ws.backbone or records[0].backbone)
    summaries = []
    for record in records:
        if record.variant == "prompt-tuning":
            raise AttemptError(f"target {record.ref} is plain prompt tuning; it mixes no sources, so it has no attention")
        mixture = artifacts.load_mixture(registry, [record], backbone)
        task, examples = data[record.ref]
        max_length = record.config.get("max_length") or task.max_length
        items = [lm.encode(backbone, e.input, None, max_length) for e in examples]
        weights = []
        for indices in length_grouped_batches([len(i) for i in items], batch_size, shuffle=False):
            batch = lm.collate(backbone, [items[i] for i in indices], [0] * len(indices))
            _, attn = mixture(batch.task_ids, backbone.embed(batch.input_ids), batch.input_mask)
            weights.append(attn.numpy())
        mean = np.concatenate(weights).mean(0) if weights else np.zeros(len(mixture.columns))
        columns = {col: float(w) for col, w in zip(mixture.columns, mean)}
        if record.variant == "no-target":
            columns.pop(TARGET_COLUMN)
        summaries.append(AttentionSummary(record, columns, len(examples)))
    return summaries

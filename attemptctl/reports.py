"""Evaluation reports over registered prompts, from one loaded backbone (attention: ``attention_report``)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from attemptctl import artifacts
from attemptctl.backbones import load_backbone
from attemptctl.data import load_task
from attemptctl.errors import AttemptError, ConfigError
from attemptctl.evaluate import DECODES, evaluate
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


def _select(registry: Registry, refs: Sequence[str] | None, kinds=("target", "source")) -> list[PromptRecord]:
    if refs:
        return [registry.find(ref, kinds=kinds) for ref in refs]
    records = registry.list(kind="target", latest_only=True)
    if not records:
        raise AttemptError(f"registry {registry.root} has no target prompts; train one with "
                           "`attemptctl target train TASK --sources a,b`")
    return records


def _groups(records: Sequence[PromptRecord]) -> list[list[PromptRecord]]:
    """Records that share one mixture: targets trained together share G and their sources."""
    groups: dict[str, list[PromptRecord]] = defaultdict(list)
    for record in records:
        groups[f"attention:{record.attention}:{record.sources}" if record.attention else f"{record.kind}:{record.ref}"].append(record)
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

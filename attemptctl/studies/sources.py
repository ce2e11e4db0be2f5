"""``study sources`` (the paper's Figure 5): a target evaluated with its sources added one at a time."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from attemptctl.errors import ConfigError
from attemptctl.workflows.workspace import Workspace, split_examples


@dataclass(frozen=True)
class StudyRow:
    """One source set of a study: its score and the mean attention it received."""

    sources: tuple[str, ...]
    metrics: dict[str, float]
    attention: dict[str, float]
    examples: int


def study_sources(ws: Workspace, ref: str, order: Sequence[str], *, split: str = "test", limit: int | None = None,
                  batch_size: int = 16, on_batch=None) -> list[StudyRow]:
    """Evaluate a target with the sources ``order[:1]``, ``order[:2]``, … (the paper's Figure 5 study).

    Nothing is registered: each set reuses the target's prompt and G, as ``compose`` would.
    """

    import numpy as np

    from attemptctl.engine.evaluate import evaluate
    from attemptctl.method.variants import TARGET_COLUMN, variant_of
    from attemptctl.workflows.target import composed_mixture, parent_target

    if not order:
        raise ConfigError("give the sources to add one at a time with --sources a,b,c")
    if split not in ("dev", "test"):
        raise ConfigError(f"unknown split '{split}'; choose dev or test")
    registry = ws.registry()
    parent = parent_target(registry, ref)
    refs = [registry.get("source", name).ref for name in order]
    task, examples = split_examples(ws, parent, split, limit)  # as the target's training drew them
    backbone = ws.load_backbone(ws.backbone or parent.backbone)
    rows = []
    for k in range(1, len(refs) + 1):
        mixture = composed_mixture(registry, parent, refs[:k], backbone)
        result = evaluate(backbone, mixture, {task.name: examples}, {task.name: task},
                          max_length=parent.config.get("max_length"), batch_size=batch_size, on_batch=on_batch)[task.name]
        mean = result.weights.mean(0) if result.weights is not None and len(result.weights) else np.zeros(k + 1)
        attention = {col: float(w) for col, w in zip(mixture.columns, mean) if col != TARGET_COLUMN or variant_of(parent.variant).adds_target}
        rows.append(StudyRow(tuple(refs[:k]), result.metrics, attention, result.examples))
    return rows

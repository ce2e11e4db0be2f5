"""Evaluation: rank classification for label tasks, greedy generation for free-form outputs.

Rank classification scores every label's tokens under the prompted model and takes the best: it is
exact and never produces an invalid output. When every label is a single token, one forward pass
per batch gives all scores (the next-token distribution after the input).

Batches may mix rows of several tasks: each row gets its own task's instance prompt and is scored
against its own task's labels, so one loaded LM serves every task in one pass.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from attemptctl import model as lm
from attemptctl.backbones import Backbone
from attemptctl.batching import length_grouped_batches
from attemptctl.metrics import compute_metrics
from attemptctl.mixture import PromptMixture
from attemptctl.tasks import Example, Task

DECODES = ("rank", "generate")


@dataclass(frozen=True)
class TaskEvaluation:
    """Scores of one task: metrics, per-example predictions and attention weights (N, t+1) or None."""

    task: str
    metrics: dict[str, float]
    predictions: list[str]
    weights: np.ndarray | None
    examples: int
    seconds: float


def label_candidates(backbone: Backbone, task: Task) -> list[tuple[int, ...]]:
    """Token ids of each label word as a target, without the closing EOS."""
    return [lm.encode(backbone, "", label, 1).target_ids[:-1] for label in task.labels]


def _instance_prompts(backbone: Backbone, mixture: PromptMixture, batch: lm.Batch):
    input_embeds = backbone.embed(batch.input_ids)
    return mixture(batch.task_ids, input_embeds, batch.input_mask, share=True)


@torch.no_grad()
def evaluate(backbone: Backbone, mixture: PromptMixture, examples: Mapping[str, Sequence[Example]],
             tasks: Mapping[str, Task], *, max_length: int | None = None, batch_size: int = 32, decode: str = "rank",
             max_new_tokens: int = 16, on_batch: Callable[[int], None] | None = None) -> dict[str, TaskEvaluation]:
    """Score every task's examples with one loaded LM; rows of different tasks share batches."""
    if decode not in DECODES:
        raise ValueError(f"unknown decode {decode!r}; choose one of {', '.join(DECODES)}")
    mixture.eval()
    started = time.perf_counter()
    owners: list[tuple[str, int]] = []
    items: list[lm.Encoded] = []
    for task_name, rows in examples.items():
        for j, example in enumerate(rows):
            owners.append((task_name, j))
            items.append(lm.encode(backbone, example.input, None, max_length or tasks[task_name].max_length))
    candidates = {name: label_candidates(backbone, tasks[name]) for name in examples if tasks[name].labels and decode == "rank"}
    predictions: dict[str, list[str]] = {name: [""] * len(rows) for name, rows in examples.items()}
    weights: dict[str, list] = {name: [None] * len(rows) for name, rows in examples.items()}
    for indices in length_grouped_batches([len(i) for i in items], batch_size, shuffle=False):
        batch_items = [items[i] for i in indices]
        batch_owners = [owners[i] for i in indices]
        task_ids = [mixture.tasks.index(name) for name, _ in batch_owners]
        batch = lm.collate(backbone, batch_items, task_ids)
        prompt, attn = _instance_prompts(backbone, mixture, batch)
        texts = _decode_batch(backbone, prompt, batch, batch_items, batch_owners, task_ids, tasks, candidates, max_new_tokens)
        for k, (name, j) in enumerate(batch_owners):
            predictions[name][j] = texts[k]
            if attn is not None:
                weights[name][j] = attn[k].cpu().numpy()
        if on_batch:
            on_batch(len(indices))
    seconds = time.perf_counter() - started
    total = max(len(items), 1)
    results = {}
    for name, rows in examples.items():
        stacked = np.stack(weights[name]) if rows and weights[name][0] is not None else None
        results[name] = TaskEvaluation(
            task=name, metrics=compute_metrics(tasks[name], predictions[name], list(rows)),
            predictions=predictions[name], weights=stacked, examples=len(rows),
            seconds=seconds * len(rows) / total,  # shared batches: time is split by rows
        )
    return results


def _decode_batch(backbone, prompt, batch, items, owners, task_ids, tasks, candidates, max_new_tokens) -> list[str]:
    names = [name for name, _ in owners]
    if all(name in candidates for name in names):
        scores = lm.label_scores(backbone, prompt, items, [candidates[name] for name in names])
        return [tasks[name].labels[int(np.argmax(row))] for name, row in zip(names, scores)]
    sequences = lm.generate(backbone, prompt, batch, max_new_tokens)
    return [backbone.tokenizer.decode(seq, skip_special_tokens=True).strip() for seq in sequences]

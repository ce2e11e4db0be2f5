"""Evaluation: rank classification for label tasks, greedy generation for free-form outputs.

Rank classification scores every label's tokens and its closing EOS under the prompted model, as
training scores them, and takes the best: it is exact and never produces an invalid output. The
input is run once per batch; each label continues from its cached keys and values. (Without the EOS,
a label that is a token prefix of another, ``yes`` and ``yes sir``, would always win.)

Batches may mix rows of several tasks: each row gets its own task's instance prompt and is scored
against its own task's labels, so one loaded LM serves every task in one pass.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from attemptctl.engine.batching import length_grouped_batches
from attemptctl.method import lm
from attemptctl.method.backbones import Backbone
from attemptctl.method.mixture import PromptBank, PromptMixture
from attemptctl.tasks import Example, Task
from attemptctl.tasks.metrics import compute_metrics

DECODES = ("rank", "generate")

#: New tokens generated for a free-form answer when the prompt recorded no limit of its own (prompts
#: registered before limits were derived from the training answers); generation stops at EOS anyway.
DEFAULT_MAX_NEW_TOKENS = 64


def answer_token_limit(answer_lengths: Sequence[int]) -> int:
    """Tokens to generate for a task: its longest training answer (with EOS) plus a margin of a quarter, at least 4."""
    longest = max(answer_lengths, default=0)
    return longest + max(4, longest // 4) if longest else DEFAULT_MAX_NEW_TOKENS


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
    """Token ids of each label word as a target, with the closing EOS that training targets end with."""
    return [lm.encode(backbone, "", label, 1).target_ids for label in task.labels]


def _instance_prompts(backbone: Backbone, mixture: PromptMixture, batch: lm.Batch):
    input_embeds = backbone.embed(batch.input_ids)
    return mixture(batch.task_ids, input_embeds, batch.input_mask, share=True)


@torch.no_grad()
def evaluate(backbone: Backbone, mixture: PromptMixture | PromptBank, examples: Mapping[str, Sequence[Example]],
             tasks: Mapping[str, Task], *, max_length: int | Mapping[str, int | None] | None = None,
             batch_size: int = 32, decode: str = "rank", max_new_tokens: int | Mapping[str, int] = DEFAULT_MAX_NEW_TOKENS,
             score: bool = True, on_batch: Callable[[int], None] | None = None,
             scoring: str = lm.DEFAULT_SCORING) -> dict[str, TaskEvaluation]:
    """Score every slot's examples with one loaded LM; rows of different slots share batches.

    Slots are the mixture's tasks (or a :class:`PromptBank`'s slot names); ``max_length`` is one
    input length for all, or one per slot (None: the task's default); so is ``max_new_tokens``, the
    generation limit of free-form answers (see :func:`answer_token_limit`). ``score=False`` skips
    the metrics (inputs without gold outputs, as ``predict`` has).
    """
    if decode not in DECODES:
        raise ValueError(f"unknown decode {decode!r}; choose one of {', '.join(DECODES)}")
    if scoring not in lm.SCORINGS:
        raise ValueError(f"unknown label scoring {scoring!r}; choose one of {', '.join(lm.SCORINGS)}")
    mixture.eval().to(backbone.model.device)
    started = time.perf_counter()
    owners: list[tuple[str, int]] = []
    items: list[lm.Encoded] = []
    for task_name, rows in examples.items():
        for j, example in enumerate(rows):
            owners.append((task_name, j))
            limit = max_length.get(task_name) if isinstance(max_length, Mapping) else max_length
            items.append(lm.encode(backbone, example.input, None, limit or tasks[task_name].max_length, example.cut))
    candidates = {name: label_candidates(backbone, tasks[name]) for name in examples if tasks[name].labels and decode == "rank"}
    predictions: dict[str, list[str]] = {name: [""] * len(rows) for name, rows in examples.items()}
    weights: dict[str, list] = {name: [None] * len(rows) for name, rows in examples.items()}
    for indices in length_grouped_batches([len(i) for i in items], batch_size, shuffle=False):
        batch_items = [items[i] for i in indices]
        batch_owners = [owners[i] for i in indices]
        task_ids = [mixture.tasks.index(name) for name, _ in batch_owners]
        batch = lm.collate(backbone, batch_items, task_ids)
        prompt, attn = _instance_prompts(backbone, mixture, batch)
        names = [name for name, _ in batch_owners]
        limits = [max_new_tokens.get(name, DEFAULT_MAX_NEW_TOKENS) if isinstance(max_new_tokens, Mapping)
                  else max_new_tokens for name in names]
        with backbone.autocast():  # the LM only: instance prompts and G stay float32
            texts = _decode_batch(backbone, prompt, batch_items, names, tasks, candidates, limits, scoring)
        rows = _on_host(attn)
        for k, (name, j) in enumerate(batch_owners):
            predictions[name][j] = texts[k]
            if rows is not None and rows[k] is not None:
                weights[name][j] = rows[k]
        if on_batch:
            on_batch(len(indices))
    seconds = time.perf_counter() - started
    total = max(len(items), 1)
    results = {}
    for name, rows in examples.items():
        stacked = np.stack(weights[name]) if rows and weights[name][0] is not None else None
        results[name] = TaskEvaluation(
            task=name, metrics=compute_metrics(tasks[name], predictions[name], list(rows)) if score else {},
            predictions=predictions[name], weights=stacked, examples=len(rows),
            seconds=seconds * len(rows) / total,  # shared batches: time is split by rows
        )
    return results


def _on_host(attn) -> list | None:
    """A batch's attention weights as numpy rows, in one transfer per batch (not one per row): a tensor
    (B, t+1), or a prompt bank's per-row list (rows of one mixture share a width)."""
    if attn is None:
        return None
    if isinstance(attn, torch.Tensor):
        return list(attn.float().cpu().numpy())
    present = [w for w in attn if w is not None]
    if not present:
        return list(attn)
    if len({tuple(w.shape) for w in present}) == 1:
        stacked = iter(torch.stack(present).float().cpu().numpy())
        return [None if w is None else next(stacked) for w in attn]
    return [None if w is None else w.float().cpu().numpy() for w in attn]


def _decode_batch(backbone, prompt, items, names, tasks, candidates, limits, scoring: str = "sum") -> list[str]:
    """Label rows by rank classification, the others by greedy generation (row k: at most ``limits[k]``
    new tokens), from one batch's prompts."""
    texts = [""] * len(names)
    ranked = [k for k, name in enumerate(names) if name in candidates]
    free = [k for k, name in enumerate(names) if name not in candidates]

    def rows_of(selected: list[int]) -> torch.Tensor:
        return prompt if prompt.dim() == 2 else prompt[selected]  # a shared (m, d) prompt serves any rows

    if ranked:
        scores = lm.label_scores(backbone, rows_of(ranked), [items[k] for k in ranked],
                                 [candidates[names[k]] for k in ranked], scoring)
        for k, row in zip(ranked, scores):
            texts[k] = tasks[names[k]].labels[int(np.argmax(row))]
    if free:
        batch = lm.collate(backbone, [items[k] for k in free], [0] * len(free))
        generated = lm.generate(backbone, rows_of(free), batch, max(limits[k] for k in free))
        for k, sequence in zip(free, generated):
            texts[k] = backbone.tokenizer.decode(sequence[:limits[k]], skip_special_tokens=True).strip()
    return texts

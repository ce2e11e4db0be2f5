"""One mixed batch through the frozen LM: rows of any prompts, each row with its own prompt.

Label rows are ranked as ``eval`` ranks them (:func:`~attemptctl.method.lm.label_score_table`, every
label's tokens and closing EOS, summed log-probabilities). In a decoder-only LM the prompt comes first,
so the batch's prompt positions are a :class:`~attemptctl.method.lm.Prefix`: the cached keys and values
of the prompts that do not depend on the input, beside those of the ATTEMPT rows' instance prompts
(computed for this batch), joined row by row; the input tokens then run once for all rows. An
encoder-decoder LM (T5) gets the (B, m, d) instance prompts in front of its encoder input.

Free-form rows are generated greedily by :func:`~attemptctl.engine.evaluate.evaluate` over a
:class:`~attemptctl.method.mixture.PromptBank` of their prompts, exactly as ``predict`` generates.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from attemptctl.engine.evaluate import evaluate
from attemptctl.method import lm
from attemptctl.method.backbones import Backbone
from attemptctl.method.mixture import PromptBank
from attemptctl.serving.prompts import ServedPrompt
from attemptctl.tasks import Example

SCORING = lm.DEFAULT_SCORING
"""How a label's score is read (``eval``'s and ``predict``'s default: the summed log-probability)."""


@dataclass(frozen=True)
class Row:
    """One input to answer with one prompt."""

    prompt: ServedPrompt
    example: Example


@dataclass(frozen=True)
class Answer:
    """A row's answer: a label and every label's score (label tasks) or generated text (free-form), and the
    row's attention over its prompt's columns (prompts that mix sources)."""

    label: str | None = None
    scores: dict[str, float] | None = None
    text: str | None = None
    attention: dict[str, float] | None = None

    def as_json(self) -> dict:
        found = {"label": self.label, "scores": self.scores} if self.label is not None else {"text": self.text}
        return found if self.attention is None else {**found, "attention": self.attention}


@torch.no_grad()
def answer_rows(backbone: Backbone, rows: Sequence[Row]) -> list[Answer]:
    """Answer every row; rows of one prompt length and kind of output share one forward pass."""
    answers: list[Answer | None] = [None] * len(rows)
    groups: dict[tuple[int, bool], list[int]] = defaultdict(list)
    for k, row in enumerate(rows):
        groups[row.prompt.length, row.prompt.candidates is not None].append(k)
    for (_, ranked), indices in groups.items():
        part = [rows[k] for k in indices]
        for k, answer in zip(indices, _ranked(backbone, part) if ranked else _generated(backbone, part)):
            answers[k] = answer
    return answers  # type: ignore[return-value]


def _ranked(backbone: Backbone, rows: Sequence[Row]) -> list[Answer]:
    """Label rows of one prompt length: one input pass, each row scored against its own task's labels."""
    by_prompt: dict[str, list[int]] = defaultdict(list)
    for k, row in enumerate(rows):
        by_prompt[row.prompt.key].append(k)
    order = [k for ks in by_prompt.values() for k in ks]  # rows of one prompt side by side
    items = [rows[k].prompt.encode(backbone, rows[k].example.input, rows[k].example.cut) for k in range(len(rows))]
    parts, weights = [], [None] * len(rows)
    for ks in by_prompt.values():
        served = rows[ks[0]].prompt
        part, part_weights = _prompt_part(backbone, served, [items[k] for k in ks])
        parts.append(part)
        if part_weights is not None:
            for k, w in zip(ks, part_weights.float().cpu().numpy()):
                weights[k] = w
    prompt = lm.Prefix.join(parts) if isinstance(parts[0], lm.Prefix) else torch.cat(parts)
    with backbone.autocast():
        table = lm.label_score_table(backbone, prompt, [items[k] for k in order],
                                     [rows[k].prompt.candidates for k in order])
    answers: list[Answer | None] = [None] * len(rows)
    for k, scored in zip(order, table):
        labels = rows[k].prompt.task.labels
        values = [s[SCORING] for s in scored]
        answers[k] = Answer(label=labels[int(np.argmax(values))], scores=dict(zip(labels, values)),
                            attention=_attention(rows[k].prompt, weights[k]))
    return answers  # type: ignore[return-value]


def _prompt_part(backbone: Backbone, served: ServedPrompt, items: Sequence[lm.Encoded]):
    """The prompt positions of one prompt's rows: a :class:`~attemptctl.method.lm.Prefix` (decoder-only)
    or (n, m, d) instance prompts; and their attention weights (n, t+1) or None."""
    n = len(items)
    if served.fixed is not None:
        weights = None if served.fixed_weights is None else served.fixed_weights.expand(n, -1)
        if served.prefix is not None:
            return served.prefix.rows(n), weights
        return served.fixed.expand(n, *served.fixed.shape), weights
    batch = lm.collate(backbone, items, [0] * n)
    prompts, weights = served.mixture(batch.task_ids, backbone.embed(batch.input_ids), batch.input_mask)
    if backbone.is_encoder_decoder:
        return prompts, weights
    with backbone.autocast():
        return lm.prompt_prefix(backbone, prompts), weights


def _generated(backbone: Backbone, rows: Sequence[Row]) -> list[Answer]:
    """Free-form rows of one prompt length, generated together as ``predict`` generates them."""
    slots: dict[str, ServedPrompt] = {}
    examples: dict[str, list[Example]] = defaultdict(list)
    where: list[tuple[str, int]] = []
    for row in rows:
        slots.setdefault(row.prompt.key, row.prompt)
        where.append((row.prompt.key, len(examples[row.prompt.key])))
        examples[row.prompt.key].append(row.example)
    bank = PromptBank({key: (served.mixture, served.task.name) for key, served in slots.items()})
    results = evaluate(backbone, bank, examples, {key: served.task for key, served in slots.items()},
                       max_length={key: served.max_length for key, served in slots.items()},
                       max_new_tokens={key: served.max_new_tokens for key, served in slots.items()},
                       batch_size=len(rows), score=False)
    return [Answer(text=results[key].predictions[j],
                   attention=_attention(slots[key], None if results[key].weights is None else results[key].weights[j]))
            for key, j in where]


def _attention(served: ServedPrompt, weights: np.ndarray | torch.Tensor | None) -> dict[str, float] | None:
    if weights is None:
        return None
    values = weights.float().cpu().tolist() if isinstance(weights, torch.Tensor) else weights.tolist()
    return dict(zip(served.mixture.columns, map(float, values)))

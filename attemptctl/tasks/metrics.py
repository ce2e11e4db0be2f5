"""Task metrics in plain Python and numpy, as fractions in [0, 1] (correlations in [-1, 1]).

Predictions are output strings. An output that is not a valid answer (not a label word, not a
number) counts as wrong and never raises: generation can emit anything, and one stray string
must not lose a whole evaluation. Undefined values (no examples, a constant series, no positive
class anywhere) are 0.0 rather than NaN, as scikit-learn's ``zero_division=0`` gives.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # only for annotations: metrics never needs the catalogue at run time
    from attemptctl.tasks.base import Example, Task

Metric = Callable[["Task", Sequence[str], Sequence["Example"]], float]

STSB_INVALID = -1.0
"""Score given to an STS-B output that is not a number (T5's string_to_float default)."""


# ---- primitives on plain sequences (what the tests pin against scikit-learn and scipy) ----


def accuracy_score(y_true: Sequence[Hashable], y_pred: Sequence[Hashable]) -> float:
    if not y_true:
        return 0.0
    return sum(t == p for t, p in zip(y_true, y_pred, strict=True)) / len(y_true)


def binary_f1(y_true: Sequence[Hashable], y_pred: Sequence[Hashable], positive: Hashable) -> float:
    """F1 of the ``positive`` class; anything else in ``y_pred`` counts as a negative prediction."""
    pairs = list(zip(y_true, y_pred, strict=True))
    tp = sum(t == positive and p == positive for t, p in pairs)
    fp = sum(t != positive and p == positive for t, p in pairs)
    fn = sum(t == positive and p != positive for t, p in pairs)
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def macro_f1(
    y_true: Sequence[Hashable], y_pred: Sequence[Hashable], classes: Sequence[Hashable]
) -> float:
    """Mean per-class F1 over every one of ``classes``, as T5 and the paper score CB.

    This is scikit-learn's ``f1_score(labels=classes, average="macro", zero_division=0)``
    (T5's ``mean_multiclass_f1``): a class absent from gold and predictions still counts, with
    F1 0. A prediction outside ``classes`` only costs its row; it adds no class of its own.
    """
    if not y_true or not classes:
        return 0.0
    return sum(binary_f1(y_true, y_pred, c) for c in classes) / len(classes)


def matthews_corrcoef(y_true: Sequence[Hashable], y_pred: Sequence[Hashable]) -> float:
    """Multiclass Matthews correlation (Gorodkin's R_K, scikit-learn's formula)."""
    classes = sorted(set(y_true) | set(y_pred), key=repr)
    index = {c: i for i, c in enumerate(classes)}
    confusion = np.zeros((len(classes), len(classes)), dtype=np.float64)
    for t, p in zip(y_true, y_pred, strict=True):
        confusion[index[t], index[p]] += 1
    true_counts, pred_counts = confusion.sum(axis=1), confusion.sum(axis=0)
    n, correct = confusion.sum(), np.trace(confusion)
    cov_tp = correct * n - true_counts @ pred_counts
    cov_pp = n * n - pred_counts @ pred_counts
    cov_tt = n * n - true_counts @ true_counts
    denominator = np.sqrt(cov_pp * cov_tt)
    return float(cov_tp / denominator) if denominator else 0.0


def pearson_corr(x: Sequence[float], y: Sequence[float]) -> float:
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if a.size < 2:
        return 0.0
    a, b = a - a.mean(), b - b.mean()
    denominator = np.sqrt((a @ a) * (b @ b))
    return float(np.clip((a @ b) / denominator, -1.0, 1.0)) if denominator else 0.0


def spearman_corr(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson correlation of the ranks, ties sharing their average rank (scipy's default)."""
    return pearson_corr(_average_ranks(x), _average_ranks(y))


def _average_ranks(values: Sequence[float]) -> np.ndarray:
    data = np.asarray(values, dtype=np.float64)
    order = np.argsort(data, kind="mergesort")
    ranks = np.empty(data.size, dtype=np.float64)
    sorted_values = data[order]
    start = 0
    while start < data.size:
        end = start
        while end + 1 < data.size and sorted_values[end + 1] == sorted_values[start]:
            end += 1
        ranks[order[start : end + 1]] = (start + end) / 2 + 1
        start = end + 1
    return ranks


def normalize_answer(text: str) -> str:
    """SQuAD's answer normalisation: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


_PUNCTUATION = frozenset(string.punctuation)


def squad_exact(prediction: str, answers: Sequence[str]) -> float:
    """1.0 when the normalised prediction equals any normalised gold answer."""
    guess = normalize_answer(prediction)
    return float(any(guess == normalize_answer(a) for a in answers))


def squad_token_f1(prediction: str, answers: Sequence[str]) -> float:
    """Best token-overlap F1 against the gold answers (the SQuAD v1.1 script's definition)."""
    guess = normalize_answer(prediction).split()
    best = 0.0
    for answer in answers:
        gold = normalize_answer(answer).split()
        common = sum((Counter(guess) & Counter(gold)).values())
        if common:
            precision, recall = common / len(guess), common / len(gold)
            best = max(best, 2 * precision * recall / (precision + recall))
        elif not guess and not gold:  # both normalise to nothing: an exact match
            best = 1.0
    return best


# ---- task-level metrics: (task, predictions, examples) -> float ----


def _clean(predictions: Sequence[str]) -> list[str]:
    return [p.strip() if isinstance(p, str) else "" for p in predictions]


def _accuracy(task: Task, predictions: Sequence[str], examples: Sequence[Example]) -> float:
    return accuracy_score([e.target for e in examples], _clean(predictions))


def _f1(task: Task, predictions: Sequence[str], examples: Sequence[Example]) -> float:
    # The positive class is label index 1 (duplicate, equivalent, True), as GLUE scores it.
    positive = task.labels[1] if task.labels else None
    return binary_f1([e.target for e in examples], _clean(predictions), positive)


def _macro_f1(task: Task, predictions: Sequence[str], examples: Sequence[Example]) -> float:
    return macro_f1([e.target for e in examples], _clean(predictions), task.labels or ())


def _matthews(task: Task, predictions: Sequence[str], examples: Sequence[Example]) -> float:
    # Every invalid output becomes one extra class: wrong for its row, never a crash.
    valid = set(task.labels or ())
    guesses = [p if p in valid else None for p in _clean(predictions)]
    return matthews_corrcoef([e.target for e in examples], guesses)


def _scores(task: Task, predictions: Sequence[str], examples: Sequence[Example]):
    return [_to_float(e.target) for e in examples], [_to_float(p) for p in _clean(predictions)]


def _to_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        return STSB_INVALID
    return value if np.isfinite(value) else STSB_INVALID


def _pearson(task: Task, predictions: Sequence[str], examples: Sequence[Example]) -> float:
    return pearson_corr(*_scores(task, predictions, examples))


def _spearman(task: Task, predictions: Sequence[str], examples: Sequence[Example]) -> float:
    return spearman_corr(*_scores(task, predictions, examples))


def _group_em(task: Task, predictions: Sequence[str], examples: Sequence[Example]) -> float:
    """Fraction of groups (MultiRC questions) with every row right; a row without a group is one."""
    all_right: dict[object, bool] = {}
    for i, (guess, example) in enumerate(zip(_clean(predictions), examples, strict=True)):
        key = example.group if example.group is not None else ("row", i)
        all_right[key] = all_right.get(key, True) and guess == example.target
    return sum(all_right.values()) / len(all_right) if all_right else 0.0


def _gold_answers(example: Example) -> Sequence[str]:
    return example.answers or (example.target,)


def _squad_em(task: Task, predictions: Sequence[str], examples: Sequence[Example]) -> float:
    pairs = list(zip(_clean(predictions), examples, strict=True))
    return sum(squad_exact(p, _gold_answers(e)) for p, e in pairs) / len(pairs) if pairs else 0.0


def _squad_f1(task: Task, predictions: Sequence[str], examples: Sequence[Example]) -> float:
    pairs = list(zip(_clean(predictions), examples, strict=True))
    return sum(squad_token_f1(p, _gold_answers(e)) for p, e in pairs) / len(pairs) if pairs else 0.0


METRICS: dict[str, Metric] = {
    "accuracy": _accuracy,
    "f1": _f1,
    "macro_f1": _macro_f1,
    "matthews": _matthews,
    "pearson": _pearson,
    "spearman": _spearman,
    "group_em": _group_em,
    "squad_em": _squad_em,
    "squad_f1": _squad_f1,
}


def primary_metric(task: Task) -> str:
    """The metric a task is ranked by (best checkpoint, reports): its first."""
    return task.metrics[0]


def compute_metrics(
    task: Task, predictions: Sequence[str], examples: Sequence[Example]
) -> dict[str, float]:
    """Every metric of ``task``; ValueError if predictions and examples differ in number."""
    if len(predictions) != len(examples):
        raise ValueError(
            f"{task.name}: {len(predictions)} predictions for {len(examples)} examples"
        )
    return {name: float(METRICS[name](task, predictions, examples)) for name in task.metrics}


@dataclass(frozen=True)
class ConstantAnswer:
    """One label answered for every row, and what it scores: the floor a prompt's score is read against."""

    answer: str
    metrics: dict[str, float]


def constant_answer(task: Task, examples: Sequence[Example], metric: str | None = None) -> ConstantAnswer | None:
    """The label that, answered for every one of ``examples``, scores best in ``metric`` (default: the
    task's primary; ties go to the earlier label), with every metric of the task for it. None for a
    free-form task (no label to repeat) or no rows. E.g. MRPC's is the F1 of always "equivalent"."""
    if not task.labels or not examples:
        return None
    metric = metric or primary_metric(task)
    scored = [ConstantAnswer(label, compute_metrics(task, [label] * len(examples), examples)) for label in task.labels]
    return max(scored, key=lambda constant: constant.metrics[metric])

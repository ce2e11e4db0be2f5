"""A study cell's per-row test answers, kept when the cell is scored so that its difference from PT can
be tested later from the registry or the exports alone (:mod:`attemptctl.studies.intervals`).

A cell keeps its predictions; the gold answers of its test rows are kept once per set of rows (one
target at one seed), under a digest of the rows that also shows two cells were scored on the same
ordered rows. Both stay small, as exports are committed: a label task's answers are one character per
row, the label's index (``0``…``9``, ``a``…``z``), ``.`` for an output that is no label (every such
output scores alike: wrong, with no class of its own); a free-form task keeps its strings. A label's
index does not depend on the words a cell answered in (``--labels index``, borrowed words), so the
answers are read back in the catalogue task's own words. Torch-free.
"""

from __future__ import annotations

import hashlib
import json
import string
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from attemptctl.tasks.base import Example

if TYPE_CHECKING:
    from attemptctl.tasks.base import Task
    from registry import PromptRecord, Registry

SYMBOLS = string.digits + string.ascii_lowercase
NO_LABEL = "."
Stored = str | list[str]
"""Encoded answers: one symbol per row for a label task, the strings for a free-form one."""


def encode(task: Task, answers: Sequence[str]) -> Stored | None:
    """``answers`` as stored; None for a label task with more labels than symbols (not kept)."""
    if not task.labels:
        return [str(a) for a in answers]
    if len(task.labels) > len(SYMBOLS):
        return None
    symbol = {label: SYMBOLS[i] for i, label in enumerate(task.labels)}
    return "".join(symbol.get(a.strip() if isinstance(a, str) else a, NO_LABEL) for a in answers)


def decode(task: Task, stored: Stored) -> list[str]:
    """Stored answers as the metrics read them: a label task's in ``task``'s words (``""``: no label)."""
    if not isinstance(stored, str):
        return list(stored)
    if not task.labels:
        raise ValueError(f"{task.name} answers free-form, not by label index")
    indices = [SYMBOLS.find(s) for s in stored]
    if any(i >= len(task.labels) or (i < 0 and s != NO_LABEL) for i, s in zip(indices, stored)):
        raise ValueError(f"answers {stored[:20]!r} name a label {task.name} does not have")
    return [task.labels[i] if i >= 0 else "" for i in indices]


def gold_of(task: Task, examples: Sequence[Example]) -> dict:
    """What the metrics need of the test rows: targets (label indices or strings), answers, groups."""
    targets = [e.target for e in examples]
    gold: dict = {"labels": encode(task, targets)} if task.labels else {"targets": targets}
    if any(e.answers for e in examples):
        gold["answers"] = [list(e.answers) for e in examples]
    if any(e.group is not None for e in examples):
        gold["groups"] = [e.group for e in examples]
    gold["ids"] = [row_id(e) for e in examples]
    return gold


def row_id(example: Example) -> str:
    """A short name of one test row, from its input: the same row under two seeds (the same validation row in
    another order, or in both seeds' halves) has the same id, so intervals resample it once."""
    return hashlib.sha256(example.input.encode()).hexdigest()[:12]


def row_ids(gold: Mapping) -> list[str] | None:
    """The rows' ids as :func:`gold_of` keeps them; None for rows kept before ids were."""
    ids = gold.get("ids")
    return None if ids is None else [str(i) for i in ids]


def examples_of(task: Task, gold: Mapping) -> list[Example]:
    """The test rows back from :func:`gold_of`'s record (without their inputs, which no metric reads)."""
    targets = decode(task, gold["labels"]) if "labels" in gold else [str(t) for t in gold["targets"]]
    answers = gold.get("answers") or [()] * len(targets)
    groups = gold.get("groups") or [None] * len(targets)
    if not len(targets) == len(answers) == len(groups):
        raise ValueError(f"{task.name}: the stored test rows disagree on their number")
    labels = task.labels or ()
    return [Example(task.name, "", target, labels.index(target) if target in labels else None, tuple(a), g)
            for target, a, g in zip(targets, answers, groups)]


def rows_digest(target: str, seed: int, examples: Sequence[Example], gold: Mapping) -> str:
    """Names one ordered set of test rows: two cells pair only when they were scored on the same. The row ids
    are left out, so rows kept before ids were have the same digest."""
    text = json.dumps([target, seed, [e.input for e in examples], {k: v for k, v in gold.items() if k != "ids"}],
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def answers_key(record: PromptRecord) -> str:
    return f"study-answers/{record.ref}/{record.sha256[:16]}"


def rows_key(digest: str) -> str:
    return f"study-test-rows/{digest}"


def keep_answers(registry: Registry, record: PromptRecord, task: Task, predictions: Sequence[str],
                 examples: Sequence[Example]) -> None:
    """Store a scored cell's predictions, and its test rows' gold answers under their digest, in the
    registry's cache; a task whose answers cannot be encoded keeps none."""
    stored, gold = encode(task, predictions), gold_of(task, examples)
    if stored is None or gold.get("labels", "") is None:
        return
    seed = int(record.config.get("seed", 42))
    digest = rows_digest(record.task, seed, examples, gold)
    registry.put_cache(rows_key(digest), json.dumps({"target": record.task, "seed": seed, **gold}).encode())
    registry.put_cache(answers_key(record), json.dumps({"test_rows": digest, "predictions": stored}).encode())


def stored_answers(registry: Registry, record: PromptRecord) -> tuple[str, Stored, dict] | None:
    """(digest, predictions, gold record) of a cell scored since answers are kept; None before."""
    payload = registry.get_cache(answers_key(record))
    if payload is None:
        return None
    answers = json.loads(payload)
    rows = registry.get_cache(rows_key(answers["test_rows"]))
    return None if rows is None else (answers["test_rows"], answers["predictions"], json.loads(rows))

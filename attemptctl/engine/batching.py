"""Length-grouped batches: rows of similar length share a batch, so padding wastes little compute.

Each batch is padded only to its own longest row (:func:`attemptctl.method.lm.collate`). For training,
indices are shuffled, cut into windows of ``batch_size * window`` rows, sorted by length inside a
window and the resulting batches shuffled again: batches stay random, padding stays small.

Multi-task training (``groups``: each row's task) must keep batches mixed, as the paper's are:
sorting a window by length alone puts the tasks of different typical lengths into batches of their
own. Inside a window each task's rows are sorted by length on their own and dealt out by length
quantile, so every batch holds each task's share of the window, at similar lengths within a task
(docs/method.md has the measured padding and mixing).

Training groups rows by task *and label* (:func:`label_groups`): sorting by length alone gathers the
rows of one label where its inputs run longer or shorter (RTE's entailed pairs, say), so a batch's
label shares drift far from the task's; dealt out by quantile per (task, label), every batch holds
each label's share too.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

WINDOW_BATCHES = 50


def label_groups(task_ids: Sequence[int], labels: Sequence[int | None]) -> list[int]:
    """One group id per row for each (task, label) pair, for ``length_grouped_batches(groups=…)``; a row
    with no label (a free-form task) groups with its task's other unlabelled rows."""
    ids: dict[tuple[int, int | None], int] = {}
    return [ids.setdefault((task, label), len(ids)) for task, label in zip(task_ids, labels)]


def length_grouped_batches(lengths: Sequence[int], batch_size: int, *, shuffle: bool, seed: int = 0,
                           groups: Sequence[int] | None = None) -> list[list[int]]:
    """Split ``range(len(lengths))`` into batches of at most ``batch_size`` indices of similar length.

    ``groups`` (one id per row, e.g. its task) keeps every training batch a mix of the groups in
    proportion to their share of the window.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    order = list(range(len(lengths)))
    rng = random.Random(seed)
    if shuffle:
        rng.shuffle(order)
        window = batch_size * WINDOW_BATCHES
        chunks = [_by_length(order[i:i + window], lengths, groups) for i in range(0, len(order), window)]
        order = [i for chunk in chunks for i in chunk]
    else:
        order.sort(key=lambda i: (lengths[i], i))
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if shuffle:
        rng.shuffle(batches)
    return batches


def _by_length(rows: list[int], lengths: Sequence[int], groups: Sequence[int] | None) -> list[int]:
    """``rows`` by length; with groups, interleaved by each row's length quantile within its group."""
    if groups is None or len({groups[i] for i in rows}) < 2:
        return sorted(rows, key=lengths.__getitem__)
    members: dict[int, list[int]] = {}
    for i in rows:
        members.setdefault(groups[i], []).append(i)
    keyed = []
    for group_rows in members.values():
        group_rows.sort(key=lengths.__getitem__)
        keyed += [((rank + 0.5) / len(group_rows), i) for rank, i in enumerate(group_rows)]
    return [i for _, i in sorted(keyed)]

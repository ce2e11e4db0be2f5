"""Length-grouped batches: rows of similar length share a batch, so padding wastes little compute.

Each batch is padded only to its own longest row (:func:`attemptctl.model.collate`). For training,
indices are shuffled, cut into windows of ``batch_size * window`` rows, sorted by length inside a
window and the resulting batches shuffled again: batches stay random, padding stays small.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

WINDOW_BATCHES = 50


def length_grouped_batches(lengths: Sequence[int], batch_size: int, *, shuffle: bool,
                           seed: int = 0) -> list[list[int]]:
    """Split ``range(len(lengths))`` into batches of at most ``batch_size`` indices of similar length."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    order = list(range(len(lengths)))
    rng = random.Random(seed)
    if shuffle:
        rng.shuffle(order)
        window = batch_size * WINDOW_BATCHES
        chunks = [sorted(order[i:i + window], key=lengths.__getitem__) for i in range(0, len(order), window)]
        order = [i for chunk in chunks for i in chunk]
    else:
        order.sort(key=lambda i: (lengths[i], i))
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    if shuffle:
        rng.shuffle(batches)
    return batches

"""Training batches: how much padding they carry, how often they mix tasks, how far their labels drift.

Compares four ways to cut one epoch of training rows (real SmolLM2 token lengths) into batches:
random batches (no length grouping), length grouping by window alone (attemptctl before its first
fix: tasks of different typical lengths end up in batches of their own), length grouping within each
task's share of the window (before the second fix: one task's labels drift where their lengths differ),
and within each (task, label)'s share (what training uses now).

    python benchmarks/batch_mixing.py --data-dir DIR [--tasks rte,cb,boolq] [--batch-size 16]
    python benchmarks/batch_mixing.py --data-dir DIR --tasks rte --batch-size 8   # one task's labels

Label drift: for each batch and each task in it, how far the share of the task's majority label in the
batch is from its share in the task's rows (absolute difference), averaged over (batch, task) pairs.
"""

from __future__ import annotations

import argparse
import random
import statistics
from collections import Counter


def _stats(batches, lengths, groups, labels) -> tuple[float, float, float]:
    """(padding share of all tokens, share of batches holding rows of at least two tasks, label drift)."""
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    real = sum(lengths[i] for b in batches for i in b)
    mixed = sum(len({groups[i] for i in b}) > 1 for b in batches)
    majority, share = {}, {}
    for task in set(groups):
        counts = Counter(labels[i] for i in range(len(labels)) if groups[i] == task)
        majority[task], top = counts.most_common(1)[0]
        share[task] = top / sum(counts.values())
    drift = [abs(sum(labels[i] == majority[task] for i in rows) / len(rows) - share[task])
             for b in batches for task in {groups[i] for i in b}
             for rows in [[i for i in b if groups[i] == task]]]
    return 1 - real / padded, mixed / len(batches), statistics.mean(drift)


def _random(n: int, batch_size: int, seed: int) -> list[list[int]]:
    order = list(range(n))
    random.Random(seed).shuffle(order)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def main() -> None:
    from attemptctl.engine.batching import label_groups, length_grouped_batches
    from attemptctl.method import lm
    from attemptctl.method.backbones import load_backbone
    from attemptctl.tasks import get_task
    from attemptctl.tasks.data import load_task

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--tasks", default="rte,cb,boolq")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--backbone", default="smollm2-135m")
    parser.add_argument("--epochs", type=int, default=5, help="seeds to average over")
    args = parser.parse_args()
    backbone = load_backbone(args.backbone)
    lengths, groups, labels = [], [], []
    for k, name in enumerate(args.tasks.split(",")):
        for example in load_task(get_task(name), data_dir=args.data_dir, seed=42).train:
            lengths.append(len(lm.encode(backbone, example.input, example.target, args.max_length, example.cut)))
            groups.append(k)
            labels.append(example.label)
    by_label = label_groups(groups, labels)
    ways = {
        "random batches": lambda seed: _random(len(lengths), args.batch_size, seed),
        "length-grouped by window": lambda seed: length_grouped_batches(lengths, args.batch_size, shuffle=True, seed=seed),
        "length-grouped per task": lambda seed: length_grouped_batches(lengths, args.batch_size, shuffle=True,
                                                                      seed=seed, groups=groups),
        "length-grouped per task and label (now)": lambda seed: length_grouped_batches(
            lengths, args.batch_size, shuffle=True, seed=seed, groups=by_label),
    }
    print(f"{args.tasks}: {len(lengths)} rows, batch {args.batch_size}, inputs up to {args.max_length} tokens, "
          f"{args.epochs} shuffles")
    print(f"{'batching':42} {'padding':>8} {'mixed batches':>14} {'label drift':>12}")
    for name, make in ways.items():
        runs = [_stats(make(seed), lengths, groups, labels) for seed in range(args.epochs)]
        print(f"{name:42} {statistics.mean(r[0] for r in runs):8.1%} {statistics.mean(r[1] for r in runs):14.1%} "
              f"{statistics.mean(r[2] for r in runs):12.3f}")


if __name__ == "__main__":
    main()

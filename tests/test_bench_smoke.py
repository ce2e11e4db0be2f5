"""The benchmark script runs end to end on a tiny model and fills every row (its timings are not checked), and\nits anchors: training speed-ups against the faster PEFT row, the Trainer's length-grouped order."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

pytest.importorskip("peft")

ROOT = Path(__file__).resolve().parents[1]


def test_every_row_is_measured(tiny_causal_dir, real_data_dir, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))  # benchmarks/ is not installed; it runs from a checkout
    bench = importlib.import_module("benchmarks.bench")
    out = tmp_path / "bench.json"
    result = bench.main(["--backbone", str(tiny_causal_dir), "--data-dir", str(real_data_dir), "--steps", "1",
                         "--warmup", "1", "--repeats", "1", "--batch-size", "2", "--prompt-length", "4",
                         "--max-length", "32", "--eval-examples", "2", "--json", str(out)])

    rows = {row.name: row for row in result["rows"]}
    assert list(rows) == list(bench.ROWS)
    for name, row in rows.items():
        assert row.error is None, f"{name}: {row.error}"
        assert row.seconds_per_step > 0, name
        if name == "help":
            continue
        assert row.examples_per_s > 0 and row.tokens_per_s > 0 and row.ratio > 0, name
        assert row.peak_mib is not None and row.peak_mib >= 0, name
    # Training rows are held against the faster PEFT row (whichever it was), evaluation against generate.
    best = max(rows[name].examples_per_s for name in bench.PEFT_TRAIN_ROWS)
    for name in bench.TRAIN_ROWS:
        assert rows[name].ratio == pytest.approx(rows[name].examples_per_s / best), name
    for name in bench.EVAL_ROWS:
        assert rows[name].ratio == pytest.approx(rows[name].examples_per_s / rows["peft-generate"].examples_per_s), name
    fastest = max(bench.PEFT_TRAIN_ROWS, key=lambda name: rows[name].examples_per_s)
    training_goals = [g for g in result["goals"] if g["goal"].startswith(("source-train", "attempt-train"))]
    assert len(training_goals) == 2 and all(f"x {fastest}, " in g["goal"] for g in training_goals)
    saved = json.loads(out.read_text())
    assert [row["name"] for row in saved["rows"]] == list(bench.ROWS)
    assert saved["settings"]["batch_size"] == 2 and len(saved["goals"]) == 5


def _row(bench, name: str, examples_per_s: float):
    return bench.Row(name, name, examples_per_s=examples_per_s)


def test_training_goals_use_the_faster_peft_row(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    bench = importlib.import_module("benchmarks.bench")
    for plain, grouped, anchor in ((1.0, 2.0, "peft-train-grouped"), (3.0, 2.0, "peft-train")):
        rows = [_row(bench, "peft-train", plain), _row(bench, "peft-train-grouped", grouped),
                _row(bench, "source-train", 5.0), _row(bench, "attempt-train", 2.8),
                _row(bench, "peft-generate", 1.0), _row(bench, "rank-eval", 6.0), _row(bench, "generate-eval", 2.0)]
        bench._ratios(rows)
        faster = max(plain, grouped)
        assert [round(r.ratio, 6) for r in rows[:4]] == [round(v / faster, 6) for v in (plain, grouped, 5.0, 2.8)]
        source, attempt = (next(g for g in bench.goals(rows) if g["goal"].startswith(name))
                           for name in ("source-train", "attempt-train"))
        assert f"x {anchor}, " in source["goal"] and f"x {anchor}, " in attempt["goal"]
        assert source["value"] == pytest.approx(5.0 / faster) and source["met"] == (5.0 / faster >= 2.5)
        assert attempt["value"] == pytest.approx(2.8 / faster) and attempt["met"] == (2.8 / faster >= 1.3)


def test_grouped_order_is_the_trainers_length_grouping(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))
    runners = importlib.import_module("benchmarks.runners")
    import random

    lengths = [random.Random(i).randint(10, 200) for i in range(160)]
    batch = 8
    order = runners.length_grouped_order(lengths, batch, seed=42)
    assert sorted(order) == list(range(160)) and order == runners.length_grouped_order(lengths, batch, seed=42)
    assert max(lengths) in [lengths[i] for i in order[:batch]]  # the longest batch first
    mega = min(160 // (4 * batch), 50) * batch  # the Trainer's megabatch: 5 batches here
    for start in range(0, 160, mega):
        inside = [lengths[i] for i in order[start:start + mega]][1:]  # [0] may be the swapped-in longest row
        assert inside == sorted(inside, reverse=True)

    def padding(sequence):
        return sum(max(lengths[i] for i in part) * len(part) - sum(lengths[i] for i in part)
                   for part in (sequence[s:s + batch] for s in range(0, len(sequence), batch)))

    shuffled = list(range(160))
    random.Random(42).shuffle(shuffled)
    assert padding(order) < padding(shuffled) / 2

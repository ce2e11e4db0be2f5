"""The benchmark script runs end to end on a tiny model and fills every row (its numbers are not checked)."""

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
    assert rows["peft-train"].ratio == pytest.approx(1.0) and rows["peft-generate"].ratio == pytest.approx(1.0)
    saved = json.loads(out.read_text())
    assert [row["name"] for row in saved["rows"]] == list(bench.ROWS)
    assert saved["settings"]["batch_size"] == 2 and len(saved["goals"]) == 5

"""`attn show` through the real CLI on one tiny trained target: weights, the cache, every view and format.

One registry is trained per module (two sources, one target on a tiny random Llama, real data);
each test reads it, and only the attention cache is written after training.
"""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import struct
from collections import Counter

import pytest
from typer.testing import CliRunner

from attemptctl.cli import app
from attemptctl.workflows.attn import attention_weights
from attemptctl.workflows.workspace import Workspace
from registry import Registry

runner = CliRunner()
TINY = ["--max-steps", "2", "--train-limit", "16", "--dev-limit", "8", "--test-limit", "12", "--batch-size", "4",
        "--max-length", "48", "--eval-every", "2"]


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def trained(tmp_path_factory, real_data_dir, tiny_causal_dir):
    """Registry options for a registry holding sources mnli@1, qqp@1 and target boolq@1."""
    registry = tmp_path_factory.mktemp("attn") / "registry"
    common = ["--registry", registry, "--data-dir", real_data_dir]
    for source in ("mnli", "qqp"):
        result = run("source", "train", source, *common, "--backbone", tiny_causal_dir, *TINY, "--prompt-length", "4")
        assert result.exit_code == 0, result.output
    result = run("target", "train", "boolq", "--sources", "mnli,qqp", *common, *TINY)
    assert result.exit_code == 0, result.output
    return common


def show(trained, *args):
    result = run("attn", "show", *args, *trained)
    assert result.exit_code == 0, result.output
    return result.output


def test_weights_sum_to_one_and_the_cache_agrees_with_a_fresh_computation(trained, tmp_path):
    # A copy with an empty cache: "not cached" must hold whichever tests ran `attn show` before this one.
    Registry(trained[1]).backup(tmp_path / "registry")
    with sqlite3.connect(tmp_path / "registry" / "catalog.sqlite") as db:
        db.execute("DELETE FROM cache")
    trained = ["--registry", tmp_path / "registry", *trained[2:]]
    registry = Registry(trained[1])
    fresh = json.loads(show(trained, "boolq", "--format", "json"))
    cached = json.loads(show(trained, "boolq", "--json"))
    [first], [second] = fresh, cached
    assert first["cached"] is False and second["cached"] is True
    assert first["examples"] == 12
    assert set(first["weights"]) == {"mnli@1", "qqp@1", "(target)"}
    assert sum(first["weights"].values()) == pytest.approx(1.0, abs=1e-5)  # (target) taken before the +1
    assert second["weights"] == pytest.approx(first["weights"], abs=1e-7)
    # The cache entry is keyed by prompt version and split, and holds the float32 (N, t+1) weights.
    from attemptctl.workflows.attn import _read_cache

    with sqlite3.connect(registry.root / "catalog.sqlite") as db:
        keys = [key for (key,) in db.execute("SELECT key FROM cache")]
    [key] = [k for k in keys if k.startswith("attention/boolq@1/test/")]
    columns, weights, _ = _read_cache(registry, key)
    assert columns == ("mnli@1", "qqp@1", "(target)")
    assert weights.shape == (12, 3) and weights.dtype.name == "float32"
    assert weights.sum(1) == pytest.approx([1.0] * 12, abs=1e-5)


def test_each_columns_spread_across_examples_is_shown(trained):
    """G attends per input: the std of each column across examples, in the JSON and under the table."""
    import numpy as np

    [data] = json.loads(show(trained, "boolq", "--format", "json"))
    [result] = attention_weights(Workspace(trained[1], trained[3]), ["boolq"])
    want = result.weights.std(0)
    assert list(data["std"]) == list(result.columns)
    assert list(data["std"].values()) == pytest.approx(want.tolist(), abs=1e-7)
    assert max(want) > 1e-3  # the calibrated scale: inputs get different mixes even on a random tiny model
    line = next(line for line in show(trained, "boolq").splitlines() if "std across examples" in line)
    assert line.startswith("boolq@1") and f"mnli@1 {want[0]:.3f}" in line and np.isfinite(want).all()


def test_table_shows_every_source_and_the_target_column(trained):
    text = show(trained, "boolq")
    assert "boolq@1" in text and "mnli@1" in text and "qqp@1" in text and "(target)" in text
    line = next(line for line in text.splitlines() if line.strip().startswith("boolq@1"))
    values = [float(cell) for cell in line.split("│")[1:]]
    assert len(values) == 3 and sum(values) == pytest.approx(1.0, abs=0.02)  # rounded to 2 decimals
    assert "\x1b[" not in text  # not a terminal: plain numbers


def test_examples_lists_highest_and_lowest_per_column(trained):
    text = show(trained, "boolq", "--examples", "2")
    assert "highest" in text and "lowest" in text and "boolq question" in text
    data = json.loads(show(trained, "boolq", "--examples", "2", "--format", "json"))[0]["extremes"]
    assert set(data) == {"mnli@1", "qqp@1", "(target)"}
    for sides in data.values():
        high, low = [w["weight"] for w in sides["highest"]], [w["weight"] for w in sides["lowest"]]
        assert len(high) == len(low) == 2 and high == sorted(high, reverse=True) and low == sorted(low)
        assert high[0] >= low[0]
    rows = list(csv.DictReader(io.StringIO(show(trained, "boolq", "--examples", "1", "--format", "csv"))))
    assert len(rows) == 3 * 2 and {r["side"] for r in rows} == {"highest", "lowest"}


def test_by_label_rows_average_to_the_overall_mean(trained):
    text = show(trained, "boolq", "--by-label")
    assert "boolq@1 · False" in text or "boolq@1 · True" in text
    [data] = json.loads(show(trained, "boolq", "--by-label", "--format", "json"))
    for weights in data["by_label"].values():
        assert sum(weights.values()) == pytest.approx(1.0, abs=1e-5)
    # Each label's row is the mean over that label's examples (by hand from the per-example weights),
    # so the rows weighted by their example counts average to the overall mean.
    [result] = attention_weights(Workspace(trained[1], trained[3]), ["boolq"])
    gold = [e.target for e in result.examples]
    counts = Counter(gold)
    assert set(data["by_label"]) == set(counts) and sum(counts.values()) == data["examples"] == 12
    for label, weights in data["by_label"].items():
        rows = result.weights[[g == label for g in gold]]
        assert weights == pytest.approx(dict(zip(result.columns, rows.mean(0).tolist())), abs=1e-6)
    for column, overall in data["weights"].items():
        weighted = sum(counts[label] * weights[column] for label, weights in data["by_label"].items())
        assert weighted / len(gold) == pytest.approx(overall, abs=1e-6)
    rows = list(csv.DictReader(io.StringIO(show(trained, "boolq", "--by-label", "--format", "csv"))))
    assert [r["row"] for r in rows] == [f"boolq@1 · {label}" for label in data["by_label"]]


def test_csv_matrix_has_one_row_per_target(trained):
    rows = list(csv.DictReader(io.StringIO(show(trained, "--format", "csv"))))
    assert [r["row"] for r in rows] == ["boolq@1"]
    assert sum(float(rows[0][c]) for c in ("mnli@1", "qqp@1", "(target)")) == pytest.approx(1.0, abs=1e-5)


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_png_export_is_a_valid_image_that_grows_with_the_matrix(trained, tmp_path):
    pytest.importorskip("matplotlib")
    small, large = tmp_path / "small.png", tmp_path / "large.png"
    show(trained, "boolq", "--format", "png", "--output", small)
    show(trained, "boolq", "--by-label", "--format", "png", "--output", large)
    (w1, h1), (w2, h2) = png_size(small), png_size(large)
    assert w1 > 100 and h1 > 50
    assert h2 > h1  # two label rows instead of one


def test_png_needs_an_output_file(trained):
    result = run("attn", "show", "boolq", "--format", "png", *trained)
    assert result.exit_code == 2 and "--output" in result.output


def test_png_without_matplotlib_is_one_line_with_the_install_hint(trained, tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.split(".")[0] == "matplotlib":
            raise ImportError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    result = run("attn", "show", "boolq", "--format", "png", "--output", tmp_path / "x.png", *trained)
    assert result.exit_code == 1 and "pip install 'attemptctl[plot]'" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_an_unknown_target_is_one_line(trained):
    result = run("attn", "show", "nosuchtarget", *trained)
    assert result.exit_code == 1 and "nosuchtarget" in result.output and "Traceback" not in result.output

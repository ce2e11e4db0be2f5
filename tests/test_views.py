"""Rendering of heatmaps and tables, checked on the plain text a non-terminal would get."""

from __future__ import annotations

import re
import struct
import subprocess
import sys
from datetime import datetime
from types import SimpleNamespace

import pytest

from attemptctl.cli.render import (
    AttentionRow,
    ExampleRow,
    MetricsRow,
    attention_heatmap,
    dev_summary,
    examples_table,
    heatmap_png,
    metrics_table,
    records_table,
    render_to_text,
    shorten,
)

ANSI = re.compile(r"\x1b\[[0-9;]*m")
COLUMNS = ["mnli", "squad", "(target)"]
ROWS = [
    AttentionRow("boolq@1", {"mnli": 0.31, "squad": 0.05, "(target)": 0.64}),
    AttentionRow("rte@2", {"mnli": 0.7, "(target)": 0.3}),  # squad not mixed
]


def body_cells(text: str, label: str) -> list[str]:
    """The stripped cells after the label on the line whose first cell is `label`."""
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.split("│")]
        if cells[0] == label:
            return cells[1:]
    raise AssertionError(f"no row {label!r} in:\n{text}")


def body_words(text: str, label: str) -> list[str]:
    """The words of the line that starts with `label` (a borderless table's row)."""
    return next(line for line in text.splitlines() if line.strip().startswith(label)).split()


def test_heatmap_exact_plain_text():
    text = render_to_text(attention_heatmap(ROWS, COLUMNS))
    lines = text.splitlines()
    assert lines[:4] == [
        " target  │ mnli │ squad │ (target) ",
        "─────────┼──────┼───────┼──────────",
        " boolq@1 │ 0.31 │  0.05 │     0.64 ",
        " rte@2   │ 0.70 │       │     0.30 ",
    ]
    assert body_cells(text, "boolq@1") == ["0.31", "0.05", "0.64"]
    assert body_cells(text, "rte@2") == ["0.70", "", "0.30"]
    legend = " ".join(" ".join(lines[4:]).split())
    assert "blank: not mixed" in legend
    assert "\x1b[" not in text


def test_heatmap_title_and_legend_note():
    heatmap = attention_heatmap(ROWS, COLUMNS, title="Attention over sources", note="(target): before the +1")
    lines = render_to_text(heatmap).splitlines()
    assert lines[0].strip() == "Attention over sources"
    assert lines[-1] == "scale 0.0 0.5 1.0 · blank: not mixed · (target): before the +1"


def test_long_row_label_is_not_truncated():
    label = "a_target_task_with_a_name_forty_chars_xy"
    assert len(label) == 40
    rows = [AttentionRow(label, {"mnli": 0.5, "(target)": 0.5})]
    text = render_to_text(attention_heatmap(rows, ["mnli", "(target)"]), width=60)
    assert body_cells(text, label) == ["0.50", "0.50"]


def test_long_column_name_is_shortened_in_the_header():
    name = "mnli_mismatched_long_name"
    rows = [AttentionRow("boolq@1", {name: 0.25})]
    text = render_to_text(attention_heatmap(rows, [name]))
    assert name not in text
    assert "mnli_m…_name" in text
    assert body_cells(text, "boolq@1") == ["0.25"]


def test_one_source():
    rows = [AttentionRow("cb@1", {"mnli": 0.9, "(target)": 0.1})]
    text = render_to_text(attention_heatmap(rows, ["mnli", "(target)"]))
    assert body_cells(text, "cb@1") == ["0.90", "0.10"]


def all_cells(text: str, label: str) -> list[str]:
    """The cells of every line labelled `label`, block after block."""
    cells = []
    for line in text.splitlines():
        parts = [cell.strip() for cell in line.split("│")]
        if parts[0] == label:
            cells += parts[1:]
    return cells


def test_twenty_sources_on_a_wide_console_are_one_block_with_every_value():
    sources = [f"source_task_{i:02d}" for i in range(20)]
    columns = [*sources, "(target)"]
    weights = {name: i / 20 for i, name in enumerate(columns)}
    text = render_to_text(attention_heatmap([AttentionRow("boolq@1", weights)], columns), width=200)
    assert all(len(line) <= 200 for line in text.splitlines())
    assert body_cells(text, "boolq@1") == [f"{i / 20:.2f}" for i in range(21)]
    # Headers are folded or cut in the middle, never to a common prefix: each suffix is still there.
    header = "\n".join(text.splitlines()[:3])
    assert all(f"{i:02d}" in header for i in range(20))
    assert "columns 1" not in text


def test_twenty_sources_on_a_narrow_console_are_stacked_blocks_not_cropped():
    columns = [f"source_task_{i:02d}" for i in range(20)] + ["(target)"]
    weights = {name: i / 20 for i, name in enumerate(columns)}
    text = render_to_text(attention_heatmap([AttentionRow("boolq@1", weights)], columns, title="T"), width=80)
    assert all(len(line) <= 80 for line in text.splitlines())
    assert all_cells(text, "boolq@1") == [f"{i / 20:.2f}" for i in range(21)]  # every value, in order
    titles = [line.strip() for line in text.splitlines() if line.startswith("T ·")]
    assert titles[0].startswith("T · columns 1–") and titles[-1].endswith("of 21")
    sizes = [len(line.split("│")) - 1 for line in text.splitlines() if line.strip().startswith("boolq@1")]
    assert max(sizes) - min(sizes) <= 1  # blocks are evened out, no lone last column
    assert text.count("scale 0.0") == 1


def test_blocks_on_a_tiny_console_keep_one_column_each():
    heatmap = attention_heatmap([AttentionRow("a_very_long_target_name@12", {"mnli": 0.5})], ["mnli", "qqp"])
    assert heatmap.blocks(10) == [["mnli"], ["qqp"]]
    assert heatmap.blocks(200) == [["mnli", "qqp"]]


def test_by_label_rows_without_group_titles():
    rows = [AttentionRow("boolq@1 · False", {"mnli": 0.2}, group="boolq@1"),
            AttentionRow("boolq@1 · True", {"mnli": 0.4}, group="boolq@1"),
            AttentionRow("rte@1 · entailment", {"mnli": 0.6}, group="rte@1")]
    lines = render_to_text(attention_heatmap(rows, ["mnli"], group_titles=False)).splitlines()
    assert [line.split("│")[0].strip() for line in lines if "│" in line][1:] == [
        "boolq@1 · False", "boolq@1 · True", "rte@1 · entailment"]
    assert sum(line.startswith("─") for line in lines) == 2  # header rule + one between the targets


def test_groups_are_kept_together_in_first_seen_order():
    rows = [
        AttentionRow("boolq@1", {"mnli": 0.1}, group="run-a"),
        AttentionRow("rte@1", {"mnli": 0.2}, group="run-b"),
        AttentionRow("cb@1", {"mnli": 0.3}, group="run-a"),
        AttentionRow("wic@1", {"mnli": 0.4}, group="run-b"),
    ]
    lines = render_to_text(attention_heatmap(rows, ["mnli"])).splitlines()
    firsts = [line.split("│")[0].strip() for line in lines if "│" in line]
    order = [name for name in firsts if name not in ("", "target")]
    assert order == ["run-a", "boolq@1", "cb@1", "run-b", "rte@1", "wic@1"]
    # a rule closes run-a before run-b starts
    rule_rows = [i for i, line in enumerate(lines) if line.startswith("─")]
    assert len(rule_rows) == 2
    assert lines[rule_rows[1] + 1].split("│")[0].strip() == "run-b"
    assert body_cells("\n".join(lines), "cb@1") == ["0.30"]


def test_color_output_has_ansi_codes_and_the_same_numbers():
    plain = render_to_text(attention_heatmap(ROWS, COLUMNS))
    colored = render_to_text(attention_heatmap(ROWS, COLUMNS), color=True)
    assert "\x1b[" in colored
    assert "48;2;" in colored  # truecolor backgrounds on the cells
    assert ANSI.sub("", colored) == plain


def test_examples_table_lists_sides_once_and_shortens_input():
    long_input = "boolq question: " + "word " * 60
    rows = [ExampleRow("mnli@1", "highest", 0.61, "True", long_input),
            ExampleRow("mnli@1", "highest", 0.58, "False", "boolq question: short one"),
            ExampleRow("mnli@1", "lowest", 0.11, "True", "boolq question: low\nwith a newline"),
            ExampleRow("(target)", "highest", 0.40, "False", "x")]
    text = render_to_text(examples_table(rows, title="boolq@1"), width=100)
    lines = [line for line in text.splitlines() if line.strip()]
    assert lines[1].split() == ["prompt", "weight", "gold", "input"]
    body = [line.split() for line in lines[3:]]
    assert body[0][:4] == ["mnli@1", "highest", "0.610", "True"]
    assert body[1][:3] == ["0.580", "False", "boolq"]
    assert body[2][:4] == ["lowest", "0.110", "True", "boolq"] and "with a newline" in lines[5]
    assert body[3][:4] == ["(target)", "highest", "0.400", "False"]
    assert all(len(line) <= 100 for line in lines) and "…" in lines[3]


def test_shorten():
    assert shorten("a  b\nc") == "a b c"
    assert shorten("x" * 10, 5) == "xxxx…"


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_png_grows_with_the_matrix(tmp_path):
    pytest.importorskip("matplotlib")
    small, large = tmp_path / "small.png", tmp_path / "large.png"
    heatmap_png(ROWS, COLUMNS, small, title="two targets")
    columns = [f"source_task_{i:02d}" for i in range(20)] + ["(target)"]
    rows = [AttentionRow(f"task{j}@1", {c: 0.05 for c in columns[j:]}, group=f"run{j // 3}") for j in range(8)]
    heatmap_png(rows, columns, large)
    (w1, h1), (w2, h2) = png_size(small), png_size(large)
    assert w1 >= 200 and h1 >= 150
    assert w2 > 2 * w1 and h2 > h1


def test_metrics_table_with_missing_metrics():
    """Two metrics between the rows: a column each, a blank cell where a task lacks one."""
    rows = [
        MetricsRow("mnli", 1, "source", [], {"accuracy": 0.8512}, 9815, 12.34, "test"),
        MetricsRow("rte", 2, "target", ["mnli@1", "qqp@1"], {"accuracy": 0.9, "f1": 0.8876}, 1500, 3.0, "test"),
        MetricsRow("mrpc", 1, "target", ["qqp@1"], {"f1": 0.5}, 10, 1.0, "test"),
    ]
    text = render_to_text(metrics_table(rows, title="Scores"), width=120)
    header = next(line for line in text.splitlines() if "prompt" in line).split()
    assert header == ["prompt", "sources", "accuracy", "f1", "constant", "rows", "s"]
    mnli = next(line for line in text.splitlines() if line.strip().startswith("mnli@1"))
    assert mnli.split() == ["mnli@1", "—", "85.1", "—", "9,815", "12.3"]  # no constant given: none shown
    rte = next(line for line in text.splitlines() if line.strip().startswith("rte@2"))
    assert rte.split() == ["rte@2", "mnli", "qqp", "90.0", "88.8", "—", "1,500", "3.0"]
    mrpc = next(line for line in text.splitlines() if line.strip().startswith("mrpc@1"))
    header_line = next(line for line in text.splitlines() if "accuracy" in line)
    start, end = header_line.index("accuracy"), header_line.index("f1")
    assert mrpc[start:start + 8].strip() == "" and "50.0" in mrpc[end - 3:end + 3]
    assert "metrics in %; split: test; constant: first metric" in text  # the rows' primary metrics differ


def test_metrics_table_of_tasks_with_different_metrics_fits_80_columns():
    """BoolQ, MRPC, CB and STS-B: one column of name-value pairs, never headers cut to six letters."""
    five = ["mnli@1", "qqp@1", "qnli@1", "sst2@1", "squad@1"]
    rows = [MetricsRow("boolq", 1, "target", five, {"accuracy": 0.56}, 100, 28.2, "test"),
            MetricsRow("mrpc", 1, "target", five, {"f1": 0.81, "accuracy": 0.7}, 204, 30.1, "test"),
            MetricsRow("cb", 1, "target", five, {"macro_f1": 0.41, "accuracy": 0.6}, 28, 3.1, "test"),
            MetricsRow("stsb", 1, "target", five, {"pearson": 0.9, "spearman": 0.88}, 750, 9.0, "test")]
    text = render_to_text(metrics_table(rows), width=80)
    assert max(len(line) for line in text.splitlines()) <= 80 and "…" not in text
    assert next(line for line in text.splitlines() if "prompt" in line).split() == [
        "prompt", "sources", "metrics", "(%)", "constant", "rows", "s"]
    assert "macro_f1 41.0, accuracy 60.0" in text and "pearson 90.0, spearman 88.0" in text


def test_metrics_table_shows_the_constant_answer_beside_each_score():
    """One task: the constant's primary score as a bare number; free-form tasks: a dash."""
    rows = [MetricsRow("rte", 1, "target", ["mnli@1"], {"accuracy": 0.625}, 48, 1.0, "test",
                       constant={"accuracy": 0.5417}),
            MetricsRow("rte", 2, "target", [], {"accuracy": 0.5}, 48, 1.0, "test", constant={"accuracy": 0.5417})]
    text = render_to_text(metrics_table(rows), width=100)
    assert next(line for line in text.splitlines() if "prompt" in line).split() == [
        "prompt", "sources", "accuracy", "constant", "rows", "s"]
    assert next(line for line in text.splitlines() if "rte@1" in line).split() == [
        "rte@1", "mnli", "62.5", "54.2", "48", "1.0"]


def test_metrics_table_gives_the_constant_in_each_tasks_first_metric_and_dashes_free_form():
    rows = [MetricsRow("mrpc", 1, "target", [], {"f1": 0.7, "accuracy": 0.6}, 48, 1.0, "test",
                       constant={"f1": 0.8123, "accuracy": 0.6842}),
            MetricsRow("squad", 1, "source", [], {"squad_f1": 0.371, "squad_em": 0.303}, 30, 9.0, "test")]
    text = render_to_text(metrics_table(rows), width=100)
    assert body_words(text, "mrpc@1")[-3:] == ["81.2", "48", "1.0"]  # F1, MRPC's first metric
    assert body_words(text, "squad@1")[-3:] == ["—", "30", "9.0"]
    assert "split: test; constant: first metric" in text


def test_dev_summary_names_the_split_and_the_rows():
    assert dev_summary({"rte": {"accuracy": 0.625}}, {"rte": 48}) == "dev accuracy 62.5 on 48 rows"
    several = dev_summary({"rte": {"accuracy": 0.625}, "cb": {"accuracy": 0.5, "macro_f1": 0.4}}, {"rte": 48, "cb": 28})
    assert several == "dev: rte accuracy 62.5 on 48 rows; cb macro_f1 40.0, accuracy 50.0 on 28 rows"  # primary first
    assert dev_summary({"rte": {"accuracy": 0.625}}) == "dev accuracy 62.5"  # a record from before the counts
    assert dev_summary({}) == dev_summary({"rte": {}}) == "no dev score"


def test_records_table_with_a_plain_record():
    record = SimpleNamespace(
        kind="target",
        name="boolq",
        version=3,
        backbone="smollm2-135m",
        d=576,
        m=100,
        sources=("mnli@1", "squad@2"),
        variant="attempt",
        created_at=datetime(2024, 5, 6, 7, 8, 9),
        metrics={"dev": {"accuracy": 0.7734, "f1": 0.5}, "test": {"accuracy": 0.7}},
    )
    bare = SimpleNamespace(**{**vars(record), "name": "mnli", "version": 1, "kind": "source",
                              "sources": (), "metrics": {}})
    text = render_to_text(records_table([record, bare]), width=140)
    line = next(line for line in text.splitlines() if "boolq@3" in line)
    assert line.split() == ["target", "boolq@3", "100", "attempt", "mnli", "squad", "77.3", "trained", "05-06", "07:08"]
    line = next(line for line in text.splitlines() if "mnli@1" in line and "boolq" not in line)
    assert line.split() == ["source", "mnli@1", "100", "attempt", "—", "trained", "05-06", "07:08"]
    assert "backbone: smollm2-135m" in text  # one backbone for all: said once, in the caption
    other = SimpleNamespace(**{**vars(bare), "backbone": "t5-base"})
    mixed = render_to_text(records_table([record, other]), width=140)
    assert "t5-base" in next(line for line in mixed.splitlines() if "mnli@1" in line and "boolq" not in line)
    assert "backbone:" not in mixed


def test_records_table_fits_80_columns():
    record = SimpleNamespace(kind="attention", name="rte+cb", version=1, backbone="smollm2-135m", d=576, m=0,
                             sources=(), variant="attempt", created_at=datetime(2024, 5, 6, 7, 8, 9),
                             metrics={"dev": {"rte": {"accuracy": 0.5}}})
    five = SimpleNamespace(**{**vars(record), "kind": "target", "name": "boolq", "m": 20, "variant": "no-target",
                              "sources": ("mnli@1", "qqp@1", "qnli@1", "sst2@1", "squad@1"),
                              "config": {"origin": {"type": "zoo"}}})
    text = render_to_text(records_table([record, five]), width=80)
    assert "rte+cb@1" in text and "05-06 07:08" in text
    assert max(len(line) for line in text.splitlines()) <= 80
    # Only the sources cell wraps: every other cell keeps its whole word ("prompt-t…" never again).
    assert "…" not in text and "boolq@1" in text and "no-target" in text and "zoo" in text
    rows = [line for line in text.splitlines() if "@1" in line]
    assert len(rows) == 2 and all("05-06 07:08" in line for line in rows)


def test_views_import_no_torch():
    code = "import sys, attemptctl.cli.render; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0

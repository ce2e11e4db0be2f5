"""Tables and heatmaps for the terminal: pure rendering with rich, no torch, no computation.

The attention heatmap is the paper's Figures 5 and 6: one row per target task, one column per
source prompt plus the target's own prompt, each cell the average attention weight with its value
printed in it. Every cell carries its number, so the tables stay readable where colour is off
(not a terminal, ``NO_COLOR``): colour is the Console's business, never this module's.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rich import box
from rich.color import Color
from rich.console import Console
from rich.style import Style
from rich.table import Table
from rich.text import Text

BLANK = "—"
HEADER_CHARS = 12  # longer column names are cut to this, an ellipsis in the middle

# Sequential scale from a pale to a deep blue (ColorBrewer "Blues" ends): both ends are
# backgrounds, with the text colour picked per cell, so it reads on dark and light terminals.
_LOW = (222, 235, 247)
_HIGH = (8, 48, 107)


@dataclass(frozen=True)
class AttentionRow:
    """One row of the heatmap: a target task's attention over the prompt columns."""

    label: str
    """Row label, e.g. ``"boolq@1"``; never truncated."""
    weights: Mapping[str, float]
    """Column -> weight in [0, 1]. A column missing here renders blank: the task does not mix it."""
    group: str | None = None
    """Training run the row comes from; rows of one group are kept together."""


@dataclass(frozen=True)
class MetricsRow:
    """One evaluated prompt: its task, what it mixes, and its scores on one split."""

    task: str
    version: int
    kind: str
    """``"source"`` or ``"target"``."""
    sources: Sequence[str]
    metrics: Mapping[str, float]
    """Metric name -> value in [0, 1] (correlations in [-1, 1]); shown as percentages."""
    examples: int
    seconds: float
    split: str


def _weight_style(weight: float) -> Style:
    """Background interpolated on the scale, foreground black or white by luminance."""
    t = min(max(weight, 0.0), 1.0)
    rgb = tuple(round(lo + (hi - lo) * t) for lo, hi in zip(_LOW, _HIGH))
    luminance = (0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2]) / 255
    foreground = Color.from_rgb(0, 0, 0) if luminance > 0.5 else Color.from_rgb(255, 255, 255)
    return Style(color=foreground, bgcolor=Color.from_rgb(*rgb))


def _weight_cell(weight: float | None) -> Text:
    if weight is None:
        return Text("")
    if math.isnan(weight):
        return Text("nan")
    return Text(f"{weight:.2f}", style=_weight_style(weight))


def _header(name: str) -> Text:
    # Cut in the middle: task names differ at both ends ("mnli_mismatched", "source_task_07").
    tail = (HEADER_CHARS - 1) // 2
    short = name if len(name) <= HEADER_CHARS else f"{name[: HEADER_CHARS - 1 - tail]}…{name[-tail:]}"
    # Folded rather than cut when the console is narrow: "source_ta/sk_07" keeps the part that
    # tells columns apart, where "sou…" would make them all alike.
    return Text(short, overflow="fold")


def _legend() -> Text:
    legend = Text("scale ")
    for stop in (0.0, 0.5, 1.0):
        legend.append(f"{stop:.1f}", style=_weight_style(stop))
        legend.append(" ")
    legend.append("· blank: not mixed")
    return legend


def _in_group_order(rows: Sequence[AttentionRow]) -> dict[str | None, list[AttentionRow]]:
    """Rows bucketed by group, groups in order of first appearance, rows in input order."""
    groups: dict[str | None, list[AttentionRow]] = {}
    for row in rows:
        groups.setdefault(row.group, []).append(row)
    return groups


def attention_heatmap(
    rows: Sequence[AttentionRow], columns: Sequence[str], *, title: str | None = None
) -> Table:
    """Targets x prompt columns, each cell the weight with 2 decimals on a sequential colour.

    ``columns`` is the caller's stable order: the sources, then ``"(target)"`` for the target's
    own prompt. Groups (training runs) are introduced by a bold row and closed by a rule.
    """
    table = Table(
        title=title,
        caption=_legend(),
        caption_justify="left",
        box=box.MINIMAL,
        show_edge=False,
    )
    label_width = max((len(row.label) for row in rows), default=0)
    table.add_column("target", no_wrap=True, min_width=max(label_width, len("target")))
    for name in columns:
        # Wrappable so rich narrows the headers first; min_width keeps every "0.31" whole.
        table.add_column(_header(name), justify="right", overflow="fold", min_width=4)

    groups = _in_group_order(rows)
    for group, members in groups.items():
        if group is not None:
            table.add_row(Text(group, style="bold italic"), *([""] * len(columns)))
        for row in members:
            table.add_row(row.label, *(_weight_cell(row.weights.get(c)) for c in columns))
        table.rows[-1].end_section = True
    if table.rows:
        table.rows[-1].end_section = False
    return table


def _percent(value: float | None) -> str:
    return "" if value is None else f"{value * 100:.1f}"


def metrics_table(rows: Sequence[MetricsRow], *, title: str | None = None) -> Table:
    """Task, version, sources, every metric seen (first-seen order, in %), examples, seconds."""
    metric_names: list[str] = []
    for row in rows:
        metric_names += [name for name in row.metrics if name not in metric_names]
    splits = list(dict.fromkeys(row.split for row in rows))
    split_column = len(splits) > 1

    caption = "metrics in %" + (f"; split: {splits[0]}" if len(splits) == 1 else "")
    table = Table(title=title, caption=caption, caption_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("task", no_wrap=True)
    table.add_column("version", justify="right")
    table.add_column("sources")
    if split_column:
        table.add_column("split")
    for name in metric_names:
        table.add_column(name, justify="right")
    table.add_column("examples", justify="right")
    table.add_column("seconds", justify="right")

    for row in rows:
        cells = [
            Text(row.task, style="bold" if row.kind == "target" else ""),
            str(row.version),
            ", ".join(row.sources) or BLANK,
            *([row.split] if split_column else []),
            *(_percent(row.metrics.get(name)) for name in metric_names),
            f"{row.examples:,}",
            f"{row.seconds:.1f}",
        ]
        table.add_row(*cells)
    return table


def _best_dev(metrics: Mapping[str, Any]) -> str:
    dev = metrics.get("dev") if isinstance(metrics, Mapping) else None
    if not isinstance(dev, Mapping) or not dev:
        return ""
    name, value = next(iter(dev.items()))
    if isinstance(value, Mapping):  # {task: {metric: value}}, as training records it
        if not value:
            return ""
        name, value = next(iter(value.items()))
    return f"{name} {_percent(value)}" if isinstance(value, (int, float)) else f"{name} {value}"


def records_table(records: Sequence[Any]) -> Table:
    """Registry records: kind, name@version, backbone, m, sources, variant, dev metric, created."""
    table = Table(box=box.SIMPLE_HEAD)
    for header, justify in [
        ("kind", "left"),
        ("prompt", "left"),
        ("backbone", "left"),
        ("m", "right"),
        ("sources", "left"),
        ("variant", "left"),
        ("dev (%)", "right"),
        ("created", "left"),
    ]:
        table.add_column(header, justify=justify)
    for record in records:
        table.add_row(
            record.kind,
            Text(f"{record.name}@{record.version}", style="bold"),
            record.backbone,
            str(record.m),
            ", ".join(str(ref) for ref in record.sources) or BLANK,
            record.variant or "",
            _best_dev(record.metrics),
            record.created_at.strftime("%Y-%m-%d %H:%M"),
        )
    return table


def render_to_text(renderable: Any, *, width: int = 100, color: bool = False) -> str:
    """Render to a string: plain text by default, truecolor ANSI with ``color=True``."""
    console = Console(
        file=io.StringIO(),
        width=width,
        color_system="truecolor" if color else None,
        force_terminal=color,
        no_color=not color,
        highlight=False,
    )
    console.print(renderable)
    return console.file.getvalue()

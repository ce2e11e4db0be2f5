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
from rich.console import Console, ConsoleOptions, RenderResult
from rich.style import Style
from rich.table import Table
from rich.text import Text

from attemptctl.formatting import percent

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
    constant: Mapping[str, float] | None = None
    """The task's constant answer on the same rows, scored like ``metrics``; None: the task has none (free-form)."""


def _weight_style(weight: float) -> Style:
    """Background interpolated on the scale, foreground black or white by luminance."""
    t = min(max(weight, 0.0), 1.0)
    rgb = tuple(round(lo + (hi - lo) * t) for lo, hi in zip(_LOW, _HIGH))
    luminance = (0.2126 * rgb[0] + 0.7152 * rgb[1] + 0.0722 * rgb[2]) / 255
    foreground = Color.from_rgb(0, 0, 0) if luminance > 0.5 else Color.from_rgb(255, 255, 255)
    return Style(color=foreground, bgcolor=Color.from_rgb(*rgb))


def _weight_cell(weight: float | None, digits: int = 2) -> Text:
    if weight is None:
        return Text("")
    if math.isnan(weight):
        return Text("nan")
    return Text(f"{weight:.{digits}f}", style=_weight_style(weight))


def _header(name: str) -> Text:
    # Cut in the middle: task names differ at both ends ("mnli_mismatched", "source_task_07").
    tail = (HEADER_CHARS - 1) // 2
    short = name if len(name) <= HEADER_CHARS else f"{name[: HEADER_CHARS - 1 - tail]}…{name[-tail:]}"
    # Folded rather than cut when the console is narrow: "source_ta/sk_07" keeps the part that
    # tells columns apart, where "sou…" would make them all alike.
    return Text(short, overflow="fold")


def _legend(note: str | None) -> Text:
    legend = Text("scale ")
    for stop in (0.0, 0.5, 1.0):
        legend.append(f"{stop:.1f}", style=_weight_style(stop))
        legend.append(" ")
    legend.append("· blank: not mixed")
    if note:
        legend.append(f" · {note}")
    return legend


def _in_group_order(rows: Sequence[AttentionRow]) -> dict[str | None, list[AttentionRow]]:
    """Rows bucketed by group, groups in order of first appearance, rows in input order."""
    groups: dict[str | None, list[AttentionRow]] = {}
    for row in rows:
        groups.setdefault(row.group, []).append(row)
    return groups


def _column_widths(name: str) -> tuple[int, int]:
    """(narrowest, natural) width of a column: numbers stay whole, headers fold to two lines at most."""
    header = len(_header(name).plain)
    return max(4, -(-header // 2)), max(4, header)


def _column_blocks(label_width: int, columns: Sequence[str], width: int) -> list[list[str]]:
    """Columns cut into consecutive blocks that each fit ``width`` beside the label column.

    A table's width is the sum of its columns plus 2 cells of padding each, plus one rule between
    neighbours; every block keeps at least one column, however narrow the console. Blocks are then
    evened out, so the last one is not a lone column under four full ones.
    """
    def pack(caps: Sequence[int]) -> list[list[str]]:
        blocks: list[list[str]] = [[]]
        used = label_width + 2
        for name in columns:
            need = _column_widths(name)[0] + 3
            full = len(blocks[-1]) >= caps[min(len(blocks), len(caps)) - 1]
            if blocks[-1] and (used + need > width or full):
                blocks.append([])
                used = label_width + 2
            blocks[-1].append(name)
            used += need
        return blocks

    greedy = pack([len(columns)])
    size, extra = divmod(len(columns), len(greedy))
    even = pack([size + 1] * extra + [size] * (len(greedy) - extra))
    return even if len(even) == len(greedy) else greedy


def _heatmap_table(rows: Sequence[AttentionRow], columns: Sequence[str], label_width: int, *,
                   title: str | None, group_titles: bool) -> Table:
    table = Table(title=title, title_justify="left", box=box.MINIMAL, show_edge=False)
    table.add_column("target", no_wrap=True, min_width=label_width)
    for name in columns:
        # Wrappable so rich narrows the headers first; min_width keeps every "0.31" whole.
        table.add_column(_header(name), justify="right", overflow="fold", min_width=_column_widths(name)[0])
    for group, members in _in_group_order(rows).items():
        if group is not None and group_titles:
            table.add_row(Text(group, style="bold italic"), *([""] * len(columns)))
        for row in members:
            table.add_row(row.label, *(_weight_cell(row.weights.get(c)) for c in columns))
        table.rows[-1].end_section = True
    if table.rows:
        table.rows[-1].end_section = False
    return table


class AttentionHeatmap:
    """Targets x prompt columns; a rich renderable that fits itself to the console it is printed on.

    When the columns do not fit the console side by side, they are split into stacked blocks
    (each repeating the row labels) instead of being cropped: every number is always printed.
    """

    def __init__(self, rows: Sequence[AttentionRow], columns: Sequence[str], title: str | None = None,
                 group_titles: bool = True, note: str | None = None) -> None:
        self.rows, self.columns, self.title, self.group_titles = list(rows), list(columns), title, group_titles
        self.note = note
        groups = [g for g in _in_group_order(self.rows) if g is not None and group_titles]
        names = [row.label for row in self.rows] + groups
        self.label_width = max([len("target"), *map(len, names)])

    def blocks(self, width: int) -> list[list[str]]:
        return _column_blocks(self.label_width, self.columns, width)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        blocks = self.blocks(options.max_width)
        for i, block in enumerate(blocks):
            title = self.title
            if len(blocks) > 1:
                start = sum(map(len, blocks[:i])) + 1
                part = f"columns {start}–{start + len(block) - 1} of {len(self.columns)}"
                title = f"{title} · {part}" if title else part
            if title:  # a line of its own: as a table title it would wrap to the width of a narrow table
                yield Text(title)
            yield _heatmap_table(self.rows, block, self.label_width, title=None, group_titles=self.group_titles)
        # Below the last block, not as a caption: a caption wraps to the width of a narrow block.
        yield _legend(self.note)


def attention_heatmap(
    rows: Sequence[AttentionRow], columns: Sequence[str], *, title: str | None = None, group_titles: bool = True,
    note: str | None = None,
) -> AttentionHeatmap:
    """Targets x prompt columns, each cell the weight with 2 decimals on a sequential colour.

    ``columns`` is the caller's stable order: the sources, then ``"(target)"`` for the target's
    own prompt. Groups (training runs) are closed by a rule and, with ``group_titles``, introduced
    by a bold row (off where the row labels already name the group, as in ``boolq@1 · True``).
    ``note`` is appended to the colour legend.
    """
    return AttentionHeatmap(rows, columns, title, group_titles, note)


@dataclass(frozen=True)
class ExampleRow:
    """One test example listed for a prompt column: among those weighing it most, or least."""

    column: str
    side: str
    """``"highest"`` or ``"lowest"``."""
    weight: float
    gold: str
    text: str


def shorten(text: str, limit: int = 90) -> str:
    """``text`` on one line, cut to ``limit`` characters with an ellipsis at the end."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


class ExamplesTable:
    """Column, side, weight (coloured like the heatmap), gold output and input, a section per column.

    A rich renderable: the input is shortened to what the console has left beside the other
    columns (at most ``text_chars``), so every example stays on one line ending in an ellipsis.
    """

    def __init__(self, rows: Sequence[ExampleRow], title: str | None = None, text_chars: int = 90) -> None:
        self.rows, self.title, self.text_chars = list(rows), title, text_chars
        self.digits = _digits_to_tell_apart(self.rows)
        self.widths = (max([len(r.column) for r in self.rows] + [6]), len("highest"), self.digits + 2,
                       max([len(r.gold) for r in self.rows] + [4]))

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        # Five columns: one cell of padding each side, a rule between neighbours, an edge each side.
        room = options.max_width - sum(self.widths) - 3 * 5 - 1
        yield self._table(max(20, min(self.text_chars, room)))

    def _table(self, text_chars: int) -> Table:
        table = Table(title=self.title, box=box.SIMPLE_HEAD, title_justify="left")
        for header, width, justify in zip(("prompt", "", "weight", "gold"), self.widths, ("left", "left", "right", "left")):
            table.add_column(header, no_wrap=True, min_width=width, justify=justify)
        table.add_column("input", no_wrap=True)
        previous: tuple[str, str] | None = None
        for row in self.rows:
            if previous is not None and row.column != previous[0]:
                table.rows[-1].end_section = True
            # Column and side are printed where they change only, so the blocks read as groups.
            table.add_row(row.column if previous is None or row.column != previous[0] else "",
                          row.side if previous != (row.column, row.side) else "",
                          _weight_cell(row.weight, self.digits), row.gold, shorten(row.text, text_chars))
            previous = (row.column, row.side)
        return table


def _digits_to_tell_apart(rows: Sequence[ExampleRow]) -> int:
    """3 decimals, or up to 6 where a column's highest and lowest differ by less than 0.01.

    G's logits are divided by d·e^K, so a briefly trained G varies little between inputs; the
    listing must still show which example is higher.
    """
    spreads = [max(ws) - min(ws) for ws in _by_column(rows).values() if len(ws) > 1]
    spread = min([s for s in spreads if s > 0], default=1.0)
    return 3 if spread >= 0.01 else min(6, 2 - math.floor(math.log10(spread)))


def _by_column(rows: Sequence[ExampleRow]) -> dict[str, list[float]]:
    columns: dict[str, list[float]] = {}
    for row in rows:
        columns.setdefault(row.column, []).append(row.weight)
    return columns


def examples_table(rows: Sequence[ExampleRow], *, title: str | None = None, text_chars: int = 90) -> ExamplesTable:
    """The examples weighing each prompt column most and least, one line each (see :class:`ExamplesTable`)."""
    return ExamplesTable(rows, title, text_chars)


#: Up to this many distinct metrics get a column each; more (tasks with different metrics) share one.
METRIC_COLUMNS = 2


def metrics_table(rows: Sequence[MetricsRow], *, title: str | None = None) -> Table:
    """Prompt, sources, the metrics (in %), the constant answer's score, examples, seconds — readable at 80 columns.

    When the rows have at most two metrics between them (one task, or tasks scored alike) each
    metric gets a column; tasks with different metrics share one ``metrics (%)`` column of
    ``name value`` pairs instead of a dozen mostly empty columns. The ``constant`` column is what
    answering every row with the task's best single label scores in its primary (first) metric
    (``—`` for free-form tasks); the caption says so when the rows' primary metrics differ.
    """
    metric_names: list[str] = []
    for row in rows:
        metric_names += [name for name in row.metrics if name not in metric_names]
    splits = list(dict.fromkeys(row.split for row in rows))
    split_column = len(splits) > 1
    own_columns = len(metric_names) <= METRIC_COLUMNS
    mixed_primaries = len({next(iter(row.metrics), None) for row in rows}) > 1

    caption = (("metrics in %" if own_columns else "") + (f"; split: {splits[0]}" if len(splits) == 1 else "")
               + ("; constant: first metric" if mixed_primaries else ""))
    table = Table(title=title, caption=caption.strip("; "), caption_justify="left", box=box.SIMPLE_HEAD,
                  pad_edge=False, padding=(0, 1, 0, 0), show_edge=False)
    table.add_column("prompt", no_wrap=True)
    table.add_column("sources", ratio=1)
    if split_column:
        table.add_column("split", no_wrap=True)
    for name in metric_names if own_columns else ["metrics (%)"]:
        table.add_column(name, justify="right" if own_columns else "left", no_wrap=True)  # sources wrap instead
    table.add_column("constant", justify="right", no_wrap=True)
    table.add_column("rows", justify="right", no_wrap=True)
    table.add_column("s", justify="right", no_wrap=True)

    for row in rows:
        scores = ([percent(row.metrics.get(name)) for name in metric_names] if own_columns else
                  [", ".join(f"{name} {percent(value)}" for name, value in row.metrics.items())])
        table.add_row(
            Text(f"{row.task}@{row.version}", style="bold" if row.kind == "target" else ""),
            " ".join(str(ref).split("@")[0] for ref in row.sources) or BLANK,
            *([row.split] if split_column else []),
            *scores,
            _constant_cell(row),
            f"{row.examples:,}",
            f"{row.seconds:.1f}",
        )
    return table


def _constant_cell(row: MetricsRow) -> str:
    """The constant answer's score in the row's primary (first) metric; a dash where the task has none."""
    primary = next(iter(row.metrics), None)
    return percent(row.constant[primary]) if row.constant and primary in row.constant else BLANK


def _first_dev_score(metrics: Mapping[str, Any]) -> str:
    """A record's first (primary) dev metric with its name: ``accuracy 77.3``."""
    dev = metrics.get("dev") if isinstance(metrics, Mapping) else None
    if not isinstance(dev, Mapping) or not dev:
        return ""
    name, value = next(iter(dev.items()))
    if isinstance(value, Mapping):  # {task: {metric: value}}, as training records it
        if not value:
            return ""
        name, value = next(iter(in_metric_order(name, value).items()))
    return f"{name} {percent(value)}" if isinstance(value, (int, float)) else f"{name} {value}"


def origin_of(record: Any) -> str:
    """Where a prompt came from: ``zoo``, ``imported`` (PEFT and other formats) or ``trained`` here."""
    config = getattr(record, "config", None)
    origin = config.get("origin") if isinstance(config, Mapping) else None
    return str(origin.get("type", "imported")) if isinstance(origin, Mapping) else "trained"


_KIND_SHORT = {"attention": "attn"}
_VARIANT_SHORT = {"prompt-tuning": "pt"}


def records_table(records: Sequence[Any]) -> Table:
    """Registry records: kind, name@version, m, variant, sources, dev score, origin, created.

    Built for an 80-column terminal: a backbone shared by every record moves to the caption, sources
    are named without versions (``registry show`` has the exact refs) and wrap in their own column,
    the dev cell is the primary metric's value.
    """
    backbones = {record.backbone for record in records}
    shared = backbones.pop() if len(backbones) == 1 else None
    table = Table(box=box.SIMPLE_HEAD, caption=f"backbone: {shared}" if shared else None, caption_justify="left",
                  pad_edge=False, padding=(0, 1, 0, 0), show_edge=False)
    columns = [("kind", "left"), ("prompt", "left"), ("backbone", "left"), ("m", "right"), ("variant", "left"),
               ("sources", "left"), ("dev %", "right"), ("origin", "left"), ("created", "left")]
    for header, justify in columns:
        if header == "backbone" and shared:
            continue
        table.add_column(header, justify=justify, no_wrap=header != "sources", ratio=1 if header == "sources" else None)
    for record in records:
        cells = [_KIND_SHORT.get(record.kind, record.kind), Text(f"{record.name}@{record.version}", style="bold"),
                 record.backbone, str(record.m), _VARIANT_SHORT.get(record.variant, record.variant or ""),
                 " ".join(str(ref).split("@")[0] for ref in record.sources) or BLANK, _best_dev_value(record.metrics),
                 origin_of(record), record.created_at.strftime("%m-%d %H:%M")]
        table.add_row(*(cell for cell, (header, _) in zip(cells, columns) if not (header == "backbone" and shared)))
    return table


def in_metric_order(task_name: str, scores: Mapping[str, Any]) -> dict[str, Any]:
    """``scores`` with ``task_name``'s metrics first, in its order (its primary metric leads), then any
    others. The registry stores score keys sorted (squad_em before squad_f1), so readers reorder."""
    from attemptctl.errors import AttemptError
    from attemptctl.tasks import get_task

    try:
        ranked = get_task(task_name).metrics
    except (AttemptError, KeyError):  # a task no longer in the catalogue: as stored
        ranked = ()
    return {**{m: scores[m] for m in ranked if m in scores}, **{m: v for m, v in scores.items() if m not in ranked}}


def _best_dev_value(metrics: Mapping[str, Any]) -> str:
    """The first (primary) dev metric's value, without its name: ``77.3``."""
    text = _first_dev_score(metrics)
    return text.rsplit(" ", 1)[-1] if text else ""


PLOT_EXTRA_HINT = "PNG export needs matplotlib: pip install 'attemptctl[plot]'"


def heatmap_png(rows: Sequence[AttentionRow], columns: Sequence[str], path: Any, *, title: str | None = None) -> None:
    """The heatmap as a PNG with the weight written in every mixed cell; blank cells stay white.

    The figure grows with the matrix (about 0.8 inch per column, 0.4 per row at 100 dpi), so
    twenty sources stay as legible as two. Raises ImportError with an install hint without matplotlib.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only: never needs a display
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(PLOT_EXTRA_HINT) from exc
    ordered = [row for members in _in_group_order(rows).values() for row in members]
    matrix = [[row.weights.get(c, math.nan) for c in columns] for row in ordered]
    label_inches = 0.08 * max([len(r.label) for r in ordered] + [6])
    header_inches = 0.07 * max([len(c) for c in columns] + [6])
    fig, ax = plt.subplots(figsize=(1.5 + label_inches + 0.8 * len(columns), 1.2 + header_inches + 0.4 * len(ordered)),
                           dpi=100)
    ax.imshow(matrix, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto")
    for i, values in enumerate(matrix):
        for j, weight in enumerate(values):
            if not math.isnan(weight):
                ax.text(j, i, f"{weight:.2f}", ha="center", va="center", fontsize=9,
                        color="white" if weight > 0.55 else "black")
    ax.set_xticks(range(len(columns)), labels=list(columns), rotation=45, ha="right")
    ax.set_yticks(range(len(ordered)), labels=[row.label for row in ordered])
    # A rule between training runs, as the terminal table draws one.
    ends = [i for i in range(1, len(ordered)) if ordered[i].group != ordered[i - 1].group]
    for end in ends:
        ax.axhline(end - 0.5, color="black", linewidth=1.5)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, format="png")
    plt.close(fig)


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


def dev_summary(dev: Mapping[str, Mapping[str, float]], examples: Mapping[str, int] | None = None,
                split: str = "dev") -> str:
    """A dev check in one phrase, naming the split and the rows scored: ``dev accuracy 62.5 on 48 rows``;
    several tasks ``dev: rte accuracy 62.5 on 48 rows; cb macro_f1 40.0, accuracy 50.0 on 28 rows``.
    ``examples``: rows scored per task (records from before they were kept have none: no count). ``split``:
    the split's name in the phrase (``test`` for a learning curve's point)."""
    examples = examples or {}
    scored = {task: metrics for task, metrics in dev.items() if metrics}
    parts = [", ".join(f"{k} {percent(v)}" for k, v in in_metric_order(task, metrics).items())
             + (f" on {examples[task]:,} rows" if examples.get(task) is not None else "")
             for task, metrics in scored.items()]
    if not parts:
        return f"no {split} score"
    if len(parts) == 1:
        return f"{split} {parts[0]}"
    return f"{split}: " + "; ".join(f"{task} {part}" for task, part in zip(scored, parts))


SPARKS = "▁▂▃▄▅▆▇█"


@dataclass(frozen=True)
class CurveSeries:
    """One method's learning curve on one target: step -> (mean score, std over seeds or None, seeds).
    ``reference``: a score no run trained (the constant answer), drawn flat and dashed in the PNG."""

    label: str
    points: Mapping[int, tuple[float, float | None, int]]
    reference: bool = False


def _spark(values: Sequence[float], low: float, high: float) -> str:
    span = high - low
    return "".join(SPARKS[0 if span <= 0 else min(len(SPARKS) - 1, int((v - low) / span * len(SPARKS)))]
                   for v in values)


def curve_table(target: str, metric: str, series: Sequence[CurveSeries]) -> Table:
    """A target's learning curves in the terminal: one row per method, its test score at each step (mean over
    seeds, ± std where there are several), and a sparkline of the means on a scale shared by the rows."""
    steps = sorted({step for s in series for step in s.points})
    means = [p[0] for s in series for p in s.points.values()]
    low, high = min(means), max(means)
    table = Table(title=f"{target}: test {metric} (%) by training step", title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("method", justify="left")
    for step in steps:
        table.add_column(f"{step:,}", justify="right")
    table.add_column(f"{percent(low)}–{percent(high)}", justify="left")
    for s in series:
        cells = []
        for step in steps:
            point = s.points.get(step)
            cells.append("—" if point is None else percent(point[0]) + ("" if point[1] is None else f" ±{percent(point[1])}"))
        table.add_row(s.label, *cells, _spark([s.points[step][0] for step in steps if step in s.points], low, high))
    return table


PNG_COLUMNS = 4
"""Panels per row of a learning-curve PNG: eight targets make two rows that still read on a page."""


def series_colours(curves: Sequence[tuple[str, str, Sequence[CurveSeries]]]) -> dict[str, str]:
    """One colour per method across every panel (matplotlib's cycle, in order of first appearance; grey for a
    reference), so that a panel without some method still colours the others as the legend says."""
    colours: dict[str, str] = {}
    for _, _, series in curves:
        for s in series:
            if s.label not in colours:
                colours[s.label] = "grey" if s.reference else f"C{sum(c != 'grey' for c in colours.values()) % 10}"
    return colours


def curves_png(curves: Sequence[tuple[str, str, Sequence[CurveSeries]]], path: Any, *, title: str | None = None) -> None:
    """Learning curves as a PNG: one panel per (target, metric), PNG_COLUMNS to a row, a line per method
    (mean over seeds, a band of ± one std where there are several; one colour per method in every panel, one
    legend), steps on a symmetric-log axis so 0 and 2,000 both show. Raises ImportError with an install hint
    without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(PLOT_EXTRA_HINT) from exc
    columns = min(len(curves), PNG_COLUMNS)
    rows = -(-len(curves) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.6 * rows), dpi=100, squeeze=False)
    for ax in axes.flat[len(curves):]:  # the last row's empty places
        ax.set_visible(False)
    colours, handles = series_colours(curves), {}
    for ax, (target, metric, series) in zip(axes.flat, curves):
        positive = [step for s in series for step in s.points if step > 0]
        for s in series:
            steps = sorted(s.points)
            mean = [100 * s.points[k][0] for k in steps]
            if s.reference:  # not a run: flat, dashed, grey
                (line,) = ax.plot(steps, mean, linestyle="--", color=colours[s.label])
            else:
                (line,) = ax.plot(steps, mean, marker="o", color=colours[s.label])
                spread = [100 * (s.points[k][1] or 0.0) for k in steps]
                if any(spread):
                    ax.fill_between(steps, [m - d for m, d in zip(mean, spread)],
                                    [m + d for m, d in zip(mean, spread)], color=colours[s.label], alpha=0.15)
            handles.setdefault(s.label, line)
        if positive:
            ax.set_xscale("symlog", linthresh=min(positive))
        ax.set_title(target)
        ax.set_xlabel("training step")
        ax.set_ylabel(f"test {metric} (%)")
        ax.grid(alpha=0.3)
    axes[0][0].legend(list(handles.values()), list(handles), fontsize=8)  # every panel's methods, once
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)

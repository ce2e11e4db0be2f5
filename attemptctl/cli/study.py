"""`study sources` (the paper's Figure 5), `study methods` (its Table 2) and `study show`."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from attemptctl.cli.app import app, call, err, out, require_matplotlib, workspace
from attemptctl.cli.options import (
    BackboneOpt,
    DataDirOpt,
    DeviceOpt,
    JsonOpt,
    PrecisionOpt,
    RecipeOpt,
    RegistryOpt,
    SourcesOpt,
    TrainingArgs,
    names,
    training_options,
    training_overrides,
)
from attemptctl.cli.progress import StudyProgress
from attemptctl.cli.render import AttentionRow, attention_heatmap
from attemptctl.formatting import percent
from attemptctl.method.variants import DEFAULT_RECIPE

study_app = typer.Typer(help="Studies over registered prompts.", no_args_is_help=True)
app.add_typer(study_app, name="study")


@study_app.command("sources")
def study_sources(
    task: Annotated[str, typer.Argument(help="A trained target, NAME or NAME@V.")],
    sources: Annotated[str, typer.Option("--sources", "-s", help="Sources in the order to add them.")] = "",
    split: Annotated[str, typer.Option("--split", help="dev or test.")] = "test",
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Evaluate the first N examples.")] = None,
    registry: RegistryOpt = None, data_dir: DataDirOpt = None, backbone: BackboneOpt = None, as_json: JsonOpt = False,
    device: DeviceOpt = "auto", precision: PrecisionOpt = "fp32",
) -> None:
    """Evaluate a target with sources added one at a time, in the order given (nothing is registered).

    Example: attemptctl study sources boolq --sources mnli,qqp,qnli,sst2
    """
    from rich.table import Table

    from attemptctl.studies import study_sources as run_study

    order = [part.strip() for part in sources.split(",") if part.strip()]
    rows = call(run_study, workspace(registry, data_dir, backbone, device=device, precision=precision, existing=True), task, order, split=split, limit=limit)
    if as_json:
        out.print_json(json.dumps([{"sources": list(r.sources), "metrics": r.metrics, "attention": r.attention,
                                    "examples": r.examples} for r in rows]))
        return
    table = Table(title=f"{task}: sources added one at a time ({split}, {rows[0].examples} examples)")
    table.add_column("sources")
    metrics = list(rows[0].metrics)
    for name in metrics:
        table.add_column(f"{name} (%)", justify="right")
    table.add_column("attention to the newest source", justify="right")
    for row in rows:
        newest = row.attention.get(row.sources[-1], 0.0)
        table.add_row(" + ".join(s.split("@")[0] for s in row.sources), *(percent(row.metrics[m]) for m in metrics),
                      f"{newest:.2f}")
    out.print(table)


# -- study methods / study show --------------------------------------------------------------------

CsvOpt = Annotated[bool, typer.Option("--csv", help="Print CSV (one line per method, target and shot count).")]
MarkdownOpt = Annotated[bool, typer.Option("--markdown", help="Print the table as Markdown.")]


def _integers(text: str, option: str) -> list[int]:
    try:
        return [int(part) for part in names(text)]
    except ValueError:
        raise typer.BadParameter(f"'{text}' is not a comma-separated list of integers", param_hint=option) from None


def _print_table(table, as_json: bool, as_csv: bool, markdown: bool) -> None:
    """The study's table in the format asked; as a rich table, with the differences from PT, the attention
    heatmap and the time."""
    from attemptctl.studies import TARGET_COLUMN, table_csv, table_json, table_markdown, table_rows

    if as_json:
        out.print_json(json.dumps(table_json(table)))
        return
    if as_csv or markdown:
        out.out(table_csv(table) if as_csv else table_markdown(table), highlight=False)
        return
    from rich.table import Table


    for shots, header, rows in table_rows(table):
        title = f"Study {table.name}: test scores (%), {table.seeds_caption()}" + (f", {shots}-shot" if shots else "")
        out.print(title, highlight=False)  # a line of its own: a table title wraps to the table's width
        rendered = Table()
        for i, name in enumerate(header):
            rendered.add_column(name, justify="left" if i == 0 else "right")
        for row in rows:
            rendered.add_row(*row)
        out.print(rendered)
    for note in (table.borrowed_note(), table.kept_start_note()):
        if note:
            out.print(note, highlight=False)
    _print_differences(table)
    attention = table.attention()
    if attention:
        from attemptctl.studies import METHODS

        columns = list(dict.fromkeys(c for *_, weights in attention for c in weights if c != TARGET_COLUMN))
        rows = [AttentionRow(f"{target}" + (f" · {shots}-shot" if shots else ""), weights, group=METHODS[method][1])
                for method, target, shots, weights in attention]
        out.print(attention_heatmap(rows, [*columns, TARGET_COLUMN], note="(target): a_t+1, before the +1; mean over "
                                    "seeds", title="Mean test attention of each ATTEMPT target over its sources"))
    for issue in table.budget_issues:
        err.print(f"[yellow]budget differs:[/] {issue}", highlight=False)
    if table.unfinished:
        err.print(f"{table.unfinished} cell(s) started but not finished; `study methods` with the study's options "
                  "trains them", highlight=False)
    out.print(f"{len(table.cells)} cells; total time {table.seconds / 60:.1f} min (training and test evaluation)",
              highlight=False)


def _print_differences(table) -> None:
    """Each method's difference from PT with its paired bootstrap interval; one that holds is bold and starred."""
    from rich.table import Table
    from rich.text import Text

    from attemptctl.studies import difference_note, difference_rows, differences

    rows = differences(table)
    for shots, header, body in difference_rows(table, rows):
        out.print(f"Study {table.name}: difference from PT (points, 95% paired bootstrap)"
                  + (f", {shots}-shot" if shots else ""), highlight=False)
        rendered = Table()
        for i, name in enumerate(header):
            rendered.add_column(name, justify="left" if i == 0 else "right")
        for row in body:
            rendered.add_row(*(Text(text + " *", style="bold") if holds else Text(text) for text, holds in row))
        out.print(rendered)
    if rows:
        out.print(difference_note(rows, mark="*"), highlight=False)


@study_app.command("methods")
@training_options(without=("epochs", "shots", "seed", "force", "attn_temperature", "attn_scale", "attn_pool"))
def study_methods(
    targets: Annotated[str, typer.Argument(help="Comma-separated target tasks, e.g. rte,mrpc,cb.")],
    sources: SourcesOpt = "",
    methods: Annotated[str, typer.Option("--methods", help="Comma-separated: pt, spot, attempt, attempt-mt, no-target, "
                                         "uniform, single (default: all).")] = "",
    seeds: Annotated[str, typer.Option("--seeds", help="Comma-separated seeds; the table shows mean ± std.")] = "42",
    shots: Annotated[str, typer.Option("--shots", help="Few-shot: K training rows per class, e.g. 4,16,32 "
                                       "(default: the full training set).")] = "",
    name: Annotated[str | None, typer.Option("--name", help="The study's name (default: methods-TARGET+TARGET…).")] = None,
    single_source: Annotated[str | None, typer.Option("--single-source", help="single: this source for every target "
                             "(default: the most attended source of the target's attempt cell).")] = None,
    attn_prior: Annotated[str | None, typer.Option("--attn-prior", help="Initialise G from this attention prior.")] = None,
    target_init: Annotated[str | None, typer.Option("--target-init", help="Where the mixing methods' target prompt "
                           "starts: auto (MNLI's prompt for classification, as the paper), vocab, zeros, best-source or "
                           "source:NAME (default: the recipe's).")] = None,
    recipe: RecipeOpt = DEFAULT_RECIPE,
    sampling_temperature: Annotated[float | None, typer.Option(
        "--sampling-temperature", help="attempt-mt sampling ∝ size^(1/T): 1 proportional, large uniform.")] = None,
    max_cells: Annotated[int | None, typer.Option("--max-cells", min=1, help="Train at most N cells, then stop; "
                                                  "run again to continue.")] = None,
    registry: RegistryOpt = None, data_dir: DataDirOpt = None, backbone: BackboneOpt = None,
    as_json: JsonOpt = False, as_csv: CsvOpt = False, markdown: MarkdownOpt = False,
    export: Annotated[Path | None, typer.Option("--export", help="Write the study's JSON to FILE after every "
                                               "finished cell (`study show --from FILE` reads it).")] = None,
    *, args: TrainingArgs,
) -> None:
    """Train every method on every target at one budget and print the table (the paper's Table 2).

    Each cell (method × target × seed × shots) is a target version tagged with the study's name:
    a finished cell is never trained again, so an interrupted study continues where it stopped.

    Example: attemptctl study methods rte,mrpc,cb --sources mnli,qqp,qnli,sst2,squad --seeds 1,2,3
             attemptctl study methods cb,boolq --sources mnli,qqp --shots 4,16,32 --name few-shot
    """
    from attemptctl.studies import METHODS, MethodsStudyConfig
    from attemptctl.studies import study_methods as run_study

    overrides = args.overrides | training_overrides({"sampling_temperature": sampling_temperature})
    config = call(MethodsStudyConfig, tuple(names(targets)), tuple(names(sources)),
                  tuple(names(methods)) or tuple(METHODS), tuple(_integers(seeds, "--seeds")),
                  tuple(_integers(shots, "--shots")) or (None,), name, args.preset, overrides,
                  single_source, attn_prior, target_init, recipe)
    started = time.perf_counter()
    ws = workspace(registry, data_dir, backbone, **args.runtime)
    on_cell = None
    if export is not None:
        from attemptctl.studies import check_export, methods_table, write_export

        store = call(ws.registry)
        call(check_export, export, methods_table(store, config.study))

        def on_cell(event: str, **data: Any) -> None:
            progress.cell(event, **data)
            if event == "done":
                write_export(export, methods_table(store, config.study))
    with StudyProgress() as progress:
        result = call(run_study, ws, config, on_event=progress, on_cell=on_cell or progress.cell,
                      max_cells=max_cells, resume=args.resume)
    if export is not None and result.table.cells:
        write_export(export, result.table)
    if result.table.cells:
        _print_table(result.table, as_json, as_csv, markdown)
    err.print(f"study {config.study}: {len(result.trained)} cell(s) trained in {time.perf_counter() - started:.0f} s, "
              f"{result.skipped} already done; show it again with `attemptctl study show {config.study}`",
              highlight=False)
    if result.interrupted:
        raise typer.Exit(130)
    if result.stopped:
        err.print("stopped at --max-cells; run the same command again to train the rest", highlight=False)


@study_app.command("show")
def study_show(
    name: Annotated[str, typer.Argument(help="The study's name (printed by `study methods`).")],
    registry: RegistryOpt = None, as_json: JsonOpt = False, as_csv: CsvOpt = False, markdown: MarkdownOpt = False,
    exports: Annotated[list[Path] | None, typer.Option("--from", help="Read the cells from these `--json` exports "
                                                       "instead of the registry (repeat for several).")] = None,
    targets: Annotated[str | None, typer.Option("--targets", help="Comma-separated targets to put first, in "
                                                "this order, e.g. rte,mrpc,cb (default: the order they "
                                                "were trained in).")] = None,
    curves: Annotated[bool, typer.Option("--curves", help="Draw the learning curves (cells trained with "
                                         "--curve-steps) in the terminal instead of the table.")] = False,
    png: Annotated[Path | None, typer.Option("--png", help="Write the learning curves to this PNG file "
                                             "(needs matplotlib: the plot extra).")] = None,
) -> None:
    """Print a methods study's table from the registry alone, in about a second (no torch, no data).

    With --from, the table joins the cells of several exports (a study run in several registries or
    on several machines), with the equal budget checked across all of them.

    Example: attemptctl study show methods-rte+mrpc+cb --markdown
             attemptctl study show six-targets --from part-1.json --from part-2.json
             attemptctl study show curves --curves --png curves.png
    """
    from attemptctl.studies import in_order, read_export, show_study, table_from_exports

    if png is not None:
        require_matplotlib()
    if exports:
        table = call(table_from_exports, name, [(str(p), call(read_export, p)) for p in exports])
    else:
        table = call(show_study, workspace(registry, existing=True), name)
    if targets is not None:
        table = call(in_order, table, names(targets))
    if curves or png is not None:
        _print_curves(table, curves, png)
        return
    _print_table(table, as_json, as_csv, markdown)


def _print_curves(table, draw: bool, png: Path | None) -> None:
    """Each target's learning curves: a terminal table with sparklines (``draw``) and/or a PNG."""
    from attemptctl.cli.render import CurveSeries, curve_table, curves_png
    from attemptctl.studies import curve_panels
    from attemptctl.studies.table import CONSTANT_LABEL

    panels = [(title, metric, [CurveSeries(label, {step: (s.mean, s.std, s.n) for step, s in points.items()},
                                           reference=label == CONSTANT_LABEL)
                               for label, points in series])
              for title, metric, series in call(curve_panels, table)]
    if draw:
        out.print(f"Study {table.name}: learning curves, test scores (%) at each step, {table.seeds_caption()}",
                  highlight=False)
        for title, metric, series in panels:
            out.print(curve_table(title, metric, series))
    if png is not None:
        call(curves_png, panels, png, title=f"Study {table.name}: test score by training step")
        err.print(f"wrote {png}", highlight=False)

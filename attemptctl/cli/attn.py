"""`attn show` (attention heatmaps, per-label means, telling examples; as a table, CSV, JSON or PNG) and
`attn pretrain` (the attention prior)."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer

from attemptctl.cli.app import attn_app, call, err, exit_if_interrupted, out, require_matplotlib, workspace
from attemptctl.cli.options import (
    BackboneOpt,
    DataDirOpt,
    DeviceOpt,
    JsonOpt,
    PrecisionOpt,
    RegistryOpt,
    SourcesOpt,
    TrainingArgs,
    names,
    training_options,
)
from attemptctl.cli.progress import TrainProgress
from attemptctl.cli.render import AttentionRow, ExampleRow, attention_heatmap, dev_summary, examples_table, heatmap_png

FORMATS = ("table", "csv", "json", "png")
FormatOpt = Annotated[str, typer.Option("--format", "-f", help="table, csv, json or png (png needs --output).")]


@attn_app.command("show")
def attn_show(
    tasks: Annotated[list[str] | None, typer.Argument(help="Targets (NAME or NAME@V); none: every latest target.")] = None,
    examples: Annotated[int | None, typer.Option("--examples", min=1, help="List the N examples weighing each "
                                                 "prompt most and least.")] = None,
    by_label: Annotated[bool, typer.Option("--by-label", help="One row per gold label instead of per target.")] = False,
    fmt: FormatOpt = "table",
    output: Annotated[Path | None, typer.Option("--output", "-o", help="File to write (required for png).")] = None,
    split: Annotated[str, typer.Option("--split", help="dev or test.")] = "test",
    limit: Annotated[int | None, typer.Option("--limit", help="Use the first N examples of the split.")] = None,
    registry: RegistryOpt = None, data_dir: DataDirOpt = None, backbone: BackboneOpt = None, as_json: JsonOpt = False,
    device: DeviceOpt = "auto", precision: PrecisionOpt = "fp32",
) -> None:
    """Attention of targets over their sources and their own prompt (before the +1), averaged over test examples.

    Computed once per prompt version and cached in the registry; later calls need no backbone.

    Example: attemptctl attn show boolq --examples 3
             attemptctl attn show --by-label --format png --output attention.png
    """
    fmt = "json" if as_json else fmt
    _check_format(fmt, output, examples)
    from attemptctl.workflows.attn import attention_weights

    results = call(attention_weights, workspace(registry, data_dir, backbone, device=device, precision=precision, existing=True), tasks or None, split=split,
                   limit=limit, on_batch=_progress_bar())
    if by_label:
        for result in results:
            call(result.by_label)  # a free-form task is refused before anything is printed
    if fmt == "json":
        text = json.dumps([_as_json(r, examples, by_label) for r in results], indent=2)
    elif fmt == "csv":
        text = _examples_csv(results, examples) if examples else _heatmap_csv(results, by_label)
    elif fmt == "png":
        _write_png(results, by_label, output)
        return
    else:
        _print_tables(results, examples, by_label)
        return
    if output:
        output.write_text(text + "\n")
        err.print(f"wrote {output}", highlight=False)
    elif fmt == "json":
        out.print_json(text)
    else:
        out.out(text, end="", highlight=False)


def _check_format(fmt: str, output: Path | None, examples: int | None) -> None:
    """Usage mistakes fail before any data or weights are loaded."""
    if fmt not in FORMATS:
        raise typer.BadParameter(f"'{fmt}' is not one of {', '.join(FORMATS)}", param_hint="--format")
    if fmt == "png":
        if output is None:
            raise typer.BadParameter("png needs a file: add --output attention.png", param_hint="--output")
        if examples:
            raise typer.BadParameter("--examples lists text; export it as table, csv or json", param_hint="--examples")
        require_matplotlib()


def _progress_bar():
    """An on_batch callback that opens a progress bar on stderr at the first computed batch.

    Nothing is drawn when every target comes from the cache, and stdout stays clean for csv/json.
    """
    state = {}

    def on_batch(done: int, total: int) -> None:
        from rich.progress import Progress

        if "bar" not in state:
            state["bar"] = Progress(console=err, transient=True)
            state["bar"].start()
            state["task"] = state["bar"].add_task("computing attention weights", total=total)
        state["bar"].advance(state["task"], done)
        if state["bar"].tasks[0].finished:
            state["bar"].stop()

    return on_batch


def _columns(results) -> list[str]:
    """Sources in a stable (sorted) order, then the target's own prompt if any result has it."""
    from attemptctl.method.variants import TARGET_COLUMN

    names = {c for r in results for c in r.columns}
    return sorted(names - {TARGET_COLUMN}) + ([TARGET_COLUMN] if TARGET_COLUMN in names else [])


def _heatmap_rows(results, by_label: bool):
    """One row per target (grouped by shared G) or, by label, one row per target and gold label."""

    if by_label:
        return [AttentionRow(f"{r.record.ref} · {label}", weights, group=r.record.ref if len(results) > 1 else None)
                for r in results for label, weights in r.by_label().items()]
    # Targets trained together (one shared G) are grouped under the name of their run.
    runs = Counter(r.record.attention for r in results)
    return [AttentionRow(r.record.ref, r.mean(),
                         group=f"shared G {r.record.attention}" if runs[r.record.attention] > 1 else None)
            for r in results]


TARGET_NOTE = "(target): a_t+1, before the +1"


def _title(results, by_label: bool) -> str:
    what = "per gold label " if by_label else ""
    count = f"{len(results[0].examples)} " if len(results) == 1 else ""
    return f"Mean attention {what}over {count}{results[0].split} examples"


def _example_rows(result, n: int):

    return [ExampleRow(column, side, weight, example.target, example.input)
            for column, sides in result.extremes(n).items()
            for side, picked in sides.items() for weight, example in picked]


def _print_tables(results, examples: int | None, by_label: bool) -> None:

    out.print(attention_heatmap(_heatmap_rows(results, by_label), _columns(results), title=_title(results, by_label),
                                group_titles=not by_label, note=TARGET_NOTE))
    for result in results if not by_label else ():
        spread = " · ".join(f"{column} {value:.3f}" for column, value in result.spread().items())
        out.print(f"{result.record.ref}: std across examples: {spread}", highlight=False)
    for result in results if examples else ():
        title = f"{result.record.ref}: the {examples} {result.split} examples weighing each prompt most and least"
        out.print(examples_table(_example_rows(result, examples), title=title))


def _as_json(result, examples: int | None, by_label: bool) -> dict:
    data = {"prompt": result.record.ref, "task": result.task.name, "split": result.split,
            "examples": len(result.examples), "cached": result.cached, "weights": result.mean(),
            "std": result.spread()}
    if by_label:
        data["by_label"] = result.by_label()
    if examples:
        data["extremes"] = {column: {side: [{"weight": w, "gold": e.target, "input": e.input} for w, e in picked]
                                     for side, picked in sides.items()}
                            for column, sides in result.extremes(examples).items()}
    return data


def _heatmap_csv(results, by_label: bool) -> str:
    """The heatmap's cells; a column a target does not mix is an empty field, not 0."""
    columns = _columns(results)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["row", "group", *columns])
    for row in _heatmap_rows(results, by_label):
        writer.writerow([row.label, row.group or "",
                         *(f"{row.weights[c]:.6f}" if c in row.weights else "" for c in columns)])
    return buffer.getvalue().rstrip("\n")


def _examples_csv(results, examples: int) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["prompt", "column", "side", "rank", "weight", "gold", "input"])
    for result in results:
        for column, sides in result.extremes(examples).items():
            for side, picked in sides.items():
                for rank, (weight, example) in enumerate(picked, 1):
                    writer.writerow([result.record.ref, column, side, rank, f"{weight:.6f}", example.target,
                                     example.input])
    return buffer.getvalue().rstrip("\n")


def _write_png(results, by_label: bool, output: Path) -> None:

    heatmap_png(_heatmap_rows(results, by_label), _columns(results), output, title=_title(results, by_label))
    err.print(f"wrote {output}", highlight=False)


@attn_app.command("pretrain")
@training_options(without=("prompt_length", "labels", "label_words"))
def attn_pretrain(
    sources: SourcesOpt = "",
    name: Annotated[str, typer.Option("--name", help="Name of the attention prior in the registry.")] = "prior",
    registry: RegistryOpt = None, data_dir: DataDirOpt = None, backbone: BackboneOpt = None, *, args: TrainingArgs,
) -> None:
    """Learn an attention prior: train G on the source tasks, each with a fresh task prompt.

    Example: attemptctl attn pretrain --sources mnli,qqp,qnli,sst2
             attemptctl target train rte --sources mnli,qqp,qnli,sst2 --attn-prior prior
    """
    from attemptctl.workflows.attn import pretrain_attention

    with TrainProgress() as progress:
        record, result = call(pretrain_attention, workspace(registry, data_dir, backbone, **args.runtime),
                              names(sources), name=name, preset=args.preset, overrides=args.overrides,
                              on_event=progress, resume=args.resume, force=args.force)
    if record is None:
        return
    out.print(f"registered attention prior [bold]{record.ref}[/] over {', '.join(names(sources))} "
              f"({dev_summary(result.dev, result.dev_examples)}; {result.steps} steps)", highlight=False)
    exit_if_interrupted(result)

"""`eval` and `predict`: score prompts (results stored with each version) and predict new inputs."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from attemptctl.cli.common import (
    BackboneOpt,
    DataDirOpt,
    DeviceOpt,
    JsonOpt,
    PrecisionOpt,
    RegistryOpt,
    app,
    call,
    err,
    out,
    workspace,
)

DecodeOpt = Annotated[str, typer.Option("--decode", help="rank (rank classification) or generate (greedy).")]
BatchOpt = Annotated[int, typer.Option("--batch-size", min=1, help="Rows per forward pass.")]


def _eval_records(rows) -> list[dict]:
    return [{"prompt": r.record.ref, "task": r.record.name, "version": r.record.version, "kind": r.record.kind,
             "variant": r.record.variant, "split": r.split, "sources": list(r.record.sources), "metrics": r.metrics,
             "examples": r.examples, "seconds": round(r.seconds, 3)} for r in rows]


def _csv(records: list[dict]) -> str:
    metrics = list(dict.fromkeys(name for record in records for name in record["metrics"]))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["prompt", "kind", "variant", "split", "sources", *metrics, "examples", "seconds"])
    for r in records:
        writer.writerow([r["prompt"], r["kind"], r["variant"], r["split"], " ".join(r["sources"]),
                         *(r["metrics"].get(m, "") for m in metrics), r["examples"], r["seconds"]])
    return buffer.getvalue()


def _comparison(rows):
    """Versions of each task side by side: variant, sources, parent, metrics and the change from the first."""
    from rich.table import Table

    table = Table(title="Versions side by side", caption="metrics in %; Δ against the first version of the task")
    metrics = list(dict.fromkeys(name for row in rows for name in row.metrics))
    for column in ("prompt", "variant", "sources", "parent", *metrics, "Δ " + metrics[0]):
        table.add_column(column, justify="right" if column in metrics or column.startswith("Δ") else "left")
    first: dict[str, float] = {}
    for row in rows:
        primary = row.metrics.get(metrics[0], 0.0)
        base = first.setdefault(row.record.name, primary)
        table.add_row(row.record.ref, row.record.variant, ", ".join(row.record.sources) or "—", row.record.parent or "",
                      *(f"{100 * row.metrics[m]:.1f}" if m in row.metrics else "" for m in metrics),
                      f"{100 * (primary - base):+.1f}")
    return table


@app.command("eval")
def eval_command(
    tasks: Annotated[list[str] | None, typer.Argument(help="Prompts (NAME or NAME@V); none: every latest target.")] = None,
    split: Annotated[str, typer.Option("--split", help="dev or test.")] = "test",
    decode: DecodeOpt = "rank",
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Evaluate the first N examples.")] = None,
    batch_size: BatchOpt = 16,
    compare: Annotated[bool, typer.Option("--compare", help="Every version of each named task, side by side.")] = False,
    as_csv: Annotated[bool, typer.Option("--csv", help="Print CSV instead of a table.")] = False,
    registry: RegistryOpt = None, data_dir: DataDirOpt = None, backbone: BackboneOpt = None, as_json: JsonOpt = False,
    device: DeviceOpt = "auto", precision: PrecisionOpt = "fp32",
) -> None:
    """Evaluate targets (or sources) in shared batches and store the scores with each prompt version.

    Example: attemptctl eval            (every latest target)
             attemptctl eval boolq@2 mnli --split dev --json
             attemptctl eval boolq --compare
    """
    from attemptctl.reports import evaluate_prompts
    from attemptctl.views import MetricsRow, metrics_table

    rows = call(evaluate_prompts, workspace(registry, data_dir, backbone, device=device, precision=precision), tasks or None, split=split, decode=decode,
                limit=limit, batch_size=batch_size, compare=compare)
    if as_json:
        out.print_json(json.dumps(_eval_records(rows)))
    elif as_csv:
        out.out(_csv(_eval_records(rows)), end="", highlight=False)
    elif compare:
        out.print(_comparison(rows))
    else:
        out.print(metrics_table([MetricsRow(task=r.record.name, version=r.record.version, kind=r.record.kind,
                                            sources=r.record.sources, metrics=r.metrics, examples=r.examples,
                                            seconds=r.seconds, split=r.split) for r in rows]))


@app.command("predict")
def predict_command(
    task: Annotated[str, typer.Argument(help="A target or source prompt, NAME or NAME@V.")],
    inputs: Annotated[str | None, typer.Argument(help="One JSON object with the task's fields; none: --file or stdin.")] = None,
    file: Annotated[Path | None, typer.Option("--file", "-f", help="A JSONL file, one input object per line.")] = None,
    decode: DecodeOpt = "rank", batch_size: BatchOpt = 16,
    registry: RegistryOpt = None, backbone: BackboneOpt = None, as_json: JsonOpt = False,
    device: DeviceOpt = "auto", precision: PrecisionOpt = "fp32",
) -> None:
    """Predict outputs for new inputs, with each row's attention over the sources.

    Example: attemptctl predict rte '{"sentence1": "A cat sat.", "sentence2": "An animal sat."}'
             attemptctl predict boolq --file questions.jsonl --json
             cat inputs.jsonl | attemptctl predict boolq
    """
    from attemptctl.reports import parse_inputs, predict

    if inputs is not None and file is not None:
        raise typer.BadParameter("give inputs as an argument or with --file, not both")
    if file is not None:
        if not file.is_file():
            err.print(f"error: {file}: file not found", highlight=False)
            raise typer.Exit(1)
        try:
            lines, origin = file.read_text(encoding="utf-8").splitlines(), str(file)
        except UnicodeDecodeError as exc:
            err.print(f"error: {file}: not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8 JSONL",
                      highlight=False)
            raise typer.Exit(1) from None
    elif inputs is not None:
        lines, origin = [inputs], "argument"
    else:
        lines, origin = sys.stdin.read().splitlines(), "stdin"
    rows = call(parse_inputs, lines, origin)
    predictions = call(predict, workspace(registry, None, backbone, device=device, precision=precision), task, rows, origin=origin, decode=decode,
                       batch_size=batch_size)
    if as_json:
        out.print_json(json.dumps([{"input": p.input, "prediction": p.prediction, "attention": p.attention}
                                   for p in predictions]))
        return
    from rich.table import Table

    table = Table(show_lines=False)
    table.add_column("input", overflow="fold", ratio=3)
    table.add_column("prediction")
    table.add_column("attention")
    for p in predictions:
        attention = ", ".join(f"{k} {v:.2f}" for k, v in (p.attention or {}).items()) or "—"
        table.add_row(p.input, p.prediction, attention)
    out.print(table)

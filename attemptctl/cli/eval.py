"""`eval`: score prompts in shared batches; the results are stored with each version."""

from __future__ import annotations

import csv
import io
import json
from typing import Annotated

import typer

from attemptctl.cli.app import app, call, out, workspace
from attemptctl.cli.options import (
    BackboneOpt,
    BatchOpt,
    DataDirOpt,
    DecodeOpt,
    DeviceOpt,
    JsonOpt,
    LabelScoringOpt,
    PrecisionOpt,
    RegistryOpt,
)
from attemptctl.cli.render import MetricsRow, metrics_table
from attemptctl.formatting import percent


def _constant(row) -> dict | None:
    """The task's constant answer on the row's examples (None for free-form tasks), as JSON gives it."""
    return None if row.constant is None else {"answer": row.constant.answer, "metrics": row.constant.metrics}


def _eval_records(rows) -> list[dict]:
    return [{"prompt": r.record.ref, "task": r.record.name, "version": r.record.version, "kind": r.record.kind,
             "variant": r.record.variant, "split": r.split, "sources": list(r.record.sources), "metrics": r.metrics,
             "constant": _constant(r), "examples": r.examples, "seconds": round(r.seconds, 3)} for r in rows]


def _csv(records: list[dict]) -> str:
    metrics = list(dict.fromkeys(name for record in records for name in record["metrics"]))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["prompt", "kind", "variant", "split", "sources", *metrics, "constant_answer",
                     *(f"constant_{m}" for m in metrics), "examples", "seconds"])
    for r in records:
        constant = r["constant"] or {"answer": "", "metrics": {}}
        writer.writerow([r["prompt"], r["kind"], r["variant"], r["split"], " ".join(r["sources"]),
                         *(r["metrics"].get(m, "") for m in metrics), constant["answer"],
                         *(constant["metrics"].get(m, "") for m in metrics), r["examples"], r["seconds"]])
    return buffer.getvalue()


def _comparison(rows):
    """Versions of each task side by side: variant, sources, parent, metrics, the constant answer (in the
    first metric, as Δ) and the change from the first."""
    from rich.table import Table

    metrics = list(dict.fromkeys(name for row in rows for name in row.metrics))
    table = Table(title="Versions side by side",
                  caption="metrics in %; constant: best single label; Δ against the task's first version")
    for column in ("prompt", "variant", "sources", "parent", *metrics, "constant", "Δ " + metrics[0]):
        numeric = column in (*metrics, "constant") or column.startswith("Δ")
        table.add_column(column, justify="right" if numeric else "left")
    first: dict[str, float] = {}
    for row in rows:
        primary = row.metrics.get(metrics[0], 0.0)
        base = first.setdefault(row.record.name, primary)
        constant = percent(row.constant.metrics.get(metrics[0])) if row.constant else "—"
        table.add_row(row.record.ref, row.record.variant, ", ".join(row.record.sources) or "—", row.record.parent or "",
                      *(percent(row.metrics.get(m)) for m in metrics), constant,
                      f"{100 * (primary - base):+.1f}")
    return table


@app.command("eval")
def eval_command(
    tasks: Annotated[list[str] | None, typer.Argument(help="Prompts (NAME or NAME@V); none: every latest target.")] = None,
    split: Annotated[str, typer.Option("--split", help="dev or test.")] = "test",
    decode: DecodeOpt = "rank", label_scoring: LabelScoringOpt = None,
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
    from attemptctl.workflows.eval import evaluate_prompts

    rows = call(evaluate_prompts, workspace(registry, data_dir, backbone, device=device, precision=precision, existing=True), tasks or None, split=split, decode=decode,
                limit=limit, batch_size=batch_size, compare=compare, scoring=label_scoring)
    if as_json:
        out.print_json(json.dumps(_eval_records(rows)))
    elif as_csv:
        out.out(_csv(_eval_records(rows)), end="", highlight=False)
    elif compare:
        out.print(_comparison(rows))
    else:
        out.print(metrics_table([MetricsRow(task=r.record.name, version=r.record.version, kind=r.record.kind,
                                            sources=r.record.sources, metrics=r.metrics, examples=r.examples,
                                            seconds=r.seconds, split=r.split,
                                            constant=r.constant.metrics if r.constant else None) for r in rows]))

"""`predict`: outputs and attention for new inputs (an argument, --file or stdin)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from attemptctl.cli.app import app, call, err, out, workspace
from attemptctl.cli.options import (
    BackboneOpt,
    BatchOpt,
    DecodeOpt,
    DeviceOpt,
    JsonOpt,
    LabelScoringOpt,
    PrecisionOpt,
    RegistryOpt,
)


@app.command("predict")
def predict_command(
    task: Annotated[str, typer.Argument(help="A target or source prompt, NAME or NAME@V.")],
    inputs: Annotated[str | None, typer.Argument(help="One JSON object with the task's fields; none: --file or stdin.")] = None,
    file: Annotated[Path | None, typer.Option("--file", "-f", help="A JSONL file, one input object per line.")] = None,
    decode: DecodeOpt = "rank", batch_size: BatchOpt = 16, label_scoring: LabelScoringOpt = None,
    registry: RegistryOpt = None, backbone: BackboneOpt = None, as_json: JsonOpt = False,
    device: DeviceOpt = "auto", precision: PrecisionOpt = "fp32",
) -> None:
    """Predict outputs for new inputs, with each row's attention over the sources.

    Example: attemptctl predict rte '{"sentence1": "A cat sat.", "sentence2": "An animal sat."}'
             attemptctl predict boolq --file questions.jsonl --json
             cat inputs.jsonl | attemptctl predict boolq
    """
    from attemptctl.workflows.predict import parse_inputs, predict

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
    predictions = call(predict, workspace(registry, None, backbone, device=device, precision=precision, existing=True), task, rows, origin=origin, decode=decode,
                       batch_size=batch_size, scoring=label_scoring)
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

"""`eval`: score prompts and store the results."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from attemptctl.cli.common import BackboneOpt, DataDirOpt, JsonOpt, RegistryOpt, app, call, out, workspace

# -- eval ------------------------------------------------------------------------------------------

@app.command("eval")
def eval_command(
    tasks: Annotated[list[str] | None, typer.Argument(help="Prompts (NAME or NAME@V); none: every latest target.")] = None,
    split: Annotated[str, typer.Option("--split", help="dev or test.")] = "test",
    decode: Annotated[str, typer.Option("--decode", help="rank (rank classification) or generate (greedy).")] = "rank",
    limit: Annotated[int | None, typer.Option("--limit", help="Evaluate the first N examples.")] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Rows per forward pass.")] = 16,
    registry: RegistryOpt = None, data_dir: DataDirOpt = None, backbone: BackboneOpt = None, as_json: JsonOpt = False,
) -> None:
    """Evaluate targets (or sources) and store the scores with each prompt version.

    Example: attemptctl eval            (every latest target)
             attemptctl eval boolq@2 mnli --split dev --json
    """
    from attemptctl.reports import evaluate_prompts
    from attemptctl.views import MetricsRow, metrics_table

    rows = call(evaluate_prompts, workspace(registry, data_dir, backbone), tasks or None, split=split, decode=decode,
                 limit=limit, batch_size=batch_size)
    if as_json:
        out.print_json(json.dumps([{"prompt": r.record.ref, "kind": r.record.kind, "split": r.split,
                                    "sources": list(r.record.sources), "metrics": r.metrics,
                                    "examples": r.examples, "seconds": round(r.seconds, 3)} for r in rows]))
        return
    out.print(metrics_table([MetricsRow(task=r.record.name, version=r.record.version, kind=r.record.kind,
                                        sources=r.record.sources, metrics=r.metrics, examples=r.examples,
                                        seconds=r.seconds, split=r.split) for r in rows]))

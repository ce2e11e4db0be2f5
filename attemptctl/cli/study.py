"""`study sources`: a target's score as sources are added one at a time (the paper's Figure 5)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from attemptctl.cli.common import BackboneOpt, DataDirOpt, JsonOpt, RegistryOpt, app, call, out, workspace

study_app = typer.Typer(help="Studies over registered prompts.", no_args_is_help=True)
app.add_typer(study_app, name="study")


@study_app.command("sources")
def study_sources(
    task: Annotated[str, typer.Argument(help="A trained target, NAME or NAME@V.")],
    sources: Annotated[str, typer.Option("--sources", "-s", help="Sources in the order to add them.")] = "",
    split: Annotated[str, typer.Option("--split", help="dev or test.")] = "test",
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Evaluate the first N examples.")] = None,
    registry: RegistryOpt = None, data_dir: DataDirOpt = None, backbone: BackboneOpt = None, as_json: JsonOpt = False,
) -> None:
    """Evaluate a target with sources added one at a time, in the order given (nothing is registered).

    Example: attemptctl study sources boolq --sources mnli,qqp,qnli,sst2
    """
    from rich.table import Table

    from attemptctl.studies import study_sources as run_study

    order = [part.strip() for part in sources.split(",") if part.strip()]
    rows = call(run_study, workspace(registry, data_dir, backbone), task, order, split=split, limit=limit)
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
        table.add_row(" + ".join(s.split("@")[0] for s in row.sources), *(f"{100 * row.metrics[m]:.1f}" for m in metrics),
                      f"{newest:.2f}")
    out.print(table)

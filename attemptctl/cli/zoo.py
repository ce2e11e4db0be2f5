"""`source pull`: register the source prompts that ship with attemptctl (the zoo)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from attemptctl.cli.common import BackboneOpt, JsonOpt, RegistryOpt, call, out, source_app, workspace


@source_app.command("pull")
def source_pull(
    tasks: Annotated[str, typer.Option("--tasks", help="Comma-separated zoo sources to pull (default: all).")] = "",
    labels: Annotated[str, typer.Option("--labels", help="The zoo whose prompts answer in this label format: "
                                        "words or index.")] = "words",
    registry: RegistryOpt = None, backbone: BackboneOpt = None, as_json: JsonOpt = False,
) -> None:
    """Register the zoo's trained source prompts for the backbone (default smollm2-135m); verified, idempotent.

    Example: attemptctl source pull
             attemptctl target train boolq --sources mnli,qqp
             attemptctl source pull --labels index
    """
    from attemptctl.views import in_metric_order
    from attemptctl.zoo import pull_zoo

    ws = workspace(registry, None, backbone)
    reg = call(ws.registry)
    names = [part.strip() for part in tasks.split(",") if part.strip()] or None
    result = call(pull_zoo, reg, call(ws.backbone_spec, reg), tasks=names, labels=labels)
    if as_json:
        out.print_json(json.dumps({"added": [r.ref for r in result.added], "present": [r.ref for r in result.present],
                                   "missing": result.missing}))
        return
    for record in result.added:
        test = record.metrics.get("test", {})
        ranked = in_metric_order(record.task, test.get("metrics", {}))  # the primary metric first
        scores = ", ".join(f"{k} {100 * v:.1f}" for k, v in ranked.items())
        out.print(f"pulled source [bold]{record.ref}[/] (m={record.m}; test {scores} on {test.get('examples')} examples)",
                  highlight=False)
    for record in result.present:
        out.print(f"already here: source {record.ref}", highlight=False)
    for task, why in result.missing.items():
        out.print(f"not in the zoo: {task} ({why})", highlight=False)

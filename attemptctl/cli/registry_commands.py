"""`registry list | show | rm`."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from attemptctl.cli.common import JsonOpt, RegistryOpt, call, out, registry_app, workspace

# -- registry --------------------------------------------------------------------------------------

@registry_app.command("list")
def registry_list(
    kind: Annotated[str | None, typer.Option("--kind", help="source, target or attention.")] = None,
    registry: RegistryOpt = None, as_json: JsonOpt = False,
) -> None:
    """List registered prompts. Example: attemptctl registry list --kind source"""
    from attemptctl.views import records_table

    records = call(lambda: workspace(registry).registry().list(kind=kind))
    if as_json:
        out.print_json(json.dumps([_record_json(r) for r in records]))
    elif not records:
        out.print("the registry is empty; start with `attemptctl source train mnli`")
    else:
        out.print(records_table(records))


@registry_app.command("show")
def registry_show(
    name: Annotated[str, typer.Argument(help="NAME or NAME@V (targets first, then sources, then attention).")],
    registry: RegistryOpt = None,
) -> None:
    """Everything recorded about one prompt version, with its evaluations. Example: attemptctl registry show boolq@1"""
    reg = call(workspace(registry).registry)
    record = call(reg.find, name, kinds=("target", "source", "attention"))
    data = _record_json(record)
    data["evaluations"] = [{"split": e.split, "metrics": dict(e.metrics), "examples": e.examples,
                            "seconds": e.seconds, "at": e.created_at.isoformat(timespec="seconds")}
                           for e in call(reg.evaluations, record.kind, record.ref)]
    out.print_json(json.dumps(data))


@registry_app.command("rm")
def registry_rm(
    name: Annotated[str, typer.Argument(help="NAME (every version) or NAME@V.")],
    kind: Annotated[str, typer.Option("--kind", help="source, target or attention.")] = "target",
    force: Annotated[bool, typer.Option("--force", help="Remove even if targets still mix it.")] = False,
    registry: RegistryOpt = None,
) -> None:
    """Remove prompt versions. Example: attemptctl registry rm mnli@1 --kind source"""
    removed = call(lambda: workspace(registry).registry().remove(kind, name, force=force))
    for record in removed:
        out.print(f"removed {record.kind} {record.ref}", highlight=False)


def _record_json(record) -> dict:
    return {"kind": record.kind, "prompt": record.ref, "task": record.task, "backbone": record.backbone,
            "d": record.d, "m": record.m, "sources": list(record.sources), "attention": record.attention,
            "variant": record.variant, "parent": record.parent, "sha256": record.sha256,
            "created_at": record.created_at.isoformat(timespec="seconds"), "config": dict(record.config),
            "metrics": dict(record.metrics), "fingerprint": dict(record.fingerprint)}

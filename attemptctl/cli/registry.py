"""`registry list | show | rm | verify | backup | export | upgrade`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from attemptctl.cli.app import EXIT_ERROR, call, err, out, registry_app, workspace
from attemptctl.cli.options import BackboneOpt, JsonOpt, RegistryOpt
from attemptctl.cli.render import origin_of, records_table

# -- registry --------------------------------------------------------------------------------------

@registry_app.command("list")
def registry_list(
    kind: Annotated[str | None, typer.Option("--kind", help="source, target or attention.")] = None,
    registry: RegistryOpt = None, as_json: JsonOpt = False,
) -> None:
    """List registered prompts. Example: attemptctl registry list --kind source"""

    records = call(lambda: workspace(registry, existing=True).registry().list(kind=kind))
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
    reg = call(workspace(registry, existing=True).registry)
    record = call(reg.find, name, kinds=("target", "source", "attention"))
    from attemptctl.workflows.payloads import payload_summary  # torch: only once a record is shown

    data = _record_json(record)
    data["payload"] = payload_summary(reg, record)
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
    removed = call(lambda: _remove(workspace(registry, existing=True).registry(), kind, name, force))
    for record in removed:
        out.print(f"removed {record.kind} {record.ref}", highlight=False)


def _remove(reg, kind: str, name: str, force: bool) -> list:
    """``reg.remove``; a name not found under ``kind`` but registered under another kind says which ``--kind``."""
    from registry import NotFoundError

    try:
        return reg.remove(kind, name, force=force)
    except NotFoundError as error:
        for other in ("source", "target", "attention"):
            if other != kind:
                try:
                    reg.find(name, kinds=(other,))
                except NotFoundError:
                    continue
                raise NotFoundError(f"{error}; '{name}' is registered as a {other}: add --kind {other}") from None
        raise


@registry_app.command("verify")
def registry_verify(
    fix: Annotated[bool, typer.Option("--fix", help="Move corrupt, unreferenced and temp files to quarantine/<time>/.")] = False,
    registry: RegistryOpt = None, as_json: JsonOpt = False,
) -> None:
    """Check the catalog and every blob; exit 1 if anything is wrong. Example: attemptctl registry verify --fix"""
    report = call(lambda: workspace(registry, existing=True).registry().verify(fix=fix))
    _print_report(report, as_json)
    if not report.ok:
        left = len(report.remaining)
        hint = "; `--fix` moves bad files aside" if not fix else "; restore the files listed from a backup or retrain"
        err.print(f"[bold red]error:[/] registry {report.root}: {left} problem{'s' * (left != 1)}{hint}",
                  highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_ERROR)


@registry_app.command("backup")
def registry_backup(
    path: Annotated[Path, typer.Argument(help="New (or empty) folder for the copy; a registry itself.")],
    registry: RegistryOpt = None,
) -> None:
    """Copy the registry consistently, even while others write, and verify the copy.

    Example: attemptctl registry backup ~/attemptctl-backup-2025-01-31
    """
    report = call(lambda: workspace(registry, existing=True).registry().backup(path))
    size = f"{report.bytes / 1e6:.1f} MB" if report.bytes >= 1e5 else f"{report.bytes / 1e3:.1f} kB"
    blobs = f"{report.blobs} blob{'s' * (report.blobs != 1)}"
    out.print(f"backed up {report.prompts} prompt versions ({blobs}, {size}) from {report.source} "
              f"to {report.destination}", highlight=False, soft_wrap=True)
    if not report.verify.ok:
        _print_report(report.verify, as_json=False)
        err.print(f"[bold red]error:[/] the backup at {report.destination} is incomplete: the files above could "
                  "not be copied intact", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_ERROR)
    out.print("the copy verifies: every row has its blob and every sha256 matches", highlight=False)


@registry_app.command("export")
def registry_export(
    name: Annotated[str, typer.Argument(help="NAME or NAME@V: a source, or a target of variant pt or spot.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="New (or empty) folder to write the adapter to.")],
    fmt: Annotated[str, typer.Option("--format", help="peft: a PEFT prompt-tuning adapter.")] = "peft",
    kind: Annotated[str | None, typer.Option("--kind", help="source or target (default: targets first, then sources).")] = None,
    registry: RegistryOpt = None,
) -> None:
    """Write a prompt in another tool's format; PeftModel.from_pretrained(base_model, DIR) loads a peft export.

    Example: attemptctl registry export mnli@1 --format peft --output ./mnli-peft
    """
    from attemptctl.interop import export_prompt

    result = call(export_prompt, workspace(registry, existing=True), name, output, format=fmt, kind=kind)
    out.print(f"exported {result.record.label} to {result.folder} as a PEFT prompt-tuning adapter "
              f"({result.task_type}, m={result.record.m}, d={result.record.d})", highlight=False, soft_wrap=True)


@registry_app.command("upgrade")
def registry_upgrade(registry: RegistryOpt = None, backbone: BackboneOpt = None) -> None:
    """Record the tokenizer's special ids (bos, eos, pad) in prompts registered before attemptctl checked them.

    Loads the backbone once; prompts of another backbone are left alone and listed.
    Example: attemptctl registry upgrade
    """
    from attemptctl.workflows.upgrade import upgrade_fingerprints

    ws = workspace(registry, None, backbone, existing=True)
    reg = call(ws.registry)
    result = call(upgrade_fingerprints, ws, reg, call(ws.backbone_spec, reg))
    for record in result.upgraded:
        ids = ", ".join(f"{token} {value}" for token, value in record.fingerprint["special_ids"].items())
        out.print(f"upgraded {record.label}: its fingerprint now records {result.backbone}'s special ids ({ids})",
                  highlight=False, soft_wrap=True)
    for record in result.other:
        out.print(f"left alone: {record.label} is for backbone '{record.backbone}', not '{result.backbone}'; "
                  f"`attemptctl registry upgrade --backbone {record.backbone}` upgrades it",
                  highlight=False, soft_wrap=True)
    count = len(result.upgraded)
    out.print(f"{count} prompt version{'s' * (count != 1)} upgraded, {len(result.current)} already recorded "
              f"their special ids, {len(result.other)} of another backbone left alone",
              highlight=False, soft_wrap=True)


def _print_report(report, as_json: bool) -> None:
    from rich.table import Table

    if as_json:
        out.print_json(json.dumps({"root": str(report.root), "ok": report.ok, "prompts": report.prompts,
                                   "blobs": report.blobs, "findings": [vars(f) for f in report.findings],
                                   "quarantine": str(report.quarantine) if report.quarantine else None}))
        return
    out.print(f"checked {report.prompts} prompt versions and {report.blobs} blob files in {report.root}",
              highlight=False, soft_wrap=True)
    if not report.findings:
        out.print("no problems found", highlight=False)
        return
    table = Table(title="Problems")
    for column in ("problem", "file", "detail", "action"):
        table.add_column(column, overflow="fold")
    for finding in report.findings:
        table.add_row(finding.problem, _short(finding.path), finding.detail,
                      f"moved to {Path(finding.moved_to).parts[0]}/{Path(finding.moved_to).parts[1]}/"
                      if finding.moved_to else "none")
    out.print(table)


def _short(path: str) -> str:
    """Blob paths carry a 64-digit sha; 12 digits name a file well enough in a table (--json has all)."""
    head, _, name = path.rpartition("/")
    return f"{head}/{name[:12]}…{name[-12:]}" if len(name) > 40 else path


def _record_json(record) -> dict:

    origin = record.config.get("origin")
    return {"kind": record.kind, "prompt": record.ref, "task": record.task, "backbone": record.backbone,
            "origin": dict(origin) if isinstance(origin, dict) else {"type": origin_of(record)},
            "d": record.d, "m": record.m, "sources": list(record.sources), "attention": record.attention,
            "variant": record.variant, "parent": record.parent, "sha256": record.sha256,
            "created_at": record.created_at.isoformat(timespec="seconds"), "config": dict(record.config),
            "metrics": dict(record.metrics), "fingerprint": dict(record.fingerprint)}

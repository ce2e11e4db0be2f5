"""`source pull` (the zoo: trained source prompts that ship with attemptctl), `source train` and `source import`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from attemptctl.cli.app import call, exit_if_interrupted, out, source_app, workspace
from attemptctl.cli.options import BackboneOpt, DataDirOpt, JsonOpt, RegistryOpt, TrainingArgs, training_options
from attemptctl.cli.progress import TrainProgress
from attemptctl.cli.render import dev_summary, in_metric_order
from attemptctl.formatting import percent


@source_app.command("pull")
def source_pull(
    tasks: Annotated[str, typer.Option("--tasks", help="Comma-separated zoo sources to pull (default: all).")] = "",
    labels: Annotated[str, typer.Option("--labels", help="The zoo whose prompts answer in this label format: "
                                        "words or index.")] = "words",
    zoo: Annotated[Path | None, typer.Option("--zoo", help="A zoo folder to pull from instead of the one that "
                                                "ships with attemptctl: a copy of an earlier release's "
                                                "attemptctl/zoo, one folder per backbone.")] = None,
    registry: RegistryOpt = None, backbone: BackboneOpt = None, as_json: JsonOpt = False,
) -> None:
    """Register the zoo's trained source prompts for the backbone (default smollm2-135m); verified, idempotent.

    Example: attemptctl source pull
             attemptctl target train boolq --sources mnli,qqp
             attemptctl source pull --labels index
             attemptctl source pull --zoo ./zoo-v0.3   # the prompts an earlier release shipped
    """
    from attemptctl.zoo import pull_zoo

    ws = workspace(registry, None, backbone)
    reg = call(ws.registry)
    names = [part.strip() for part in tasks.split(",") if part.strip()] or None
    result = call(pull_zoo, reg, call(ws.backbone_spec, reg), tasks=names, labels=labels, root=zoo)
    if as_json:
        out.print_json(json.dumps({"added": [r.ref for r in result.added], "present": [r.ref for r in result.present],
                                   "missing": result.missing}))
        return
    for record in result.added:
        test = record.metrics.get("test", {})
        ranked = in_metric_order(record.task, test.get("metrics", {}))  # the primary metric first
        scores = ", ".join(f"{k} {percent(v)}" for k, v in ranked.items())
        out.print(f"pulled source [bold]{record.ref}[/] (m={record.m}; test {scores} on {test.get('examples')} examples)",
                  highlight=False)
    for record in result.present:
        out.print(f"already here: source {record.ref}", highlight=False)
    for task, why in result.missing.items():
        out.print(f"not in the zoo: {task} ({why})", highlight=False)


@source_app.command("train")
@training_options(without=("attn_lr", "attn_temperature", "attn_scale", "attn_pool", "attn_norm", "label_words"))
def source_train(
    task: Annotated[str, typer.Argument(help="Task name, e.g. mnli (see `attemptctl task list`).")],
    registry: RegistryOpt = None, data_dir: DataDirOpt = None, backbone: BackboneOpt = None, *, args: TrainingArgs,
) -> None:
    """Prompt-tune a source prompt on TASK and register it as a new version.

    Example: attemptctl source train mnli --data-dir ./data
    """
    from attemptctl.workflows.source import train_source

    with TrainProgress() as progress:
        record, result = call(train_source, workspace(registry, data_dir, backbone, **args.runtime), task,
                              preset=args.preset, overrides=args.overrides, on_event=progress, resume=args.resume,
                              force=args.force)
    if record is None:
        return  # a worker process of `accelerate launch`: the main process reports
    out.print(f"registered source [bold]{record.ref}[/] ({dev_summary(result.dev, result.dev_examples)}; "
              f"{result.steps} steps, {result.seconds:.0f} s)" + (" [yellow]interrupted[/]" if result.interrupted else ""),
              highlight=False)
    exit_if_interrupted(result)


@source_app.command("import")
def source_import(
    adapter: Annotated[str, typer.Argument(help="PEFT prompt-tuning adapter: a folder saved with save_pretrained, or a hub id.")],
    task: Annotated[str, typer.Option("--task", help="The task the prompt was trained for (see `attemptctl task list`).")],
    name: Annotated[str | None, typer.Option("--name", help="Register it as source NAME (default: the task).")] = None,
    labels: Annotated[str, typer.Option("--labels", help="How the prompt was trained to answer: words or index.")] = "words",
    registry: RegistryOpt = None, backbone: BackboneOpt = None,
) -> None:
    """Register a PEFT prompt-tuning adapter as a source prompt; its record says where it came from.

    Example: attemptctl source import ./mnli-prompt --task mnli
    """
    from attemptctl.interop.peft import import_peft

    record = call(import_peft, workspace(registry, backbone=backbone), adapter, task, name=name, labels=labels)
    out.print(f"registered source [bold]{record.ref}[/] (m={record.m}, d={record.d}) from PEFT adapter "
              f"{record.config['origin']['from']}", highlight=False, soft_wrap=True)

"""`target train` and `target compose`."""

from __future__ import annotations

from typing import Annotated

import typer

from attemptctl.cli.app import call, exit_if_interrupted, out, target_app, workspace
from attemptctl.cli.options import (
    BackboneOpt,
    DataDirOpt,
    DeviceOpt,
    EvalBatchSizeOpt,
    PrecisionOpt,
    RecipeOpt,
    RegistryOpt,
    SourcesOpt,
    TrainingArgs,
    names,
    training_options,
    training_overrides,
)
from attemptctl.cli.progress import TrainProgress
from attemptctl.cli.render import dev_summary
from attemptctl.method.variants import DEFAULT_RECIPE


def _report_targets(records, result) -> None:
    if not result.main_process:
        return
    for record in records:
        mixes = ", ".join(record.sources) or "no sources"
        out.print(f"registered target [bold]{record.ref}[/] ({record.variant} over {mixes}; "
                  f"{dev_summary(record.metrics.get('dev', {}), record.metrics.get('dev_examples'))})", highlight=False)
    if result is not None:
        out.print(f"{result.steps} steps in {result.seconds:.0f} s"
                  + (" [yellow]interrupted[/]" if result.interrupted else ""), highlight=False)
    exit_if_interrupted(result)


@target_app.command("train")
@training_options()
def target_train(
    tasks: Annotated[str, typer.Argument(help="Target task, or several comma-separated to share G (rte,cb).")],
    sources: SourcesOpt = "",
    variant: Annotated[str, typer.Option("--variant", help="attempt | uniform | no-target | pt | spot.")] = "attempt",
    init: Annotated[str | None, typer.Option("--init", help="Target prompt init: auto (MNLI's, as the paper) | vocab "
                    "| zeros | best-source (the source scoring best on dev, untrained) | source:NAME (default: the "
                    "recipe's).")] = None,
    recipe: RecipeOpt = DEFAULT_RECIPE,
    init_from: Annotated[str | None, typer.Option("--init-from", help="spot: a source NAME, or auto (most similar).")] = None,
    attn_prior: Annotated[str | None, typer.Option("--attn-prior", help="Initialise G from this attention prior.")] = None,
    sampling_temperature: Annotated[float | None, typer.Option(
        "--sampling-temperature", help="Multi-task sampling ∝ size^(1/T): 1 proportional, large uniform.")] = None,
    registry: RegistryOpt = None, data_dir: DataDirOpt = None, backbone: BackboneOpt = None, *, args: TrainingArgs,
) -> None:
    """Train a target prompt and attention module G over frozen source prompts.

    Example: attemptctl target train boolq --sources mnli,qqp
             attemptctl target train rte,cb,boolq --sources mnli,qqp,qnli,sst2 --attn-lr 0.1
             attemptctl target train rte --variant spot --init-from mnli
    """
    from attemptctl.workflows.target import train_target

    overrides = args.overrides | training_overrides({"sampling_temperature": sampling_temperature})
    with TrainProgress() as progress:
        records, result = call(train_target, workspace(registry, data_dir, backbone, **args.runtime), names(tasks),
                               names(sources), variant=variant, init=init, init_from=init_from, attn_prior=attn_prior,
                               preset=args.preset, overrides=overrides, recipe=recipe, on_event=progress, resume=args.resume,
                               force=args.force)
    _report_targets(records, result)


@target_app.command("compose")
def target_compose(
    task: Annotated[str, typer.Argument(help="Target NAME or NAME@V to derive a new version from.")],
    add: Annotated[str, typer.Option("--add", help="Comma-separated sources to add.")] = "",
    remove: Annotated[str, typer.Option("--remove", help="Comma-separated sources to remove.")] = "",
    train_steps: Annotated[int | None, typer.Option("--train-steps", min=1,
                                                    help="Adapt P_target and G for N steps on the new set.")] = None,
    registry: RegistryOpt = None, data_dir: DataDirOpt = None, backbone: BackboneOpt = None,
    device: DeviceOpt = "auto", precision: PrecisionOpt = "fp32", eval_batch_size: EvalBatchSizeOpt = None,
) -> None:
    """A new version of a target with sources added or removed; the LM and the sources are untouched.

    Example: attemptctl target compose boolq --add squad --remove qqp
    """
    from attemptctl.workflows.target import compose_target

    with TrainProgress() as progress:
        record = call(compose_target, workspace(registry, data_dir, backbone, device=device, precision=precision,
                                                 eval_batch_size=eval_batch_size, existing=True), task, add=names(add),
                      remove=names(remove), train_steps=train_steps, on_event=progress)
    if record is None:
        return
    out.print(f"registered target [bold]{record.ref}[/] from {record.parent}: {record.variant} over "
              f"{', '.join(record.sources)}", highlight=False)

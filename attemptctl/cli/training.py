"""`source train`, `source import`, `target train`, `target compose` and `attn pretrain`, with a live progress display."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from attemptctl.cli.common import (
    AttnLrOpt,
    AttnPoolOpt,
    AttnScaleOpt,
    AttnTemperatureOpt,
    BackboneOpt,
    BatchSizeOpt,
    CheckpointEveryOpt,
    DataDirOpt,
    DeviceOpt,
    EvalBatchSizeOpt,
    DevLimitOpt,
    EpochsOpt,
    EvalEveryOpt,
    EvalStartOpt,
    ForceOpt,
    LabelsOpt,
    LabelWordsOpt,
    LrOpt,
    MaxLengthOpt,
    PrecisionOpt,
    PresetOpt,
    PromptLengthOpt,
    RegistryOpt,
    ResumeOpt,
    SeedOpt,
    ShotsOpt,
    StepsOpt,
    TestLimitOpt,
    TrainLimitOpt,
    WarmupOpt,
    WeightDecayOpt,
    attn_app,
    call,
    err,
    out,
    overrides_of,
    source_app,
    target_app,
    workspace,
)


class _TrainProgress:
    """Renders training events: a progress bar with loss, examples/s and ETA; a line per dev evaluation."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                                 TextColumn("loss {task.fields[loss]:.3f}"), TextColumn("{task.fields[speed]:.1f} ex/s"),
                                 TimeElapsedColumn(), TimeRemainingColumn(), console=err, transient=False)
        self.bar = None
        self.seen = 0

    def __enter__(self):
        self.progress.start()
        return self

    def __exit__(self, *exc):
        self.progress.stop()

    def __call__(self, event: str, **data: Any) -> None:
        if event == "start":
            self.bar = self.progress.add_task("training", total=data["total"], completed=data.get("resumed_at", 0),
                                              loss=float("nan"), speed=0.0)
        elif event == "step":
            self.seen += data["examples"]
            elapsed = self.progress.tasks[0].elapsed or 1e-9
            loss = {} if data["loss"] is None else {"loss": data["loss"]}  # None: not synced this step (GPU)
            self.progress.update(self.bar, advance=1, speed=self.seen / elapsed, **loss)
        elif event == "eval":
            marks = " ".join(f"{task}: " + ", ".join(f"{k} {v:.3f}" for k, v in m.items()) for task, m in data["dev"].items())
            self.progress.console.print(f"step {data['step']}: dev {marks}" + ("  [green]best[/]" if data["improved"] else ""))
        elif event == "interrupted":
            where = f"; checkpoint {data['checkpoint']} (continue with --resume)" if data.get("checkpoint") else ""
            self.progress.console.print(f"interrupted at step {data['step']}; keeping the best prompt so far{where}")


def _training_overrides(options: dict[str, Any]) -> dict[str, Any]:
    """The training options the user gave (named like TrainConfig's fields); None means not given."""
    from attemptctl.train import TrainConfig

    return overrides_of(**{k: v for k, v in options.items() if k in TrainConfig.__dataclass_fields__})


def _exit_if_interrupted(result) -> None:
    """An interrupted run has registered its best prompt and checkpointed; it still exits 130."""
    if result is not None and result.interrupted:
        raise typer.Exit(130)


def _best_dev(dev: dict) -> str:
    parts = [f"{task} " + ", ".join(f"{k} {100 * v:.1f}" for k, v in metrics.items()) for task, metrics in dev.items() if metrics]
    return "; ".join(parts) or "no dev score"



# -- source ----------------------------------------------------------------------------------------

@source_app.command("train")
def source_train(
    task: Annotated[str, typer.Argument(help="Task name, e.g. mnli (see `attemptctl task list`).")],
    registry: RegistryOpt = None, data_dir: DataDirOpt = None, backbone: BackboneOpt = None, preset: PresetOpt = "cpu",
    prompt_length: PromptLengthOpt = None, max_length: MaxLengthOpt = None, batch_size: BatchSizeOpt = None,
    lr: LrOpt = None, weight_decay: WeightDecayOpt = None, labels: LabelsOpt = None, epochs: EpochsOpt = None,
    max_steps: StepsOpt = None,
    warmup_steps: WarmupOpt = None, train_limit: TrainLimitOpt = None, shots: ShotsOpt = None, dev_limit: DevLimitOpt = None,
    test_limit: TestLimitOpt = None, eval_every: EvalEveryOpt = None, eval_start: EvalStartOpt = None, seed: SeedOpt = None,
    checkpoint_every: CheckpointEveryOpt = None, resume: ResumeOpt = False, force: ForceOpt = False,
    device: DeviceOpt = "auto", precision: PrecisionOpt = "fp32", eval_batch_size: EvalBatchSizeOpt = None,
) -> None:
    """Prompt-tune a source prompt on TASK and register it as a new version.

    Example: attemptctl source train mnli --data-dir ./data
    """
    from attemptctl.operations import train_source

    overrides = _training_overrides(locals())
    with _TrainProgress() as progress:
        record, result = call(train_source, workspace(registry, data_dir, backbone, device=device, precision=precision,
                                                    eval_batch_size=eval_batch_size), task, preset=preset,
                              overrides=overrides, on_event=progress, resume=resume, force=force)
    if record is None:
        return  # a worker process of `accelerate launch`: the main process reports
    out.print(f"registered source [bold]{record.ref}[/] ({_best_dev(result.dev)}; {result.steps} steps, "
              f"{result.seconds:.0f} s)" + (" [yellow]interrupted[/]" if result.interrupted else ""), highlight=False)
    _exit_if_interrupted(result)


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


# -- target ----------------------------------------------------------------------------------------

SourcesOpt = Annotated[str, typer.Option("--sources", "-s", help="Comma-separated source prompts, NAME or NAME@V.")]


def _names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _report_targets(records, result) -> None:
    if not result.main_process:
        return
    for record in records:
        mixes = ", ".join(record.sources) or "no sources"
        out.print(f"registered target [bold]{record.ref}[/] ({record.variant} over {mixes}; "
                  f"{_best_dev(record.metrics.get('dev', {}))})", highlight=False)
    if result is not None:
        out.print(f"{result.steps} steps in {result.seconds:.0f} s"
                  + (" [yellow]interrupted[/]" if result.interrupted else ""), highlight=False)
    _exit_if_interrupted(result)


@target_app.command("train")
def target_train(
    tasks: Annotated[str, typer.Argument(help="Target task, or several comma-separated to share G (rte,cb).")],
    sources: SourcesOpt = "",
    variant: Annotated[str, typer.Option("--variant", help="attempt | uniform | no-target | pt | spot.")] = "attempt",
    init: Annotated[str, typer.Option("--init", help="Target prompt init: auto | vocab | zeros | source:NAME.")] = "auto",
    init_from: Annotated[str | None, typer.Option("--init-from", help="spot: a source NAME, or auto (most similar).")] = None,
    attn_prior: Annotated[str | None, typer.Option("--attn-prior", help="Initialise G from this attention prior.")] = None,
    sampling_temperature: Annotated[float | None, typer.Option(
        "--sampling-temperature", help="Multi-task sampling ∝ size^(1/T): 1 proportional, large uniform.")] = None,
    registry: RegistryOpt = None, data_dir: DataDirOpt = None, backbone: BackboneOpt = None, preset: PresetOpt = "cpu",
    prompt_length: PromptLengthOpt = None, max_length: MaxLengthOpt = None, batch_size: BatchSizeOpt = None,
    lr: LrOpt = None, attn_lr: AttnLrOpt = None, weight_decay: WeightDecayOpt = None,
    attn_temperature: AttnTemperatureOpt = None,
    attn_scale: AttnScaleOpt = None, attn_pool: AttnPoolOpt = None, labels: LabelsOpt = None, label_words: LabelWordsOpt = None,
    epochs: EpochsOpt = None,
    max_steps: StepsOpt = None, warmup_steps: WarmupOpt = None, train_limit: TrainLimitOpt = None, shots: ShotsOpt = None,
    dev_limit: DevLimitOpt = None, test_limit: TestLimitOpt = None, eval_every: EvalEveryOpt = None, eval_start: EvalStartOpt = None, seed: SeedOpt = None,
    checkpoint_every: CheckpointEveryOpt = None, resume: ResumeOpt = False, force: ForceOpt = False,
    device: DeviceOpt = "auto", precision: PrecisionOpt = "fp32", eval_batch_size: EvalBatchSizeOpt = None,
) -> None:
    """Train a target prompt and attention module G over frozen source prompts.

    Example: attemptctl target train boolq --sources mnli,qqp
             attemptctl target train rte,cb,boolq --sources mnli,qqp,qnli,sst2 --attn-lr 0.1
             attemptctl target train rte --variant spot --init-from mnli
    """
    from attemptctl.targets import train_target

    overrides = _training_overrides(locals())
    with _TrainProgress() as progress:
        records, result = call(train_target, workspace(registry, data_dir, backbone, device=device, precision=precision,
                                                         eval_batch_size=eval_batch_size), _names(tasks), _names(sources),
                               variant=variant, init=init, init_from=init_from, attn_prior=attn_prior, preset=preset,
                               overrides=overrides, on_event=progress, resume=resume, force=force)
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
    from attemptctl.composition import compose_target

    with _TrainProgress() as progress:
        record = call(compose_target, workspace(registry, data_dir, backbone, device=device, precision=precision,
                                                 eval_batch_size=eval_batch_size), task, add=_names(add),
                      remove=_names(remove), train_steps=train_steps, on_event=progress)
    if record is None:
        return
    out.print(f"registered target [bold]{record.ref}[/] from {record.parent}: {record.variant} over "
              f"{', '.join(record.sources)}", highlight=False)


@attn_app.command("pretrain")
def attn_pretrain(
    sources: SourcesOpt = "",
    name: Annotated[str, typer.Option("--name", help="Name of the attention prior in the registry.")] = "prior",
    registry: RegistryOpt = None, data_dir: DataDirOpt = None, backbone: BackboneOpt = None, preset: PresetOpt = "cpu",
    max_length: MaxLengthOpt = None, batch_size: BatchSizeOpt = None, lr: LrOpt = None, attn_lr: AttnLrOpt = None,
    weight_decay: WeightDecayOpt = None, attn_temperature: AttnTemperatureOpt = None, attn_scale: AttnScaleOpt = None,
    attn_pool: AttnPoolOpt = None,
    epochs: EpochsOpt = None, max_steps: StepsOpt = None, warmup_steps: WarmupOpt = None,
    train_limit: TrainLimitOpt = None, shots: ShotsOpt = None, dev_limit: DevLimitOpt = None, test_limit: TestLimitOpt = None,
    eval_every: EvalEveryOpt = None, eval_start: EvalStartOpt = None, seed: SeedOpt = None, checkpoint_every: CheckpointEveryOpt = None,
    resume: ResumeOpt = False, force: ForceOpt = False,
    device: DeviceOpt = "auto", precision: PrecisionOpt = "fp32", eval_batch_size: EvalBatchSizeOpt = None,
) -> None:
    """Learn an attention prior: train G on the source tasks, each with a fresh task prompt.

    Example: attemptctl attn pretrain --sources mnli,qqp,qnli,sst2
             attemptctl target train rte --sources mnli,qqp,qnli,sst2 --attn-prior prior
    """
    from attemptctl.targets import pretrain_attention

    overrides = _training_overrides(locals())
    with _TrainProgress() as progress:
        record, result = call(pretrain_attention, workspace(registry, data_dir, backbone, device=device, precision=precision,
                                                              eval_batch_size=eval_batch_size), _names(sources), name=name,
                              preset=preset, overrides=overrides, on_event=progress, resume=resume, force=force)
    if record is None:
        return
    out.print(f"registered attention prior [bold]{record.ref}[/] over {', '.join(_names(sources))} "
              f"({_best_dev(result.dev)}; {result.steps} steps)", highlight=False)
    _exit_if_interrupted(result)

"""`source train` and `target train`, with a live progress display."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from attemptctl.cli.common import (
    AttnLrOpt,
    BackboneOpt,
    BatchSizeOpt,
    DataDirOpt,
    DevLimitOpt,
    EpochsOpt,
    EvalEveryOpt,
    LrOpt,
    MaxLengthOpt,
    PresetOpt,
    PromptLengthOpt,
    RegistryOpt,
    SeedOpt,
    StepsOpt,
    TestLimitOpt,
    TrainLimitOpt,
    WarmupOpt,
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
            self.bar = self.progress.add_task("training", total=data["total"], loss=float("nan"), speed=0.0)
        elif event == "step":
            self.seen += data["examples"]
            elapsed = self.progress.tasks[0].elapsed or 1e-9
            self.progress.update(self.bar, advance=1, loss=data["loss"], speed=self.seen / elapsed)
        elif event == "eval":
            marks = " ".join(f"{task}: " + ", ".join(f"{k} {v:.3f}" for k, v in m.items()) for task, m in data["dev"].items())
            self.progress.console.print(f"step {data['step']}: dev {marks}" + ("  [green]best[/]" if data["improved"] else ""))
        elif event == "interrupted":
            self.progress.console.print(f"interrupted at step {data['step']}; keeping the best prompt so far")


def _best_dev(dev: dict) -> str:
    parts = [f"{task} " + ", ".join(f"{k} {100 * v:.1f}" for k, v in metrics.items()) for task, metrics in dev.items() if metrics]
    return "; ".join(parts) or "no dev score"



# -- source ----------------------------------------------------------------------------------------

@source_app.command("train")
def source_train(
    task: Annotated[str, typer.Argument(help="Task name, e.g. mnli (see `attemptctl task list`).")],
    registry: RegistryOpt = None, data_dir: DataDirOpt = None, backbone: BackboneOpt = None, preset: PresetOpt = "cpu",
    prompt_length: PromptLengthOpt = None, max_length: MaxLengthOpt = None, batch_size: BatchSizeOpt = None,
    lr: LrOpt = None, epochs: EpochsOpt = None, max_steps: StepsOpt = None, warmup_steps: WarmupOpt = None,
    train_limit: TrainLimitOpt = None, dev_limit: DevLimitOpt = None, test_limit: TestLimitOpt = None,
    eval_every: EvalEveryOpt = None, seed: SeedOpt = None,
) -> None:
    """Prompt-tune a source prompt on TASK and register it as a new version.

    Example: attemptctl source train mnli --data-dir ./data
    """
    from attemptctl.operations import train_source

    ws = workspace(registry, data_dir, backbone)
    overrides = overrides_of(prompt_length=prompt_length, max_length=max_length, batch_size=batch_size, lr=lr,
                           epochs=epochs, max_steps=max_steps, warmup_steps=warmup_steps, train_limit=train_limit,
                           dev_limit=dev_limit, test_limit=test_limit, eval_every=eval_every, seed=seed)
    with _TrainProgress() as progress:
        record, result = call(train_source, ws, task, preset=preset, overrides=overrides, on_event=progress)
    out.print(f"registered source [bold]{record.ref}[/] ({_best_dev(result.dev)}; {result.steps} steps, "
              f"{result.seconds:.0f} s)" + (" [yellow]interrupted[/]" if result.interrupted else ""), highlight=False)


# -- target ----------------------------------------------------------------------------------------

@target_app.command("train")
def target_train(
    tasks: Annotated[str, typer.Argument(help="Target task, or several comma-separated to share G (rte,cb).")],
    sources: Annotated[str, typer.Option("--sources", "-s", help="Comma-separated source prompts, NAME or NAME@V.")] = "",
    variant: Annotated[str, typer.Option("--variant", help="attempt | uniform | no-target | prompt-tuning.")] = "attempt",
    init: Annotated[str, typer.Option("--init", help="Target prompt init: auto | vocab | zeros | source:NAME.")] = "auto",
    registry: RegistryOpt = None, data_dir: DataDirOpt = None, backbone: BackboneOpt = None, preset: PresetOpt = "cpu",
    prompt_length: PromptLengthOpt = None, max_length: MaxLengthOpt = None, batch_size: BatchSizeOpt = None,
    lr: LrOpt = None, attn_lr: AttnLrOpt = None, epochs: EpochsOpt = None, max_steps: StepsOpt = None,
    warmup_steps: WarmupOpt = None, train_limit: TrainLimitOpt = None, dev_limit: DevLimitOpt = None,
    test_limit: TestLimitOpt = None, eval_every: EvalEveryOpt = None, seed: SeedOpt = None,
) -> None:
    """Train a target prompt and attention module G over frozen source prompts.

    Example: attemptctl target train boolq --sources mnli,qqp
    """
    from attemptctl.operations import train_target

    ws = workspace(registry, data_dir, backbone)
    overrides = overrides_of(prompt_length=prompt_length, max_length=max_length, batch_size=batch_size, lr=lr,
                           attn_lr=attn_lr, epochs=epochs, max_steps=max_steps, warmup_steps=warmup_steps,
                           train_limit=train_limit, dev_limit=dev_limit, test_limit=test_limit,
                           eval_every=eval_every, seed=seed)
    names = [t.strip() for t in tasks.split(",") if t.strip()]
    refs = [s.strip() for s in sources.split(",") if s.strip()]
    with _TrainProgress() as progress:
        records, result = call(train_target, ws, names, refs, variant=variant, init=init, preset=preset,
                                overrides=overrides, on_event=progress)
    for record in records:
        mixes = ", ".join(record.sources) or "no sources"
        out.print(f"registered target [bold]{record.ref}[/] ({record.variant} over {mixes}; "
                  f"{_best_dev(record.metrics.get('dev', {}))})", highlight=False)
    out.print(f"{result.steps} steps in {result.seconds:.0f} s" + (" [yellow]interrupted[/]" if result.interrupted else ""),
              highlight=False)

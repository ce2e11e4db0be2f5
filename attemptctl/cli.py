"""The ``attemptctl`` command line: one thin function per command.

Each command parses its options, calls ONE library function and renders the result with rich.
Heavy imports (torch, transformers) happen inside command bodies so ``attemptctl --help`` is fast.
Errors the user can fix are one line on stderr with exit code 1; usage errors exit 2 (Typer).
"""

from __future__ import annotations

import json
import sys
import warnings
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

T = TypeVar("T")

app = typer.Typer(help="ATTEMPT: modular multi-task tuning of a frozen LM with attentional mixtures of soft prompts.",
                  no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode="rich")
source_app = typer.Typer(help="Train source prompts (prompt tuning on a large task).", no_args_is_help=True)
target_app = typer.Typer(help="Train target prompts that mix source prompts through attention.", no_args_is_help=True)
attn_app = typer.Typer(help="Inspect the attention of targets over their sources.", no_args_is_help=True)
registry_app = typer.Typer(help="List, show and remove registered prompts.", no_args_is_help=True)
task_app = typer.Typer(help="The task catalogue.", no_args_is_help=True)
app.add_typer(source_app, name="source")
app.add_typer(target_app, name="target")
app.add_typer(attn_app, name="attn")
app.add_typer(registry_app, name="registry")
app.add_typer(task_app, name="task")

out = Console()
err = Console(stderr=True)

# -- options, declared once -----------------------------------------------------------------------

RegistryOpt = Annotated[Path | None, typer.Option("--registry", envvar="ATTEMPTCTL_REGISTRY", show_envvar=True,
                        help="Registry folder [default: $XDG_DATA_HOME/attemptctl/registry, i.e. ~/.local/share/…].")]
DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", envvar="ATTEMPTCTL_DATA_DIR", show_envvar=True,
                       help="Local data in the hub layout <dataset>/<config>/<split>.jsonl [default: the HF hub].")]
BackboneOpt = Annotated[str | None, typer.Option("--backbone", help="Alias (smollm2-135m), hub id (t5-base) or local "
                        "model folder [default: the registry's backbone, else smollm2-135m].")]
PresetOpt = Annotated[str, typer.Option("--preset", help="cpu: minutes on a laptop; paper: the paper's settings.")]
PromptLengthOpt = Annotated[int | None, typer.Option("--prompt-length", "-m", help="Prompt length m.")]
MaxLengthOpt = Annotated[int | None, typer.Option("--max-length", help="Input tokens kept per example.")]
BatchSizeOpt = Annotated[int | None, typer.Option("--batch-size", help="Examples per step.")]
LrOpt = Annotated[float | None, typer.Option("--lr", help="Learning rate of the prompts.")]
AttnLrOpt = Annotated[float | None, typer.Option("--attn-lr", help="Learning rate of the attention module G.")]
EpochsOpt = Annotated[int | None, typer.Option("--epochs", help="Epochs [paper: 5 sources, 20/10 targets].")]
StepsOpt = Annotated[int | None, typer.Option("--max-steps", help="Stop after N optimizer steps.")]
WarmupOpt = Annotated[int | None, typer.Option("--warmup-steps", help="Linear warm-up steps.")]
TrainLimitOpt = Annotated[int | None, typer.Option("--train-limit", help="Use the first N training rows.")]
DevLimitOpt = Annotated[int | None, typer.Option("--dev-limit", help="Use the first N dev rows.")]
TestLimitOpt = Annotated[int | None, typer.Option("--test-limit", help="Use the first N test rows.")]
EvalEveryOpt = Annotated[int | None, typer.Option("--eval-every", help="Dev evaluation every N steps.")]
SeedOpt = Annotated[int | None, typer.Option("--seed", help="Random seed (data splits, init, order).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _workspace(registry: Path | None, data_dir: Path | None = None, backbone: str | None = None):
    from attemptctl.operations import Workspace, default_registry_path

    return Workspace(registry_path=registry or default_registry_path(), data_dir=data_dir, backbone=backbone)


def _call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a library function; turn the errors a user can fix into one line and exit code 1."""
    from attemptctl.errors import AttemptError
    from registry import RegistryError

    try:
        return fn(*args, **kwargs)
    except (AttemptError, RegistryError) as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True, soft_wrap=True)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        err.print("interrupted", highlight=False)
        raise typer.Exit(130) from None


def _overrides(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


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

    ws = _workspace(registry, data_dir, backbone)
    overrides = _overrides(prompt_length=prompt_length, max_length=max_length, batch_size=batch_size, lr=lr,
                           epochs=epochs, max_steps=max_steps, warmup_steps=warmup_steps, train_limit=train_limit,
                           dev_limit=dev_limit, test_limit=test_limit, eval_every=eval_every, seed=seed)
    with _TrainProgress() as progress:
        record, result = _call(train_source, ws, task, preset=preset, overrides=overrides, on_event=progress)
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

    ws = _workspace(registry, data_dir, backbone)
    overrides = _overrides(prompt_length=prompt_length, max_length=max_length, batch_size=batch_size, lr=lr,
                           attn_lr=attn_lr, epochs=epochs, max_steps=max_steps, warmup_steps=warmup_steps,
                           train_limit=train_limit, dev_limit=dev_limit, test_limit=test_limit,
                           eval_every=eval_every, seed=seed)
    names = [t.strip() for t in tasks.split(",") if t.strip()]
    refs = [s.strip() for s in sources.split(",") if s.strip()]
    with _TrainProgress() as progress:
        records, result = _call(train_target, ws, names, refs, variant=variant, init=init, preset=preset,
                                overrides=overrides, on_event=progress)
    for record in records:
        mixes = ", ".join(record.sources) or "no sources"
        out.print(f"registered target [bold]{record.ref}[/] ({record.variant} over {mixes}; "
                  f"{_best_dev(record.metrics.get('dev', {}))})", highlight=False)
    out.print(f"{result.steps} steps in {result.seconds:.0f} s" + (" [yellow]interrupted[/]" if result.interrupted else ""),
              highlight=False)


# -- attn ------------------------------------------------------------------------------------------

@attn_app.command("show")
def attn_show(
    tasks: Annotated[list[str] | None, typer.Argument(help="Targets (NAME or NAME@V); none: every target.")] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="Average over the first N test examples.")] = None,
    registry: RegistryOpt = None, data_dir: DataDirOpt = None, backbone: BackboneOpt = None, as_json: JsonOpt = False,
) -> None:
    """Heatmap of each target's mean attention to its sources and its own prompt (before the +1).

    Example: attemptctl attn show boolq
    """
    from attemptctl.reports import attention_summaries
    from attemptctl.views import AttentionRow, attention_heatmap

    summaries = _call(attention_summaries, _workspace(registry, data_dir, backbone), tasks or None, limit=limit)
    if as_json:
        out.print_json(json.dumps([{"prompt": s.record.ref, "examples": s.examples, "weights": s.weights} for s in summaries]))
        return
    columns = []
    for summary in summaries:
        columns += [c for c in summary.weights if c not in columns and c != "(target)"]
    columns = sorted(columns) + ["(target)"]
    # Targets trained together (one shared G) are grouped under the name of their run.
    runs = Counter(s.record.attention for s in summaries)
    rows = [AttentionRow(label=s.record.ref, weights=s.weights,
                         group=f"shared G {s.record.attention}" if runs[s.record.attention] > 1 else None)
            for s in summaries]
    out.print(attention_heatmap(rows, columns, title="Mean attention over test examples"))


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

    rows = _call(evaluate_prompts, _workspace(registry, data_dir, backbone), tasks or None, split=split, decode=decode,
                 limit=limit, batch_size=batch_size)
    if as_json:
        out.print_json(json.dumps([{"prompt": r.record.ref, "kind": r.record.kind, "split": r.split,
                                    "sources": list(r.record.sources), "metrics": r.metrics,
                                    "examples": r.examples, "seconds": round(r.seconds, 3)} for r in rows]))
        return
    out.print(metrics_table([MetricsRow(task=r.record.name, version=r.record.version, kind=r.record.kind,
                                        sources=r.record.sources, metrics=r.metrics, examples=r.examples,
                                        seconds=r.seconds, split=r.split) for r in rows]))


# -- registry --------------------------------------------------------------------------------------

@registry_app.command("list")
def registry_list(
    kind: Annotated[str | None, typer.Option("--kind", help="source, target or attention.")] = None,
    registry: RegistryOpt = None, as_json: JsonOpt = False,
) -> None:
    """List registered prompts. Example: attemptctl registry list --kind source"""
    from attemptctl.views import records_table

    records = _call(lambda: _workspace(registry).registry().list(kind=kind))
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
    reg = _call(_workspace(registry).registry)
    record = _call(reg.find, name, kinds=("target", "source", "attention"))
    data = _record_json(record)
    data["evaluations"] = [{"split": e.split, "metrics": dict(e.metrics), "examples": e.examples,
                            "seconds": e.seconds, "at": e.created_at.isoformat(timespec="seconds")}
                           for e in _call(reg.evaluations, record.kind, record.ref)]
    out.print_json(json.dumps(data))


@registry_app.command("rm")
def registry_rm(
    name: Annotated[str, typer.Argument(help="NAME (every version) or NAME@V.")],
    kind: Annotated[str, typer.Option("--kind", help="source, target or attention.")] = "target",
    force: Annotated[bool, typer.Option("--force", help="Remove even if targets still mix it.")] = False,
    registry: RegistryOpt = None,
) -> None:
    """Remove prompt versions. Example: attemptctl registry rm mnli@1 --kind source"""
    removed = _call(lambda: _workspace(registry).registry().remove(kind, name, force=force))
    for record in removed:
        out.print(f"removed {record.kind} {record.ref}", highlight=False)


def _record_json(record) -> dict:
    return {"kind": record.kind, "prompt": record.ref, "task": record.task, "backbone": record.backbone,
            "d": record.d, "m": record.m, "sources": list(record.sources), "attention": record.attention,
            "variant": record.variant, "parent": record.parent, "sha256": record.sha256,
            "created_at": record.created_at.isoformat(timespec="seconds"), "config": dict(record.config),
            "metrics": dict(record.metrics), "fingerprint": dict(record.fingerprint)}


# -- task ------------------------------------------------------------------------------------------

@task_app.command("list")
def task_list() -> None:
    """Every task in the catalogue. Example: attemptctl task list"""
    from rich.table import Table

    from attemptctl.tasks import TASKS

    table = Table(title="Tasks")
    for column in ("task", "dataset", "input fields", "output", "metrics"):
        table.add_column(column)
    for task in TASKS.values():
        dataset = f"{task.dataset}/{task.config}" if task.config else task.dataset
        output = " / ".join(task.labels) if task.labels else "free text"
        table.add_row(task.name, dataset, ", ".join(task.fields), output, ", ".join(task.metrics))
    out.print(table)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    err.print(f"[yellow]warning:[/] {message}", highlight=False)


def main() -> None:
    warnings.showwarning = _show_warning
    app()


if __name__ == "__main__":
    sys.exit(main())

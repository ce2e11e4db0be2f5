"""What every command shares: the Typer apps, options declared once, consoles, error handling."""

from __future__ import annotations

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
registry_app = typer.Typer(help="List, show, remove, verify and back up registered prompts.", no_args_is_help=True)
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
                        help="Registry folder (default: $XDG_DATA_HOME/attemptctl/registry, i.e. ~/.local/share/…).")]
DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", envvar="ATTEMPTCTL_DATA_DIR", show_envvar=True,
                       help="Local data in the hub layout <dataset>/<config>/<split>.jsonl (default: the HF hub).")]
BackboneOpt = Annotated[str | None, typer.Option("--backbone", help="Alias (smollm2-135m), hub id (t5-base) or local "
                        "model folder (default: the registry's backbone, else smollm2-135m).")]
PresetOpt = Annotated[str, typer.Option("--preset", help="cpu: minutes on a laptop; paper: the paper's settings.")]
PromptLengthOpt = Annotated[int | None, typer.Option("--prompt-length", "-m", help="Prompt length m.")]
MaxLengthOpt = Annotated[int | None, typer.Option("--max-length", help="Input tokens kept per example.")]
BatchSizeOpt = Annotated[int | None, typer.Option("--batch-size", help="Examples per step.")]
LrOpt = Annotated[float | None, typer.Option("--lr", help="Learning rate of the prompts.")]
AttnLrOpt = Annotated[float | None, typer.Option("--attn-lr", help="Learning rate of the attention module G.")]
WeightDecayOpt = Annotated[float | None, typer.Option(
    "--weight-decay", help="AdamW weight decay of every trained parameter (paper: 1e-5).")]
AttnTemperatureOpt = Annotated[float | None, typer.Option(
    "--attn-temperature", help="K: G's logits are divided by scale·e^K (larger: flatter) (default: 1).")]
AttnScaleOpt = Annotated[str | None, typer.Option(
    "--attn-scale", help="G's divisor: calibrated (measured on this run) or paper (d) (default: calibrated).")]
AttnPoolOpt = Annotated[str | None, typer.Option(
    "--attn-pool", help="G's pooled input: standardized-max or max (the paper's) (default: standardized-max).")]
LabelsOpt = Annotated[str | None, typer.Option(
    "--labels", help="How label tasks answer: words (T5's label words) or index (the label's index, as ATTEMPT's "
    "code does, one answer space for all tasks) (default: words; targets: their sources').")]
LabelWordsOpt = Annotated[str | None, typer.Option(
    "--label-words", help="Targets answer in another task's label words, so a source's answers keep their meaning: "
    "TASK=SOURCE pairs or one SOURCE for all, e.g. rte=mnli (RTE answers entailment / neutral).")]
EpochsOpt = Annotated[int | None, typer.Option("--epochs", help="Epochs (paper: 5 sources, 20/10 targets).")]
StepsOpt = Annotated[int | None, typer.Option("--max-steps", help="Stop after N optimizer steps.")]
WarmupOpt = Annotated[int | None, typer.Option("--warmup-steps", help="Linear warm-up steps.")]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="Continue the interrupted run of this command from its checkpoint.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="With --resume: continue although options or data changed.")]
CheckpointEveryOpt = Annotated[int | None, typer.Option("--checkpoint-every", help="Checkpoint every N steps (default: at each dev evaluation).")]
ShotsOpt = Annotated[int | None, typer.Option("--shots", help="Few-shot: K training rows per class (seeded).")]
TrainLimitOpt = Annotated[int | None, typer.Option("--train-limit", help="Use the first N training rows.")]
DevLimitOpt = Annotated[int | None, typer.Option("--dev-limit", help="Use the first N dev rows.")]
TestLimitOpt = Annotated[int | None, typer.Option("--test-limit", help="Use the first N test rows.")]
EvalEveryOpt = Annotated[int | None, typer.Option("--eval-every", help="Dev evaluation every N steps.")]
EvalStartOpt = Annotated[bool | None, typer.Option(
    "--eval-start/--no-eval-start", help="Score dev before the first step too, and keep the start if no trained "
    "state beats it (default: off).")]
SeedOpt = Annotated[int | None, typer.Option("--seed", help="Random seed (data splits, init, order).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
DeviceOpt = Annotated[str, typer.Option(
    "--device", envvar="ATTEMPTCTL_DEVICE", show_envvar=True,
    help="Where the LM runs: auto (the GPU when there is one), cpu, cuda or cuda:N.")]
PrecisionOpt = Annotated[str, typer.Option(
    "--precision", envvar="ATTEMPTCTL_PRECISION", show_envvar=True,
    help="fp32; tf32 (a GPU's TF32 matrix units); bf16 (the LM under bfloat16 autocast; prompts and G stay fp32).")]
EvalBatchSizeOpt = Annotated[int | None, typer.Option(
    "--eval-batch-size", help="Rows per batch when scoring dev during training and test in a study "
    "(default: max(batch size, 8) for dev, 16 for a study's test).")]


def workspace(registry: Path | None, data_dir: Path | None = None, backbone: str | None = None, *,
              device: str = "auto", precision: str = "fp32", eval_batch_size: int | None = None):
    """The workspace a command works in; ``device``/``precision``/``eval_batch_size``: how its LM runs."""
    from attemptctl.runtime import Runtime
    from attemptctl.workspace import Workspace, default_registry_path

    return Workspace(registry_path=registry or default_registry_path(), data_dir=data_dir, backbone=backbone,
                     runtime=Runtime(device=device, precision=precision, eval_batch_size=eval_batch_size))


# Exit codes: see docs/errors.md. EX_SOFTWARE (sysexits.h) marks a bug, not a user mistake.
EXIT_ERROR, EXIT_USAGE, EXIT_BUG, EXIT_INTERRUPTED = 1, 2, 70, 130


def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a library function under the error contract of docs/errors.md.

    Errors a user can fix: one line, exit 1. Anything unexpected: one line naming the file that
    holds the traceback, exit 70. Typer's own exits and usage errors (exit 2) pass through.
    """
    from attemptctl.errors import AttemptError
    from registry import RegistryError

    try:
        return fn(*args, **kwargs)
    except (typer.Exit, typer.Abort, typer.TyperException):
        raise
    except (AttemptError, RegistryError) as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, markup=True, soft_wrap=True)
        raise typer.Exit(EXIT_ERROR) from None
    except KeyboardInterrupt:
        err.print("interrupted", highlight=False)
        raise typer.Exit(EXIT_INTERRUPTED) from None
    except Exception as exc:  # noqa: BLE001 - the contract: never a raw traceback
        report = write_crash_report(exc)
        err.print(f"[bold red]internal error:[/] {type(exc).__name__}: {_first_line(exc)} — this is a bug in "
                  f"attemptctl; the full traceback is in {report}", highlight=False, markup=True, soft_wrap=True)
        raise typer.Exit(EXIT_BUG) from None


def write_crash_report(exc: BaseException) -> Path:
    """``crash-<UTC time>-<pid>.txt`` under ``$ATTEMPTCTL_CACHE`` (or ``~/.cache/attemptctl``), else the tempdir."""
    import os
    import sys
    import tempfile
    import traceback
    from datetime import datetime, timezone

    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    text = (f"attemptctl crash at {stamp}\ncommand: {' '.join(sys.argv)}\npython: {sys.version}\n\n"
            + "".join(traceback.format_exception(exc)))
    cache = Path(os.environ.get("ATTEMPTCTL_CACHE") or Path.home() / ".cache" / "attemptctl")
    for folder in (cache, Path(tempfile.gettempdir())):
        path = folder / f"crash-{stamp}-{os.getpid()}.txt"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            return path
        except OSError:
            continue
    return Path("(nowhere: neither the cache folder nor the temp folder is writable)")


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else "(no message)"


def overrides_of(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}

"""Options declared once and shared by the commands, and the small parsers that go with them."""

from __future__ import annotations

import inspect
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

RegistryOpt = Annotated[Path | None, typer.Option("--registry", envvar="ATTEMPTCTL_REGISTRY", show_envvar=True,
                        help="Registry folder (default: $XDG_DATA_HOME/attemptctl/registry, i.e. ~/.local/share/…).")]
DataDirOpt = Annotated[Path | None, typer.Option("--data-dir", envvar="ATTEMPTCTL_DATA_DIR", show_envvar=True,
                       help="Local data in the hub layout <dataset>/<config>/<split>.jsonl (default: the HF hub).")]
BackboneOpt = Annotated[str | None, typer.Option("--backbone", help="Alias (smollm2-135m), hub id (t5-base) or local "
                        "model folder (default: the registry's backbone, else smollm2-135m).")]
PresetOpt = Annotated[str, typer.Option("--preset", help="cpu: minutes on a laptop; paper: the paper's settings.")]
RecipeOpt = Annotated[str, typer.Option(
    "--recipe", help="How a target that mixes sources trains: transfer (the default: target prompt from zeros at "
    "lr 0.001, G at 0.1), paper (Asai et al. as published) or v1 (the defaults before the transfer recipe: MNLI start, "
    "lr 0.3, G at 0.01). Options given win.")]
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
AttnNormOpt = Annotated[str | None, typer.Option(
    "--attn-norm", help="G's LayerNorm affine: trained or frozen (the official code's) (default: trained).")]
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
SplitProtocolOpt = Annotated[str | None, typer.Option(
    "--split-protocol", help="How dev and test are drawn for tasks under 10k training rows: paper (halves of "
    "validation) or heldout (dev held out of train, the whole validation as test; CB and WSC keep the halves) "
    "(default: paper).")]
EvalEveryOpt = Annotated[int | None, typer.Option("--eval-every", help="Dev evaluation every N steps.")]
EvalStartOpt = Annotated[bool | None, typer.Option(
    "--eval-start/--no-eval-start", help="Score dev before the first step too, and keep the start if no trained "
    "state beats it (default: off).")]
BatchingOpt = Annotated[str | None, typer.Option(
    "--batching", help="How training rows form length-grouped batches: label (each task's and each label's share in "
    "every batch) or length (each task's share only, attemptctl before 2026-12-06) (default: label).")]
CurveStepsOpt = Annotated[str | None, typer.Option(
    "--curve-steps", help="A learning curve: also score the test rows at these steps, e.g. 0,100,300,1000 (0: the "
    "start); recorded with the prompt and drawn by `study show --curves`.")]
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

DecodeOpt = Annotated[str, typer.Option("--decode", help="rank (rank classification) or generate (greedy).")]
BatchOpt = Annotated[int, typer.Option("--batch-size", min=1, help="Rows per forward pass.")]
LabelScoringOpt = Annotated[str | None, typer.Option(
    "--label-scoring", help="How rank classification scores a label: sum (its tokens' log-probabilities), mean "
    "(length-normalised) or first (its first token) (default: sum). Scores of another scoring are not stored.")]

SourcesOpt = Annotated[str, typer.Option("--sources", "-s", help="Comma-separated source prompts, NAME or NAME@V.")]


def names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def training_overrides(options: dict[str, Any]) -> dict[str, Any]:
    """The training options the user gave (named like TrainConfig's fields); None means not given."""
    from attemptctl.engine.train import TrainConfig

    return {k: v for k, v in options.items() if k in TrainConfig.__dataclass_fields__ and v is not None}


# -- the training options, one group for every training command (litgpt's TrainArgs) ------------------

TRAINING_OPTIONS: tuple[tuple[str, Any, Any], ...] = (
    ("preset", PresetOpt, "cpu"), ("prompt_length", PromptLengthOpt, None), ("max_length", MaxLengthOpt, None),
    ("batch_size", BatchSizeOpt, None), ("lr", LrOpt, None), ("attn_lr", AttnLrOpt, None),
    ("weight_decay", WeightDecayOpt, None), ("attn_temperature", AttnTemperatureOpt, None),
    ("attn_scale", AttnScaleOpt, None), ("attn_pool", AttnPoolOpt, None), ("attn_norm", AttnNormOpt, None),
    ("labels", LabelsOpt, None),
    ("label_words", LabelWordsOpt, None), ("epochs", EpochsOpt, None), ("max_steps", StepsOpt, None),
    ("warmup_steps", WarmupOpt, None), ("train_limit", TrainLimitOpt, None), ("shots", ShotsOpt, None),
    ("dev_limit", DevLimitOpt, None), ("test_limit", TestLimitOpt, None),
    ("split_protocol", SplitProtocolOpt, None), ("eval_every", EvalEveryOpt, None),
    ("eval_start", EvalStartOpt, None), ("curve_steps", CurveStepsOpt, None), ("batching", BatchingOpt, None),
    ("seed", SeedOpt, None), ("checkpoint_every", CheckpointEveryOpt, None),
    ("resume", ResumeOpt, False), ("force", ForceOpt, False), ("device", DeviceOpt, "auto"),
    ("precision", PrecisionOpt, "fp32"), ("eval_batch_size", EvalBatchSizeOpt, None),
)
"""Every training option: (parameter, its declared option, default). A command takes them all but those
it names in :func:`training_options`' ``without``."""
RUNTIME_OPTIONS = ("device", "precision", "eval_batch_size")


@dataclass(frozen=True)
class TrainingArgs:
    """What a training command's shared options say, as one value."""

    preset: str = "cpu"
    overrides: dict[str, Any] = field(default_factory=dict)
    """The TrainConfig fields the user gave (a field left out keeps the preset's value)."""
    runtime: dict[str, Any] = field(default_factory=dict)
    """``device``, ``precision``, ``eval_batch_size``: keyword arguments of ``app.workspace``."""
    resume: bool = False
    force: bool = False


def training_options(*, without: tuple[str, ...] = ()):
    """Give a command the training options (all of :data:`TRAINING_OPTIONS` but ``without``), declared here
    once. The command takes one parameter ``args: TrainingArgs`` in their place; what its signature shows
    Typer is its own parameters followed by the group's. No ``functools.wraps``: ``cli/__init__`` reads
    ``__wrapped__`` as "already guarded"."""
    unknown = sorted(set(without) - {name for name, _, _ in TRAINING_OPTIONS})
    if unknown:
        raise ValueError(f"not training options: {', '.join(unknown)}")
    group = [(name, option, default) for name, option, default in TRAINING_OPTIONS if name not in without]

    def decorate(command):
        hints = typing.get_type_hints(command, include_extras=True)
        own = [p.replace(annotation=hints[p.name]) for p in inspect.signature(command).parameters.values()
               if p.name != "args"]
        added = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=option)
                 for name, option, default in group]

        def run(**given):
            shared = {name: given.pop(name) for name, _, _ in group}
            return command(**given, args=_training_args(shared))

        run.__signature__ = inspect.Signature(own + added, return_annotation=None)
        run.__annotations__ = {p.name: p.annotation for p in own + added}
        for attribute in ("__name__", "__qualname__", "__doc__", "__module__"):
            setattr(run, attribute, getattr(command, attribute))
        return run

    return decorate


def _training_args(shared: dict[str, Any]) -> TrainingArgs:
    runtime = {name: shared[name] for name in RUNTIME_OPTIONS if name in shared}
    return TrainingArgs(preset=shared.get("preset", "cpu"), overrides=training_overrides(shared), runtime=runtime,
                        resume=bool(shared.get("resume", False)), force=bool(shared.get("force", False)))

"""Options declared once and shared by the commands, and the small parsers that go with them."""

from __future__ import annotations

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

DecodeOpt = Annotated[str, typer.Option("--decode", help="rank (rank classification) or generate (greedy).")]
BatchOpt = Annotated[int, typer.Option("--batch-size", min=1, help="Rows per forward pass.")]

SourcesOpt = Annotated[str, typer.Option("--sources", "-s", help="Comma-separated source prompts, NAME or NAME@V.")]


def names(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def training_overrides(options: dict[str, Any]) -> dict[str, Any]:
    """The training options the user gave (named like TrainConfig's fields); None means not given."""
    from attemptctl.engine.train import TrainConfig

    return {k: v for k, v in options.items() if k in TrainConfig.__dataclass_fields__ and v is not None}

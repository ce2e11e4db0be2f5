"""One training loop for every mode: source prompts, ATTEMPT targets (one task or several), baselines.

What trains is a :class:`~attemptctl.mixture.PromptMixture` (task prompts, and G when the variant
mixes sources); the LM is frozen and used only through ``inputs_embeds``. The loop is written with
Hugging Face Accelerate so ``accelerate launch`` spreads it over devices; the caller writes the
registry from the main process only. Paper settings (Asai et al. 2022, App. B): Adam(W) with lr 0.3,
weight decay 1e-5, linear schedule with 500 warm-up steps, batch 32, best checkpoint on dev.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

import torch

from attemptctl import model as lm
from attemptctl.backbones import Backbone
from attemptctl.batching import length_grouped_batches
from attemptctl.errors import ConfigError
from attemptctl.evaluate import evaluate
from attemptctl.metrics import primary_metric
from attemptctl.mixture import PromptMixture
from attemptctl.tasks import Example, Task


@dataclass
class TrainConfig:
    """How to train. Defaults are the paper's; :data:`PRESETS` holds the CPU-sized alternative."""

    prompt_length: int = 100
    """m, the number of soft-prompt vectors."""
    max_length: int | None = None
    """Input tokens kept per example (the prompt not counted); None: the task's default (256)."""
    batch_size: int = 32
    lr: float = 0.3
    """Learning rate of the prompts."""
    attn_lr: float | None = None
    """Learning rate of the attention module G; None: same as ``lr``."""
    weight_decay: float = 1e-5
    warmup_steps: int = 500
    epochs: int | None = None
    """None: the paper's rule (sources 5; targets 20 under 10k training rows, else 10)."""
    max_steps: int | None = None
    """Stop after this many optimizer steps (overrides epochs)."""
    train_limit: int | None = None
    """Use only the first N training rows (of the seeded shuffle)."""
    shots: int | None = None
    """Few-shot: K training rows per class (K in all for free-form tasks), seeded."""
    dev_limit: int | None = None
    test_limit: int | None = None
    eval_every: int | None = None
    """Evaluate on dev every N steps (and at the end); None: once per epoch."""
    sampling_temperature: float = 1.0
    """Multi-task sampling: task t is drawn ∝ n_t^(1/T). 1: proportional to size; large: uniform."""
    seed: int = 42

    def __post_init__(self) -> None:
        positive = ("prompt_length", "batch_size", "max_length", "epochs", "max_steps", "train_limit", "shots",
                    "dev_limit", "test_limit", "eval_every")
        for name in positive:
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name.replace('_', '-')} must be at least 1, got {value}")
        for name in ("lr", "attn_lr", "weight_decay"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ConfigError(f"{name.replace('_', '-')} must not be negative, got {value}")
        if self.sampling_temperature <= 0:
            raise ConfigError(f"sampling-temperature must be positive, got {self.sampling_temperature}")
        if self.warmup_steps < 0:
            raise ConfigError(f"warmup-steps must not be negative, got {self.warmup_steps}")

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS: dict[str, dict] = {
    "paper": {},
    # Minutes on a laptop CPU: short prompt and inputs, a few dozen steps on a slice of the data.
    "cpu": dict(prompt_length=10, max_length=128, batch_size=8, warmup_steps=3, max_steps=24, train_limit=400,
                dev_limit=48, test_limit=100, eval_every=12),
}


def make_config(preset: str = "cpu", **overrides) -> TrainConfig:
    """A :class:`TrainConfig` from a preset plus the options the user gave (None = not given)."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset '{preset}'; choose one of {', '.join(PRESETS)}")
    values = {**PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}}
    return TrainConfig(**values)


@dataclass
class TrainResult:
    """The best trainable state (on dev) and how training went."""

    state: dict[str, torch.Tensor]
    dev: dict[str, dict[str, float]]
    best_step: int
    steps: int
    seconds: float
    interrupted: bool = False
    history: list[dict] = field(default_factory=list)
    train_rows: int = 0


Event = Callable[..., None]


def _optimizer(mixture: PromptMixture, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW with two parameter groups, so G's learning rate really applies to G."""
    groups = [{"params": list(mixture.prompts.parameters()), "lr": config.lr, "name": "prompts"}]
    if mixture.attention is not None:
        groups.append({"params": list(mixture.attention.parameters()),
                       "lr": config.lr if config.attn_lr is None else config.attn_lr, "name": "attention"})
    return torch.optim.AdamW(groups, weight_decay=config.weight_decay)


def _encode_train(backbone: Backbone, mixture: PromptMixture, train: Mapping[str, Sequence[Example]],
                  tasks: Mapping[str, Task], config: TrainConfig) -> tuple[list[lm.Encoded], list[int]]:
    items, task_ids = [], []
    for name, rows in train.items():
        max_length = config.max_length or tasks[name].max_length
        for example in rows:
            items.append(lm.encode(backbone, example.input, example.target, max_length))
            task_ids.append(mixture.tasks.index(name))
    return items, task_ids


def epoch_rows(task_ids: Sequence[int], temperature: float, seed: int) -> list[int]:
    """Row indices for one epoch of multi-task training, tasks sampled ∝ size^(1/temperature).

    The epoch keeps the total number of rows; a task drawn more often than it has rows repeats rows,
    one drawn less often uses a random subset. Temperature 1 is exactly every row once.
    """
    by_task: dict[int, list[int]] = {}
    for index, task in enumerate(task_ids):
        by_task.setdefault(task, []).append(index)
    if temperature == 1.0 or len(by_task) == 1:
        return list(range(len(task_ids)))
    rng = random.Random(seed)
    weights = {t: len(rows) ** (1.0 / temperature) for t, rows in by_task.items()}
    total_weight, total_rows = sum(weights.values()), len(task_ids)
    chosen = []
    for task, rows in by_task.items():
        quota = max(1, round(total_rows * weights[task] / total_weight))
        chosen += rng.sample(rows, quota) if quota <= len(rows) else [rng.choice(rows) for _ in range(quota)]
    return chosen


def default_epochs(train_rows: int, *, source: bool) -> int:
    """The paper's epochs: sources 5; targets 20 under 10k training rows, else 10."""
    return 5 if source else (20 if train_rows < 10_000 else 10)


def train(backbone: Backbone, mixture: PromptMixture, train_rows: Mapping[str, Sequence[Example]],
          dev_rows: Mapping[str, Sequence[Example]], tasks: Mapping[str, Task], config: TrainConfig, *,
          source: bool = False, on_event: Event | None = None) -> TrainResult:
    """Train ``mixture`` on the tasks' training rows; keep the state with the best mean dev score."""
    from accelerate import Accelerator
    from transformers import get_linear_schedule_with_warmup

    notify = on_event or (lambda *args, **kwargs: None)
    torch.manual_seed(config.seed)
    accelerator = Accelerator()
    backbone.model.to(accelerator.device)
    items, task_ids = _encode_train(backbone, mixture, train_rows, tasks, config)
    if not items:
        raise ConfigError("no training rows; check --train-limit and the data directory")
    per_epoch = math.ceil(len(items) / config.batch_size)
    epochs = config.epochs or default_epochs(len(items), source=source)
    total = config.max_steps or per_epoch * epochs
    optimizer = _optimizer(mixture, config)
    scheduler = get_linear_schedule_with_warmup(optimizer, min(config.warmup_steps, total), total)
    mixture, optimizer, scheduler = accelerator.prepare(mixture, optimizer, scheduler)
    eval_every = config.eval_every or per_epoch

    best = _Best()
    step, started, interrupted = 0, time.perf_counter(), False
    notify("start", total=total, examples=len(items))
    try:
        epoch = 0
        while step < total:
            rows = epoch_rows(task_ids, config.sampling_temperature, config.seed + epoch)
            for grouped in length_grouped_batches([len(items[i]) for i in rows], config.batch_size, shuffle=True,
                                                  seed=config.seed + epoch):
                indices = [rows[i] for i in grouped]
                batch = lm.collate(backbone, [items[i] for i in indices], [task_ids[i] for i in indices])
                mixture.train()
                prompt, _ = mixture(batch.task_ids, backbone.embed(batch.input_ids), batch.input_mask, share=True)
                loss = lm.loss(backbone, prompt, batch)
                accelerator.backward(loss)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                notify("step", step=step, loss=loss.item(), examples=len(indices))
                if step % eval_every == 0 or step == total:
                    _evaluate_dev(backbone, accelerator.unwrap_model(mixture), dev_rows, tasks, config, step, best, notify)
                if step >= total:
                    break
            epoch += 1
    except KeyboardInterrupt:
        interrupted = True
        notify("interrupted", step=step)
    unwrapped = accelerator.unwrap_model(mixture)
    if best.state is None:  # interrupted before the first dev evaluation: keep what we have
        best.state, best.step = _trainable_state(unwrapped), step
    return TrainResult(state=best.state, dev=best.dev, best_step=best.step, steps=step,
                       seconds=time.perf_counter() - started, interrupted=interrupted, history=best.history,
                       train_rows=len(items))


@dataclass
class _Best:
    state: dict[str, torch.Tensor] | None = None
    score: float = -math.inf
    dev: dict[str, dict[str, float]] = field(default_factory=dict)
    step: int = 0
    history: list[dict] = field(default_factory=list)


def _evaluate_dev(backbone, mixture, dev_rows, tasks, config, step, best: _Best, notify) -> None:
    if not any(dev_rows.values()):
        best.state, best.step = _trainable_state(mixture), step  # nothing to select on: keep the latest
        return
    results = evaluate(backbone, mixture, dev_rows, tasks, max_length=config.max_length,
                       batch_size=max(config.batch_size, 8))
    dev = {name: result.metrics for name, result in results.items()}
    # Mean of every task's primary metric: the paper's code selected on the first task only.
    score = sum(dev[name][primary_metric(tasks[name])] for name in dev) / len(dev)
    best.history.append({"step": step, "score": score, "dev": dev})
    improved = score > best.score
    if improved:
        best.state, best.score, best.dev, best.step = _trainable_state(mixture), score, dev, step
    notify("eval", step=step, score=score, dev=dev, improved=improved)


def _trainable_state(mixture: PromptMixture) -> dict[str, torch.Tensor]:
    return {name: p.detach().cpu().clone() for name, p in mixture.named_parameters()}

"""One training loop for every mode: source prompts, ATTEMPT targets (one task or several), baselines.

What trains is a :class:`~attemptctl.method.mixture.PromptMixture` (task prompts, and G when the variant
mixes sources); the LM is frozen and used only through ``inputs_embeds``. The loop is written with
Hugging Face Accelerate so ``accelerate launch`` spreads it over devices; the caller writes the
registry from the main process only. Paper settings (Asai et al. 2022, App. B): Adam(W) with lr 0.3,
weight decay 1e-5, linear schedule with 500 warm-up steps, batch 32, best checkpoint on dev.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from attemptctl.engine import checkpoints
from attemptctl.engine.batching import label_groups, length_grouped_batches
from attemptctl.engine.checkpoints import CheckpointPlan
from attemptctl.engine.evaluate import answer_token_limit, evaluate
from attemptctl.errors import ConfigError
from attemptctl.method import lm
from attemptctl.method.backbones import Backbone
from attemptctl.method.mixture import PromptMixture
from attemptctl.tasks import Example, Task
from attemptctl.tasks.metrics import primary_metric


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
    """Learning rate of the attention module G; None: CALIBRATED_ATTN_LR with the calibrated scale, else ``lr``."""
    attn_temperature: float = 1.0
    """K: G's logits are divided by (scale · e^K); larger K, flatter attention."""
    attn_scale: str = "calibrated"
    """G's divisor before e^K: calibrated (measured on the run's prompts and inputs) or paper (d)."""
    attn_pool: str = "standardized-max"
    """G's pooled input: standardized-max (per-dimension standardised max-pool) or max (the paper's)."""
    attn_norm: str = "trained"
    """G's LayerNorm affine: trained, or frozen as the official code keeps it."""
    labels: str = "words"
    """How label tasks answer: words (T5's label words) or index (the label's index, ATTEMPT's code)."""
    label_words: str | None = None
    """Targets answering in another task's label words: ``TASK=SOURCE`` pairs and at most one bare ``SOURCE``
    (canonical form of :func:`attemptctl.tasks.parse_label_words`); None: each task in its own."""
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
    split_protocol: str = "paper"
    """How dev and test are drawn (attemptctl.tasks.data.PROTOCOLS): the paper's halves of validation for
    tasks under 10k training rows, or ``heldout``: dev held out of train, the whole validation as test."""
    eval_every: int | None = None
    """Evaluate on dev every N steps (and at the end); None: once per epoch."""
    eval_start: bool = False
    """Score dev before the first step too, so that a start better than every trained state is the one kept
    (a target started from a source prompt that training then spoils)."""
    batching: str = "label"
    """How training rows form batches (:data:`BATCHINGS`): ``label`` keeps each task's and each label's share in
    every length-grouped batch; ``length`` keeps only each task's (attemptctl before 2026-12-06: the study cells
    trained then, which their parts pin)."""
    curve_steps: str | None = None
    """A learning curve: score the test rows at these steps too (comma-separated, 0: the untrained start),
    recorded with the prompt as ``metrics["curve"]``; the kept state is still the best on dev. Canonical
    form: sorted, no repeats. Steps past the run's end are not reached."""
    checkpoint_every: int | None = None
    """Save a resumable checkpoint every N steps; None: at every dev evaluation (and always on Ctrl-C)."""
    sampling_temperature: float = 1.0
    """Multi-task sampling: task t is drawn ∝ n_t^(1/T). 1: proportional to size; large: uniform."""
    seed: int = 42

    def __post_init__(self) -> None:
        positive = ("prompt_length", "batch_size", "max_length", "epochs", "max_steps", "train_limit", "shots",
                    "dev_limit", "test_limit", "eval_every", "checkpoint_every")
        for name in positive:
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name.replace('_', '-')} must be at least 1, got {value}")
        for name in ("lr", "attn_lr", "weight_decay", "attn_temperature", "sampling_temperature"):
            value = getattr(self, name)
            # NaN passes every comparison: a NaN rate trains NaN. An infinite sampling temperature is uniform sampling.
            if value is not None and (math.isnan(value) or (math.isinf(value) and name != "sampling_temperature")):
                raise ConfigError(f"{name.replace('_', '-')} must be a finite number, got {value}")
        for name in ("lr", "attn_lr", "weight_decay"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ConfigError(f"{name.replace('_', '-')} must not be negative, got {value}")
        from attemptctl.method.attention import NORMS, POOLINGS, SCALES

        if self.attn_scale not in SCALES:
            raise ConfigError(f"unknown attn-scale '{self.attn_scale}'; choose one of {', '.join(SCALES)}")
        if self.attn_pool not in POOLINGS:
            raise ConfigError(f"unknown attn-pool '{self.attn_pool}'; choose one of {', '.join(POOLINGS)}")
        if self.attn_norm not in NORMS:
            raise ConfigError(f"unknown attn-norm '{self.attn_norm}'; choose one of {', '.join(NORMS)}")
        from attemptctl.tasks import LABEL_FORMATS, parse_label_words

        if self.labels not in LABEL_FORMATS:
            raise ConfigError(f"unknown labels '{self.labels}'; choose one of {', '.join(LABEL_FORMATS)}")
        self.label_words = parse_label_words(self.label_words)
        if self.label_words and self.labels != "words":
            raise ConfigError(f"--label-words borrows label words, and labels '{self.labels}' answers without "
                              "them; use it with word-format sources (--labels words)")
        self.curve_steps = parse_curve_steps(self.curve_steps)
        if self.batching not in BATCHINGS:
            raise ConfigError(f"unknown batching '{self.batching}'; choose one of {', '.join(BATCHINGS)}")
        from attemptctl.tasks.data import PROTOCOLS

        if self.split_protocol not in PROTOCOLS:
            raise ConfigError(f"unknown split-protocol '{self.split_protocol}'; choose one of {', '.join(PROTOCOLS)}")
        if self.sampling_temperature <= 0:
            raise ConfigError(f"sampling-temperature must be positive, got {self.sampling_temperature}")
        if self.warmup_steps < 0:
            raise ConfigError(f"warmup-steps must not be negative, got {self.warmup_steps}")

    @property
    def effective_attn_lr(self) -> float:
        """G's rate: as given; else the paper's (= ``lr``) under the paper's divisor, and CALIBRATED_ATTN_LR
        under the calibrated one, whose logits are not divided by d: at 0.3 the softmax saturated within
        24 steps (docs/method.md)."""
        if self.attn_lr is not None:
            return self.attn_lr
        return CALIBRATED_ATTN_LR if self.attn_scale == "calibrated" else self.lr

    def to_dict(self) -> dict:
        """The fields, with G's rate as it is used (what a record keeps and a resume compares)."""
        return {**asdict(self), "attn_lr": self.effective_attn_lr}


BATCHINGS = ("label", "length")


def off_curve_dev_steps(curve: set[int], eval_every: int, total: int, *, eval_start: bool = False) -> list[int]:
    """The dev checks' steps that are not curve steps (none without a curve): a state kept at one of them has a
    test score that is no point of the learning curve. ``eval_start``: the start (step 0) is checked too."""
    if not curve:
        return []
    checks = {*range(eval_every, total + 1, eval_every), total} if eval_every > 0 else {total}
    return sorted(checks - curve | ({0} - curve if eval_start else set()))


def parse_curve_steps(value: str | None) -> str | None:
    """The canonical form of ``--curve-steps`` ("300,0,100" -> "0,100,300"); None or empty: no curve."""
    if value is None or not str(value).strip():
        return None
    try:
        steps = sorted({int(part) for part in str(value).split(",") if part.strip()})
    except ValueError:
        raise ConfigError(f"curve-steps takes comma-separated step numbers such as 0,100,300, got '{value}'") from None
    if not steps or steps[0] < 0:
        raise ConfigError(f"curve-steps must be steps of 0 or more, got '{value}'")
    return ",".join(map(str, steps))


def curve_points(value: str | None) -> tuple[int, ...]:
    """The steps of a canonical ``curve_steps``."""
    return tuple(int(s) for s in value.split(",")) if value else ()


#: Steps between the loss's trips to the host on a GPU (each is a sync of the whole queue).
LOG_EVERY = 25

#: G's default learning rate with the calibrated divisor (measured on SmolLM2, docs/method.md).
CALIBRATED_ATTN_LR = 0.01

PRESETS: dict[str, dict] = {
    "paper": {},
    # Minutes on a laptop CPU: short prompt and inputs, a few dozen steps on a slice of the data.
    "cpu": dict(prompt_length=20, max_length=128, batch_size=8, warmup_steps=3, max_steps=24, train_limit=400,
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
    dev_examples: dict[str, int] = field(default_factory=dict)
    """Per task: the dev rows each check scored (what ``dev`` is measured on)."""
    max_new_tokens: dict[str, int] = field(default_factory=dict)
    """Per task: how many tokens free-form answers may take (from the training answers)."""
    curve: list[dict] = field(default_factory=list)
    """``curve_steps``' test scores: ``{"step", "test": {task: metrics}, "examples": {task: rows}}`` each."""
    main_process: bool = True
    """False in the other processes of `accelerate launch`: only the main process registers."""


Event = Callable[..., None]


def _optimizer(mixture: PromptMixture, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW with two parameter groups, so G's learning rate really applies to G."""
    groups = [{"params": list(mixture.prompts.parameters()), "lr": config.lr, "name": "prompts"}]
    if mixture.attention is not None:
        groups.append({"params": list(mixture.attention.parameters()),
                       "lr": config.effective_attn_lr, "name": "attention"})
    return torch.optim.AdamW(groups, weight_decay=config.weight_decay)


def _encode_train(backbone: Backbone, mixture: PromptMixture, train: Mapping[str, Sequence[Example]],
                  tasks: Mapping[str, Task], config: TrainConfig) -> tuple[list[lm.Encoded], list[int], list[int]]:
    """The encoded rows, each row's task (its index in the mixture) and its batching group: (task, label)."""
    items, task_ids, labels = [], [], []
    for name, rows in train.items():
        max_length = config.max_length or tasks[name].max_length
        for example in rows:
            items.append(lm.encode(backbone, example.input, example.target, max_length, example.cut))
            task_ids.append(mixture.tasks.index(name))
            labels.append(example.label)
    return items, task_ids, label_groups(task_ids, labels) if config.batching == "label" else list(task_ids)


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
    exact = {t: total_rows * w / total_weight for t, w in weights.items()}
    # Largest remainders: each quota is its share rounded down or up, and the quotas add up to the total.
    quotas = {t: math.floor(share) for t, share in exact.items()}
    for t in sorted(exact, key=lambda t: exact[t] - quotas[t], reverse=True)[:total_rows - sum(quotas.values())]:
        quotas[t] += 1
    chosen = []
    for task, rows in by_task.items():
        quota = quotas[task]
        chosen += rng.sample(rows, quota) if quota <= len(rows) else [rng.choice(rows) for _ in range(quota)]
    return chosen


def default_epochs(train_rows: int, *, source: bool) -> int:
    """The paper's epochs: sources 5; targets 20 under 10k training rows, else 10."""
    return 5 if source else (20 if train_rows < 10_000 else 10)


def train(backbone: Backbone, mixture: PromptMixture, train_rows: Mapping[str, Sequence[Example]],
          dev_rows: Mapping[str, Sequence[Example]], tasks: Mapping[str, Task], config: TrainConfig, *,
          source: bool = False, on_event: Event | None = None,
          checkpoint: CheckpointPlan | None = None, curve_rows: Mapping[str, Sequence[Example]] | None = None,
          start: Mapping[str, Any] | None = None) -> TrainResult:
    """Train ``mixture`` on the tasks' training rows; keep the state with the best mean dev score.

    With a ``checkpoint`` plan the run is saved every ``checkpoint.every`` steps (default: at every
    dev evaluation) and on Ctrl-C/SIGTERM, and ``checkpoint.resume`` continues a saved run exactly.
    With ``config.curve_steps``, ``curve_rows`` (the test rows) are scored at those steps: a learning curve.
    ``start`` names how the mixture was started (the target prompts' inits, an attention prior): a checkpoint
    resumes only a run started the same way.
    """
    from accelerate import Accelerator, DistributedDataParallelKwargs
    from transformers import get_linear_schedule_with_warmup

    torch.manual_seed(config.seed)
    # Under `accelerate launch` each process trains on its share of every step's batches; a task
    # absent from a process's batch leaves its prompt unused there, which DDP must allow.
    accelerator = Accelerator(cpu=backbone.device.type == "cpu",  # --device cpu on a machine with a GPU
                              kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)])
    main, world, rank = accelerator.is_main_process, accelerator.num_processes, accelerator.process_index
    notify = on_event if on_event is not None and main else (lambda *args, **kwargs: None)
    backbone.model.to(accelerator.device)
    items, task_ids, groups = _encode_train(backbone, mixture, train_rows, tasks, config)
    if not items:
        raise ConfigError("no training rows; check --train-limit and the data directory")
    limits = _answer_limits(items, task_ids, mixture.tasks)
    per_epoch = math.ceil(len(items) / (config.batch_size * world))
    total = config.max_steps or per_epoch * (config.epochs or default_epochs(len(items), source=source))
    optimizer = _optimizer(mixture, config)
    # `total` already counts optimizer steps per process. The scheduler stays out of
    # accelerator.prepare: a prepared scheduler steps once per process on every call, so with N
    # processes warm-up would end N times too early and the rate would reach 0 after 1/N of the run.
    scheduler = get_linear_schedule_with_warmup(optimizer, min(config.warmup_steps, total), total)
    mixture, optimizer = accelerator.prepare(mixture, optimizer)
    eval_every = config.eval_every or per_epoch
    # The loss reaches the host (a device sync) only every `log_every` steps: on a GPU a sync per step
    # stalls the queue of kernels; on the CPU it costs nothing.
    log_every = 1 if accelerator.device.type == "cpu" else LOG_EVERY
    run = _Run(accelerator.unwrap_model(mixture), optimizer, scheduler,
               _identity(config, items, task_ids, backbone, accelerator.unwrap_model(mixture), start, world))
    if checkpoint and checkpoint.resume:
        run.restore(checkpoint)
    curve = set(curve_points(config.curve_steps)) if curve_rows and any(curve_rows.values()) else set()
    run.started, interrupted = time.perf_counter(), False
    notify("start", total=total, examples=len(items), resumed_at=run.step,
           off_curve=off_curve_dev_steps(curve, eval_every, total, eval_start=config.eval_start))
    with _stop_requests() as stop:
        try:
            if main and run.evaluation_due(eval_every, total):  # stopped after a step, before its dev evaluation
                _evaluate_dev(backbone, run.mixture, dev_rows, tasks, config, run.step, run.best, notify, limits)
            if main and config.eval_start and run.step == 0 and not run.best.history:  # the start is a candidate
                _evaluate_dev(backbone, run.mixture, dev_rows, tasks, config, 0, run.best, notify, limits)
            if main and curve and run.step == 0 and 0 in curve and not run.best.curve:
                _score_curve(backbone, run.mixture, curve_rows, tasks, config, 0, run.best, notify, limits)
            while run.step < total and not stop.is_set():
                rows = epoch_rows(task_ids, config.sampling_temperature, config.seed + run.epoch)
                # grouped by task and label: every batch holds each task's share and each label's share of it
                batches = length_grouped_batches([len(items[i]) for i in rows], config.batch_size, shuffle=True,
                                                 seed=config.seed + run.epoch, groups=[groups[i] for i in rows])
                # One optimizer step takes `world` batches, process k the k-th (single process: one);
                # a tail shorter than `world` is dropped so every process takes the same number of steps.
                usable = len(batches) - len(batches) % world
                if usable == 0:
                    raise ConfigError(f"{len(batches)} batch(es) for {world} processes; use more training rows "
                                      "or a smaller --batch-size")
                for grouped in batches[run.batches_done + rank:usable:world]:
                    indices = [rows[i] for i in grouped]
                    batch = lm.collate(backbone, [items[i] for i in indices], [task_ids[i] for i in indices])
                    lr = scheduler.get_last_lr()[0]
                    loss = _step(accelerator, backbone, mixture, optimizer, scheduler, batch,
                                 {task_ids[i] for i in indices} if world == 1 else None)
                    run.step, run.batches_done = run.step + 1, run.batches_done + world
                    logged = run.step % log_every == 0 or run.step == total
                    notify("step", step=run.step, loss=float(loss) if logged else None, examples=len(indices), lr=lr,
                           tokens=batch.tokens)
                    if main and run.evaluation_due(eval_every, total):
                        _evaluate_dev(backbone, run.mixture, dev_rows, tasks, config, run.step, run.best, notify, limits, lr=lr)
                    if main and run.step in curve:
                        _score_curve(backbone, run.mixture, curve_rows, tasks, config, run.step, run.best, notify, limits)
                    if main and checkpoint and (stop.is_set() or (run.step % checkpoint.every == 0 if checkpoint.every
                                                         else run.best.history_step == run.step)):
                        run.save(checkpoint.path)
                    if run.step >= total or stop.is_set():
                        break
                else:
                    run.epoch, run.batches_done = run.epoch + 1, 0
        except KeyboardInterrupt:  # a second Ctrl-C: stop now; the last checkpoint stays as it was
            stop.set()
        interrupted = stop.is_set()
        if interrupted:
            notify("interrupted", step=run.step, checkpoint=str(checkpoint.path) if checkpoint else None)
    if main and checkpoint and not interrupted and checkpoint.path.exists():
        checkpoint.path.unlink()  # the run is complete; its result goes to the registry
    best = run.best
    if best.state is None:  # interrupted before the first dev evaluation: keep what we have
        best.state, best.step = _trainable_state(run.mixture), run.step
    return TrainResult(state=best.state, dev=best.dev, best_step=best.step, steps=run.step,
                       seconds=run.seconds(), interrupted=interrupted, history=best.history,
                       train_rows=len(items), dev_examples=best.examples, max_new_tokens=limits, curve=best.curve,
                       main_process=main)


def _step(accelerator, backbone: Backbone, mixture, optimizer, scheduler, batch: lm.Batch,
          present: set[int] | None = None) -> torch.Tensor:
    """One optimizer step on one batch; the loss, still on the device (detached).

    The instance prompts (and G) are computed in float32; only the LM runs under the precision's
    autocast. ``present``: the task ids of the batch's rows, known on the host (one process); None
    under ``accelerate launch``, where the processes agree on them.
    """
    mixture.train()
    prompt, _ = mixture(batch.task_ids, backbone.embed(batch.input_ids), batch.input_mask, share=True)
    with backbone.autocast():
        loss = lm.loss(backbone, prompt, batch)
    accelerator.backward(loss)
    _drop_absent_task_grads(accelerator, accelerator.unwrap_model(mixture), batch.task_ids, present)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.detach()


def _drop_absent_task_grads(accelerator, mixture: PromptMixture, task_ids: torch.Tensor,
                            present: set[int] | None = None) -> None:
    """A task prompt learns only from its own rows (DESIGN §1): one with no row in this step, in any
    process, gets no gradient at all, so AdamW leaves it and its moments untouched. (The prompts go
    through ``torch.stack``, which would give an absent task a zero gradient, and AdamW would still
    apply its momentum and weight decay to it.) With ``present`` known on the host, no device sync."""
    if len(mixture.tasks) == 1:
        return
    if present is None:
        counts = torch.zeros(len(mixture.tasks), device=task_ids.device)
        counts[task_ids] = 1.0
        counts = accelerator.reduce(counts, reduction="sum")  # every process agrees on presence
        present = set((counts > 0).nonzero().flatten().tolist())
    for index in range(len(mixture.tasks)):
        if index not in present:
            mixture.prompts[index].grad = None


def _identity(config: TrainConfig, items, task_ids, backbone: Backbone, mixture: PromptMixture,
              start: Mapping[str, Any] | None, world: int) -> dict[str, str]:
    """What a checkpoint must match to be resumed: the config, the encoded data, the backbone, what the
    mixture mixes (variant and sources: another --sources or --variant is another run), how it started
    (another --init or --attn-prior is another run) and the number of processes (it sets the steps per
    epoch and each process's rows)."""
    data = hashlib.sha256(json.dumps([[list(i.input_ids), list(i.target_ids)] for i in items] + [list(task_ids)]).encode())
    settings = {k: v for k, v in config.to_dict().items() if k != "checkpoint_every"}
    identity = {"config": json.dumps(settings, sort_keys=True), "data": data.hexdigest(),
                "backbone": backbone.fingerprint["embedding_sha256"] + backbone.fingerprint["config_sha256"],
                "mixture": json.dumps({"variant": mixture.variant, "tasks": mixture.tasks, "sources": mixture.source_refs}),
                "processes": str(world)}
    if start is not None:
        identity["start"] = json.dumps(start, sort_keys=True, default=str)
    return identity


@dataclass
class _Run:
    """The mutable state of a training run, and how it is saved and restored."""

    mixture: PromptMixture
    optimizer: torch.optim.Optimizer
    scheduler: object
    identity: dict[str, str]
    step: int = 0
    epoch: int = 0
    batches_done: int = 0
    best: _Best = field(default_factory=lambda: _Best())
    seconds_before: float = 0.0
    """Training seconds of the segments before this one (a resumed run's earlier processes)."""
    started: float = field(default_factory=time.perf_counter)

    def seconds(self) -> float:
        """Training seconds so far, over every segment of the run."""
        return self.seconds_before + time.perf_counter() - self.started

    def evaluation_due(self, eval_every: int, total: int) -> bool:
        """Whether the step just trained needs its dev evaluation (and has not had it yet)."""
        return self.step > 0 and (self.step % eval_every == 0 or self.step == total) and self.best.history_step != self.step

    def save(self, path) -> None:
        best = {"score": self.best.score if self.best.state is not None else None, "dev": self.best.dev,
                "examples": self.best.examples, "step": self.best.step, "history": self.best.history,
                "history_step": self.best.history_step, "curve": self.best.curve}
        checkpoints.save(path, checkpoints.Checkpoint(
            step=self.step, epoch=self.epoch, batches_done=self.batches_done,
            trainable=_trainable_state(self.mixture), optimizer=self.optimizer.state_dict(),
            scheduler=self.scheduler.state_dict(), rng=torch.get_rng_state(), identity=self.identity,
            best_state=self.best.state, best=best, seconds=self.seconds(), buffers=_buffer_state(self.mixture)))

    def restore(self, plan: CheckpointPlan) -> None:
        if not plan.path.exists():
            raise ConfigError(f"nothing to resume: no checkpoint at {plan.path}; train without --resume")
        saved = checkpoints.load(plan.path)
        checkpoints.check_identity(plan.path, saved.identity, self.identity, plan.force)
        names = {name for name, _ in self.mixture.named_parameters()}
        if names != set(saved.trainable):  # even --force cannot fit one mixture's state into another's
            raise ConfigError(f"checkpoint {plan.path} holds {', '.join(sorted(saved.trainable))}, this run trains "
                              f"{', '.join(sorted(names))}; drop --resume to start over")
        buffers = {k: v for k, v in self.mixture.state_dict(keep_vars=True).items() if k not in names}
        if saved.buffers and set(saved.buffers) != set(buffers):
            raise ConfigError(f"checkpoint {plan.path} holds buffers {', '.join(sorted(saved.buffers))}, this run has "
                              f"{', '.join(sorted(buffers)) or 'none'}; drop --resume to start over")
        with torch.no_grad():
            for name, parameter in self.mixture.named_parameters():
                parameter.copy_(saved.trainable[name])
            for name, value in saved.buffers.items():  # G's calibration as the run began (older checkpoints: recomputed)
                buffers[name].copy_(value)
        self.optimizer.load_state_dict(saved.optimizer)
        self.scheduler.load_state_dict(saved.scheduler)
        torch.set_rng_state(saved.rng)
        self.step, self.epoch, self.batches_done = saved.step, saved.epoch, saved.batches_done
        self.seconds_before = saved.seconds
        self.best = _Best(state=saved.best_state, score=saved.best["score"] if saved.best_state is not None else -math.inf,
                          dev=saved.best["dev"], examples=saved.best.get("examples", {}),  # none in older checkpoints
                          step=saved.best["step"], history=saved.best["history"],
                          history_step=saved.best["history_step"], curve=saved.best.get("curve", []))


@contextmanager
def _stop_requests():
    """Ctrl-C and SIGTERM ask the loop to stop at the next step boundary (after that step's dev
    evaluation and checkpoint), so a checkpoint is always consistent; a second Ctrl-C stops at once."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def request(signum, frame):
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set()

    previous = {sig: signal.signal(sig, request) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@dataclass
class _Best:
    state: dict[str, torch.Tensor] | None = None
    score: float = -math.inf
    dev: dict[str, dict[str, float]] = field(default_factory=dict)
    examples: dict[str, int] = field(default_factory=dict)  # dev rows scored per task
    step: int = 0
    history: list[dict] = field(default_factory=list)
    history_step: int = 0  # the last step whose dev evaluation finished
    curve: list[dict] = field(default_factory=list)  # test scores at config.curve_steps


def _answer_limits(items, task_ids, task_names) -> dict[str, int]:
    lengths: dict[str, list[int]] = {name: [] for name in task_names}
    for item, task in zip(items, task_ids):
        lengths[task_names[task]].append(len(item.target_ids))
    return {name: answer_token_limit(values) for name, values in lengths.items()}


def _evaluate_dev(backbone, mixture, dev_rows, tasks, config, step, best: _Best, notify, limits: Mapping[str, int],
                  lr: float | None = None) -> None:
    """Score dev; keep the state if it is the best so far. ``lr``: the prompts' rate at this step, for the history."""
    best.history_step = step
    if not any(dev_rows.values()):
        best.state, best.step = _trainable_state(mixture), step  # nothing to select on: keep the latest
        return
    results = evaluate(backbone, mixture, dev_rows, tasks, max_length=config.max_length,
                       batch_size=backbone.runtime.eval_batch_size or max(config.batch_size, 8), max_new_tokens=limits)
    dev = {name: result.metrics for name, result in results.items()}
    examples = {name: result.examples for name, result in results.items()}
    # Mean of every task's primary metric: the paper's code selected on the first task only.
    score = sum(dev[name][primary_metric(tasks[name])] for name in dev) / len(dev)
    best.history.append({"step": step, "score": score, "lr": lr, "dev": dev, "examples": examples})
    improved = score > best.score
    if improved:
        best.state, best.score, best.step = _trainable_state(mixture), score, step
        best.dev, best.examples = dev, examples
    notify("eval", step=step, score=score, dev=dev, examples=examples, improved=improved)


def _score_curve(backbone, mixture, test_rows, tasks, config, step, best: _Best, notify,
                 limits: Mapping[str, int]) -> None:
    """A learning curve's point: the test rows scored at ``step`` (nothing is selected on them)."""
    results = evaluate(backbone, mixture, test_rows, tasks, max_length=config.max_length,
                       batch_size=backbone.runtime.eval_batch_size or max(config.batch_size, 8), max_new_tokens=limits)
    point = {"step": step, "test": {n: r.metrics for n, r in results.items()},
             "examples": {n: r.examples for n, r in results.items()}}
    best.curve.append(point)
    notify("curve", **point)


def _trainable_state(mixture: PromptMixture) -> dict[str, torch.Tensor]:
    return {name: p.detach().cpu().clone() for name, p in mixture.named_parameters()}


def _buffer_state(mixture: PromptMixture) -> dict[str, torch.Tensor]:
    """The mixture's persistent buffers (what ``state_dict`` keeps beside the parameters: G's calibration)."""
    parameters = {name for name, _ in mixture.named_parameters()}
    return {name: value.detach().cpu().clone() for name, value in mixture.state_dict().items() if name not in parameters}

"""Studies over registered prompts: one module for every ``study`` command.

- ``study sources`` (the paper's Figure 5): a target evaluated with its sources added one at a time.
- ``study methods`` (the paper's Table 2 and Table 4 ablations): every method trained on every
  target at one budget, each cell (method × target × seed × shots) a registered target version
  tagged ``config["study"] = {"name", "method", "target", "seed", "shots"}`` and evaluated on test,
  so a study resumes cell by cell and ``study show`` rebuilds the table from the registry alone.

Torch-free at import: the training and evaluation code is imported inside the functions that need
it, so reading a study back from the registry never loads torch.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from attemptctl.errors import ConfigError
from attemptctl.metrics import primary_metric
from attemptctl.tasks import get_task
from attemptctl.workspace import Workspace
from registry import PromptRecord, Registry


@dataclass(frozen=True)
class StudyRow:
    """One source set of a study: its score and the mean attention it received."""

    sources: tuple[str, ...]
    metrics: dict[str, float]
    attention: dict[str, float]
    examples: int


def study_sources(ws: Workspace, ref: str, order: Sequence[str], *, split: str = "test", limit: int | None = None,
                  batch_size: int = 16, on_batch=None) -> list[StudyRow]:
    """Evaluate a target with the sources ``order[:1]``, ``order[:2]``, … (the paper's Figure 5 study).

    Nothing is registered: each set reuses the target's prompt and G, as ``compose`` would.
    """
    from dataclasses import replace

    import numpy as np

    from attemptctl.backbones import load_backbone
    from attemptctl.composition import _mixture, _parent
    from attemptctl.evaluate import evaluate
    from attemptctl.mixture import TARGET_COLUMN
    from attemptctl.operations import load_splits
    from attemptctl.tasks import get_task
    from attemptctl.train import TrainConfig

    if not order:
        raise ConfigError("give the sources to add one at a time with --sources a,b,c")
    if split not in ("dev", "test"):
        raise ConfigError(f"unknown split '{split}'; choose dev or test")
    registry = ws.registry()
    parent = _parent(registry, ref)
    refs = [registry.get("source", name).ref for name in order]
    task = get_task(parent.task)
    limit = limit or parent.config.get(f"{split}_limit")
    splits = load_splits(ws, task, replace(TrainConfig(seed=int(parent.config.get("seed", 42))),
                                           train_limit=1, dev_limit=limit, test_limit=limit))
    examples = splits.dev if split == "dev" else splits.test
    backbone = load_backbone(ws.backbone or parent.backbone)
    rows = []
    for k in range(1, len(refs) + 1):
        mixture = _mixture(registry, parent, refs[:k], backbone)
        result = evaluate(backbone, mixture, {task.name: examples}, {task.name: task},
                          max_length=parent.config.get("max_length"), batch_size=batch_size, on_batch=on_batch)[task.name]
        mean = result.weights.mean(0) if result.weights is not None and len(result.weights) else np.zeros(k + 1)
        attention = {col: float(w) for col, w in zip(mixture.columns, mean) if col != TARGET_COLUMN or parent.variant != "no-target"}
        rows.append(StudyRow(tuple(refs[:k]), result.metrics, attention, result.examples))
    return rows


# -- study methods: what a cell is ----------------------------------------------------------------

#: method -> (variant of ``target train``, label in the table); in the table's row order
METHODS = {"pt": ("pt", "PT"), "spot": ("spot", "SPoT"), "attempt": ("attempt", "ATTEMPT"),
           "attempt-mt": ("attempt", "ATTEMPT-MT"), "no-target": ("no-target", "no target prompt"),
           "uniform": ("uniform", "uniform attention"), "single": ("attempt", "single source")}
ATTENTION_METHODS = ("attempt", "attempt-mt")
"""Methods whose mean test attention is stored with the cell (the heatmap; ``single`` reads attempt's)."""
TARGET_COLUMN = "(target)"  # = attemptctl.mixture.TARGET_COLUMN, which imports torch
BUDGET_KEYS = ("steps", "batch_size", "prompt_length", "rows")
UNCOMPARED_OPTIONS = ("seed", "shots", "checkpoint_every")
"""Training options that may differ between the cells of one study: the rest must be equal."""
SCALED_OPTIONS = ("max_steps", "warmup_steps", "eval_every")
"""Step counts a multi-task run multiplies by its number of targets (see :func:`run_options`)."""
UNIFORM_SAMPLING = 1e6
"""attempt-mt's sampling temperature: size^(1/1e6) is 1 for every task, so the shares are equal."""


@dataclass(frozen=True, order=True)
class Cell:
    """One trained and evaluated version: a method on a target for one seed and shot count."""

    method: str
    target: str
    seed: int
    shots: int | None = None

    @property
    def tag(self) -> dict:
        return {"method": self.method, "target": self.target, "seed": self.seed, "shots": self.shots}

    def __str__(self) -> str:
        return f"{self.method} · {self.target} · seed {self.seed}" + (f" · {self.shots} shots" if self.shots else "")


def default_name(targets: Sequence[str]) -> str:
    return "methods-" + "+".join(targets)


def _names(values: Sequence[str], what: str) -> tuple[str, ...]:
    names = tuple(v for v in values if v)
    if len(set(names)) != len(names):
        raise ConfigError(f"a {what} is listed twice; give each once")
    return names


@dataclass(frozen=True)
class MethodsStudyConfig:
    """What ``study methods`` trains: every method on every target, for every seed and shot count."""

    targets: tuple[str, ...]
    """Target tasks, e.g. ``("rte", "mrpc", "cb")``; the table's columns."""
    sources: tuple[str, ...] = ()
    """Source prompts (NAME or NAME@V) every mixing method mixes and SPoT picks from."""
    methods: tuple[str, ...] = tuple(METHODS)
    seeds: tuple[int, ...] = (42,)
    shots: tuple[int | None, ...] = (None,)
    """Few-shot K rows per class per cell; None: the full (limited) training set."""
    name: str | None = None
    """The study's tag; None: ``methods-`` and the targets joined by ``+``."""
    preset: str = "cpu"
    overrides: Mapping = field(default_factory=dict)
    """Training options shared by every cell, named like TrainConfig's fields (None: not given)."""
    single_source: str | None = None
    """``single``: this source for every target instead of the attempt cell's most attended one."""
    attn_prior: str | None = None
    """Initialise G of the attention methods from this attention prior."""

    def __post_init__(self) -> None:
        if not self.targets:
            raise ConfigError("give the target tasks, e.g. `study methods rte,mrpc,cb`")
        _names(self.targets, "target")
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise ConfigError(f"unknown method '{(unknown or [''])[0]}'; choose from {', '.join(METHODS)}")
        _names(self.methods, "method")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError("give each seed once, e.g. --seeds 1,2,3")
        if not self.shots or len(set(self.shots)) != len(self.shots) or any(k is not None and k < 1 for k in self.shots):
            raise ConfigError("--shots takes distinct positive counts, e.g. --shots 4,16,32")
        if any(m != "pt" and not (m == "single" and self.single_source) for m in self.methods) and not self.sources:
            raise ConfigError("every method but pt uses source prompts; give them with --sources a,b")
        if self.single_source and "single" not in self.methods:
            raise ConfigError("--single-source names the source of the `single` method; add it to --methods")
        for target in self.targets:
            get_task(target)  # an unknown task fails here, before anything trains

    @property
    def study(self) -> str:
        return self.name or default_name(self.targets)

    def cells(self) -> list[Cell]:
        """Every cell in training order: an attempt cell before the single cell that reads it."""
        return [Cell(method, target, seed, shots) for shots in self.shots for seed in self.seeds
                for method in METHODS if method in self.methods for target in self.targets]


def study_records(registry: Registry, name: str) -> list[PromptRecord]:
    """Every target version tagged with study ``name``, oldest first."""
    records = [r for r in registry.list(kind="target") if (r.config.get("study") or {}).get("name") == name]
    return sorted(records, key=lambda r: r.created_at)


def study_names(registry: Registry) -> list[str]:
    return sorted({r.config["study"]["name"] for r in registry.list(kind="target")
                   if isinstance(r.config.get("study"), Mapping) and "name" in r.config["study"]})


def _cell_of(record: PromptRecord) -> Cell:
    tag = record.config["study"]
    return Cell(tag["method"], tag["target"], int(tag["seed"]), tag.get("shots"))


def _test_evaluation(registry: Registry, record: PromptRecord):
    return next((e for e in registry.evaluations("target", record.ref) if e.split == "test"), None)


def finished_cells(registry: Registry, records: Sequence[PromptRecord]) -> dict[Cell, tuple[PromptRecord, object]]:
    """Cell -> (latest finished record, its test evaluation). Interrupted or unevaluated versions don't count."""
    done: dict[Cell, tuple[PromptRecord, object]] = {}
    for record in records:  # oldest first: a later version of a cell replaces an earlier one
        if record.metrics.get("interrupted"):
            continue
        evaluation = _test_evaluation(registry, record)
        if evaluation is not None:
            done[_cell_of(record)] = (record, evaluation)
    return done


def _attention_key(record: PromptRecord) -> str:
    return f"study-attention/{record.ref}/{record.sha256[:16]}"


def stored_attention(registry: Registry, record: PromptRecord) -> dict[str, float] | None:
    payload = registry.get_cache(_attention_key(record))
    return None if payload is None else json.loads(payload)


# -- study methods: training the cells -------------------------------------------------------------

@dataclass(frozen=True)
class MethodsStudyResult:
    """What one ``study methods`` run did, and the study's table afterwards."""

    table: "MethodsTable"
    trained: tuple[Cell, ...]
    """Cells trained (or, killed after training, evaluated) by this run."""
    skipped: int
    """Cells already finished before this run."""
    interrupted: bool = False
    stopped: bool = False
    """True when ``max_cells`` stopped the run with cells left."""


OnCell = Callable[..., None]
"""Study progress: ``on_cell(event, cells=[Cell…], index=i, total=n, **data)``; events ``train``, ``done``."""


def _pinned_sources(registry: Registry, names: Sequence[str], records: Sequence[PromptRecord]) -> list[str]:
    """Exact source versions: a bare name keeps the version the study's cells already mix."""
    used = {ref.split("@")[0]: ref for r in records for ref in r.sources}
    return [registry.get("source", used.get(name, name)).ref for name in names]


def _options(config: MethodsStudyConfig, registry: Registry, sources: Sequence[str]) -> tuple[dict, dict]:
    """The training options every cell shares, checked; one prompt length for mixing and PT cells alike."""
    from attemptctl.train import make_config

    lengths = {registry.get("source", ref).m for ref in sources}
    if len(lengths) > 1:
        raise ConfigError("the sources have different prompt lengths; a study compares methods at one length")
    overrides = dict(config.overrides)
    if lengths:
        m = lengths.pop()
        if overrides.get("prompt_length") not in (None, m):
            raise ConfigError(f"--prompt-length {overrides['prompt_length']} differs from the sources' length {m}")
        overrides["prompt_length"] = m
    options = make_config(config.preset, **overrides).to_dict()
    if not options.get("max_steps"):
        raise ConfigError("a study compares methods at one budget of optimizer steps; give --max-steps N")
    pinned = {k: options[k] for k in SCALED_OPTIONS}
    if "sampling_temperature" not in overrides or overrides["sampling_temperature"] is None:
        pinned["sampling_temperature"] = None  # attempt-mt: uniform task shares unless the user chose
    return overrides | pinned, {k: v for k, v in options.items() if k not in UNCOMPARED_OPTIONS}


def run_options(options: Mapping, tasks: int) -> dict:
    """The options of one training run over ``tasks`` targets (attempt-mt: all of them, one shared G).

    Each target of a multi-task run gets the budget of its own single-task cell: the run takes
    ``tasks`` times the steps (warm-up and dev checks scale alike, so the schedule has the same
    shape), and samples the tasks uniformly, so every target sees as many training rows as in its
    single-task cells. A sampling temperature the user gave is kept as given.
    """
    if tasks == 1:
        return {**options, "sampling_temperature": options.get("sampling_temperature") or 1.0}
    scaled = {k: options[k] * tasks for k in SCALED_OPTIONS if options.get(k)}
    return {**options, **scaled, "sampling_temperature": options.get("sampling_temperature") or UNIFORM_SAMPLING}


def _check_options(records: Sequence[PromptRecord], options: Mapping, overrides: Mapping, name: str) -> None:
    """A study keeps one budget: a run with other options than its finished cells is refused (a
    multi-task cell is compared with the options this run would give a run over as many targets)."""
    for record in records:
        tasks = len(record.config.get("tasks") or [record.task])
        expected = {**options, **{k: v for k, v in run_options(overrides, tasks).items()
                                  if k in (*SCALED_OPTIONS, "sampling_temperature")}}
        differ = [k for k, v in expected.items() if record.config.get(k) != v]
        if differ:
            k = differ[0]
            raise ConfigError(f"study '{name}' trained {record.ref} with {k.replace('_', '-')} {record.config.get(k)}, "
                              f"this run asks {expected[k]}; give the study's options or another --name")


def _jobs(todo: Sequence[Cell], targets: Sequence[str]) -> list[list[Cell]]:
    """One training run per cell, except attempt-mt: one run over every target of a seed and shot count."""
    jobs: list[list[Cell]] = []
    for cell in todo:
        if cell.method == "attempt-mt":
            whole = [Cell("attempt-mt", t, cell.seed, cell.shots) for t in targets]
            if whole not in jobs:
                jobs.append(whole)
        else:
            jobs.append([cell])
    return jobs


def _single_source(registry: Registry, config: MethodsStudyConfig, cell: Cell, done: Mapping) -> list[str]:
    if config.single_source:
        return [registry.get("source", config.single_source).ref]
    found = done.get(Cell("attempt", cell.target, cell.seed, cell.shots))
    means = found and stored_attention(registry, found[0])
    if not means:
        raise ConfigError(f"`single` takes the most attended source of the study's attempt cell for {cell.target}, "
                          f"seed {cell.seed}; add attempt to --methods or name a source with --single-source")
    sources = {ref: w for ref, w in means.items() if ref != TARGET_COLUMN}
    return [max(sources, key=sources.get)]


def _finish(ws: Workspace, records: Sequence[PromptRecord], batch_size: int) -> None:
    """Score the cells on test (stored as evaluations) and store the attention methods' mean attention."""
    from attemptctl.attention_report import attention_weights
    from attemptctl.reports import evaluate_prompts

    registry = ws.registry()
    evaluate_prompts(ws, [r.ref for r in records], split="test", batch_size=batch_size)
    attending = [r for r in records if r.config["study"]["method"] in ATTENTION_METHODS]
    if attending:
        for weights in attention_weights(ws, [r.ref for r in attending], split="test", batch_size=batch_size):
            registry.put_cache(_attention_key(weights.record), json.dumps(weights.mean()).encode())


def study_methods(ws: Workspace, config: MethodsStudyConfig, *, on_event=None, on_cell: OnCell | None = None,
                  max_cells: int | None = None, resume: bool = False, batch_size: int = 16) -> MethodsStudyResult:
    """Train and evaluate every unfinished cell of the study; finished cells are read, never retrained.

    Each cell goes through ``train_target`` (one multi-task run for attempt-mt) and ``evaluate_prompts``.
    A cell registered but not yet evaluated (killed in between) is only evaluated. ``resume`` continues
    the first cell trained from its checkpoint when there is one; ``max_cells`` stops after N runs.
    """
    from attemptctl.targets import train_target

    registry = ws.registry()
    name = config.study
    records = study_records(registry, name)
    sources = _pinned_sources(registry, config.sources, records)
    single = [registry.get("source", config.single_source).ref] if config.single_source else []
    overrides, options = _options(config, registry, [*sources, *single])
    done = finished_cells(registry, records)
    _check_options([record for record, _ in done.values()], options, overrides, name)
    cells = config.cells()
    skipped = sum(c in done for c in cells)
    if "single" in config.methods and not config.single_source and "attempt" not in config.methods:
        missing = [c for c in cells if c.method == "single" and Cell("attempt", c.target, c.seed, c.shots) not in done]
        if missing:
            _single_source(registry, config, missing[0], done)  # raises with the way out
    unevaluated = {_cell_of(r): r for r in records if not r.metrics.get("interrupted") and _cell_of(r) not in done}
    todo = [c for c in cells if c not in done]
    jobs, trained, notify = _jobs(todo, config.targets), [], on_cell or (lambda *a, **k: None)
    for index, job in enumerate(jobs, start=1):
        if max_cells is not None and len(trained) >= max_cells:
            return MethodsStudyResult(methods_table(registry, name), tuple(trained), skipped, stopped=True)
        if all(c in unevaluated for c in job):  # trained, then killed before its evaluation
            ready = [unevaluated[c] for c in job]
        else:
            notify("train", cells=job, index=index, total=len(jobs))
            method, seed, shots = job[0].method, job[0].seed, job[0].shots
            variant = METHODS[method][0]
            mixes = [] if method == "pt" else _single_source(registry, config, job[0], done) if method == "single" \
                else sources
            checkpoint = ws.registry_path / "checkpoints" / f"target-{'+'.join(c.target for c in job)}.safetensors"
            ready, result = train_target(
                ws, [c.target for c in job], mixes, variant=variant, init_from="auto" if method == "spot" else None,
                attn_prior=config.attn_prior if variant in ("attempt", "no-target") else None, preset=config.preset,
                overrides=run_options(overrides, len(job)) | {"seed": seed, "shots": shots}, on_event=on_event,
                resume=resume and not trained and checkpoint.exists(),
                record_config={c.target: {"study": {"name": name, **c.tag}} for c in job})
            if not result.main_process:
                continue
            if result.interrupted:
                return MethodsStudyResult(methods_table(registry, name), tuple(trained), skipped, interrupted=True)
        _finish(ws, ready, batch_size)
        scores = []
        for record in ready:
            done[_cell_of(record)] = (record, evaluation := _test_evaluation(registry, record))
            metric = primary_metric(get_task(record.task))
            scores.append((record.ref, metric, evaluation.metrics[metric]))
        trained += job
        notify("done", cells=job, index=index, total=len(jobs), scores=scores)
    return MethodsStudyResult(methods_table(registry, name), tuple(trained), skipped)


# -- study methods: the table, from the registry alone (no torch) ----------------------------------

@dataclass(frozen=True)
class CellResult:
    """A finished cell as the registry holds it."""

    cell: Cell
    ref: str
    sources: tuple[str, ...]
    metric: str
    score: float
    """The target's primary test metric, in [0, 1]."""
    params: int
    """Trainable parameters of this task: its prompt (none for no-target) and its share of G."""
    budget: dict
    train_seconds: float
    eval_seconds: float
    run: str
    """The training run (cells of one attempt-mt run share it)."""
    attention: dict[str, float] | None


@dataclass(frozen=True)
class Summary:
    """One table cell: mean and sample standard deviation over seeds (None under two seeds)."""

    mean: float
    std: float | None
    n: int

    def text(self) -> str:
        return f"{100 * self.mean:.1f}" + (f" ± {100 * self.std:.1f}" if self.std is not None else "")


def _summary(values: Sequence[float]) -> Summary | None:
    if not values:
        return None
    return Summary(statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None, len(values))


@dataclass(frozen=True)
class MethodsTable:
    """A methods study: its finished cells, how they summarise, and which break the equal budget."""

    name: str
    cells: tuple[CellResult, ...]
    methods: tuple[str, ...]
    targets: tuple[str, ...]
    seeds: tuple[int, ...]
    shots: tuple[int | None, ...]
    budget_issues: tuple[str, ...]
    flagged: frozenset
    """Cells whose budget differs from the study's (marked in the table)."""
    unfinished: int
    """Cells tagged in the registry that have no finished version (interrupted or never evaluated)."""

    def _scores(self, method: str, target: str, shots) -> dict[int, float]:
        return {c.cell.seed: c.score for c in self.cells
                if (c.cell.method, c.cell.target, c.cell.shots) == (method, target, shots)}

    def score(self, method: str, target: str, shots=None) -> Summary | None:
        return _summary(list(self._scores(method, target, shots).values()))

    def average(self, method: str, shots=None) -> Summary | None:
        """Mean of the targets' means; the spread is over seeds that have every target."""
        by_target = [self._scores(method, t, shots) for t in self.targets]
        if not by_target or not all(by_target):
            return None
        mean = statistics.fmean(statistics.fmean(s.values()) for s in by_target)
        complete = [seed for seed in self.seeds if all(seed in s for s in by_target)]
        spread = [statistics.fmean(s[seed] for s in by_target) for seed in complete]
        return Summary(mean, statistics.stdev(spread) if len(spread) > 1 else None, len(complete))

    def params(self, method: str, shots=None) -> int | None:
        counts = Counter(c.params for c in self.cells if c.cell.method == method and c.cell.shots == shots)
        return counts.most_common(1)[0][0] if counts else None

    def marked(self, method: str, target: str, shots=None) -> bool:
        return any((c.method, c.target, c.shots) == (method, target, shots) for c in self.flagged)

    def attention(self) -> list[tuple[str, str, int | None, dict[str, float]]]:
        """(method, target, shots, mean attention over seeds) for every ATTEMPT cell group."""
        groups: dict[tuple, list[dict]] = defaultdict(list)
        for c in self.cells:
            if c.attention:
                groups[(c.cell.method, c.cell.target, c.cell.shots)].append(c.attention)
        order = {m: i for i, m in enumerate(METHODS)}
        return [(m, t, k, {col: statistics.fmean(a.get(col, 0.0) for a in rows) for col in rows[0]})
                for (m, t, k), rows in sorted(groups.items(), key=lambda kv: (order[kv[0][0]], self.targets.index(kv[0][1])))]

    @property
    def seconds(self) -> float:
        """Training time (a shared run once) plus evaluation time of every finished cell."""
        runs = {c.run: c.train_seconds for c in self.cells}
        return sum(runs.values()) + sum(c.eval_seconds for c in self.cells)

    def as_dict(self) -> dict:
        rows = []
        for shots in self.shots:
            for method in self.methods:
                summaries = {t: self.score(method, t, shots) for t in self.targets}
                average = self.average(method, shots)
                rows.append({"method": method, "label": METHODS[method][1], "shots": shots,
                             "params": self.params(method, shots),
                             "scores": {t: None if s is None else vars(s) for t, s in summaries.items()},
                             "average": None if average is None else vars(average)})
        cells = [{**c.cell.tag, "prompt": c.ref, "sources": list(c.sources), "metric": c.metric, "score": c.score,
                  "params": c.params, "budget": c.budget, "train_seconds": c.train_seconds,
                  "eval_seconds": c.eval_seconds, "run": c.run, "attention": c.attention,
                  "budget_differs": c.cell in self.flagged} for c in self.cells]
        return {"study": self.name, "targets": list(self.targets), "seeds": list(self.seeds), "shots": list(self.shots),
                "rows": rows, "cells": cells, "budget_issues": list(self.budget_issues), "seconds": self.seconds,
                "unfinished": self.unfinished}


def _parameters(payload: bytes) -> int:
    """Trainable values in G's safetensors bytes, from the header alone.

    G's weights live in submodules (``down.weight``, ``norm.bias``); its top-level entries are buffers
    (calibration statistics such as ``input_mean``) that never train.
    """
    size = int.from_bytes(payload[:8], "little")
    header = json.loads(payload[8:8 + size])
    total = 0
    for key, info in header.items():
        if key != "__metadata__" and "." in key:
            count = 1
            for dim in info["shape"]:
                count *= dim
            total += count
    return total


def _trainable(registry: Registry, record: PromptRecord, seen: dict[str, tuple[int, int]]) -> int:
    prompt = 0 if record.variant == "no-target" else record.m * record.d  # no-target's prompt never enters
    if not record.attention:
        return prompt
    if record.attention not in seen:
        module = registry.get("attention", record.attention)
        seen[record.attention] = (_parameters(registry.load_payload(module)), len(module.task.split(",")))
    values, tasks = seen[record.attention]
    return prompt + round(values / tasks)  # a G shared by several targets counts once among them


def _budget(record: PromptRecord) -> dict:
    """Steps per target (a multi-task run's steps divided among its targets), batch, m and data rows."""
    steps, tasks = record.metrics.get("steps"), len(record.config.get("tasks") or [record.task])
    per_target = None if steps is None else steps // tasks if steps % tasks == 0 else steps / tasks
    return {"steps": per_target,
            "batch_size": record.config.get("batch_size"), "prompt_length": record.m, "rows": record.config.get("rows")}


def _budget_issues(cells: Sequence[CellResult]) -> tuple[list[str], set[Cell]]:
    """Cells whose steps, batch or prompt length differ from the study's usual one (per shot count), or
    whose data rows differ from the other cells of their target."""
    issues, flagged = [], set()
    for key in BUDGET_KEYS:
        groups: dict[tuple, list[CellResult]] = defaultdict(list)
        for c in cells:
            groups[(c.cell.shots,) + ((c.cell.target,) if key == "rows" else ())].append(c)
        for members in groups.values():
            usual, _ = Counter(json.dumps(c.budget[key], sort_keys=True) for c in members).most_common(1)[0]
            for c in members:
                if json.dumps(c.budget[key], sort_keys=True) != usual:
                    issues.append(f"{c.cell} ({c.ref}): {key.replace('_', ' ')} {c.budget[key]}, the study's {json.loads(usual)}")
                    flagged.add(c.cell)
    return issues, flagged


def methods_table(registry: Registry, name: str) -> MethodsTable:
    """The study's table from its tagged versions and their stored test evaluations; no torch."""
    records = study_records(registry, name)
    done = finished_cells(registry, records)
    seen: dict[str, tuple[int, int]] = {}
    cells = []
    for cell, (record, evaluation) in done.items():
        metric = primary_metric(get_task(record.task))
        cells.append(CellResult(cell, record.ref, tuple(record.sources), metric, float(evaluation.metrics[metric]),
                                _trainable(registry, record, seen), _budget(record),
                                float(record.metrics.get("seconds", 0.0)), float(evaluation.seconds),
                                record.attention or record.ref,
                                stored_attention(registry, record) if cell.method in ATTENTION_METHODS else None))
    unfinished = len({_cell_of(r) for r in records} - set(done))
    return _table(name, cells, [_cell_of(r).target for r in records], unfinished)


def _table(name: str, cells: list[CellResult], target_order: Sequence[str], unfinished: int) -> MethodsTable:
    cells = sorted(cells, key=lambda c: (list(METHODS).index(c.cell.method), c.cell))
    issues, flagged = _budget_issues(cells)
    first_seen = list(dict.fromkeys(target_order))
    return MethodsTable(name, tuple(cells), tuple(m for m in METHODS if any(c.cell.method == m for c in cells)),
                        tuple(t for t in first_seen if any(c.cell.target == t for c in cells)),
                        tuple(sorted({c.cell.seed for c in cells})),
                        tuple(sorted({c.cell.shots for c in cells}, key=lambda k: (k is not None, k or 0))),
                        tuple(issues), frozenset(flagged), unfinished)


def table_from_exports(name: str, exports: Sequence[tuple[str, Mapping]]) -> MethodsTable:
    """A study's table from ``--json`` exports of its cells (``study show --from``), with no registry.

    A study run on several machines or in several registries is one table this way: each export
    holds finished cells, a cell may appear in several exports only with the same prompt and score,
    and the equal budget is checked across all of them as within one registry. ``exports`` is
    (where it came from, the export's JSON) per export.
    """
    found: dict[Cell, tuple[str, CellResult]] = {}
    order: list[str] = []
    for origin, doc in exports:
        if not isinstance(doc, Mapping) or not isinstance(doc.get("cells"), list):
            raise ConfigError(f"{origin} is not a study export (no list of cells); write one with "
                              "`attemptctl study show NAME --json`")
        if doc.get("study") != name:
            raise ConfigError(f"{origin} holds study '{doc.get('study')}', not '{name}'; give that name or other files")
        order += doc.get("targets") or []
        for row in doc["cells"]:
            try:
                cell = Cell(row["method"], row["target"], int(row["seed"]), row["shots"])
                result = CellResult(cell, row["prompt"], tuple(row["sources"]), row["metric"], float(row["score"]),
                                    int(row["params"]), dict(row["budget"]), float(row["train_seconds"]),
                                    float(row["eval_seconds"]), f"{origin}:{row['run']}", row["attention"])
            except (KeyError, TypeError, ValueError) as e:
                raise ConfigError(f"{origin}: a cell lacks or mangles {e}; export it again with `study show --json`") \
                    from None
            if cell.method not in METHODS:
                raise ConfigError(f"{origin}: unknown method '{cell.method}' in cell {cell}")
            if cell in found:
                first, seen = found[cell]
                if (seen.ref, seen.score) != (result.ref, result.score):
                    raise ConfigError(f"cell {cell} is in {first} ({seen.ref}, {100 * seen.score:.1f}) and in {origin} "
                                      f"({result.ref}, {100 * result.score:.1f}); keep one of the two files")
                continue
            found[cell] = (origin, result)
    if not found:
        raise ConfigError(f"no finished cell of study '{name}' in {', '.join(o for o, _ in exports) or 'no file'}")
    return _table(name, [result for _, result in found.values()], order, 0)


def show_study(ws: Workspace, name: str) -> MethodsTable:
    """``study show``: a study's table, refused when the registry holds no cell of it."""
    registry = ws.registry()
    table = methods_table(registry, name)
    if not table.cells:
        known = study_names(registry)
        raise ConfigError(f"no finished cell of study '{name}' in registry {registry.root}; "
                          + (f"studies: {', '.join(known)}" if known else "run `attemptctl study methods` first"))
    return table


def read_export(path) -> dict:
    """A ``study show --json`` export, or one clear error naming the file."""
    from pathlib import Path

    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"study export {path} does not exist; write one with `study methods --export {path}`") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"study export {path} is not readable JSON ({e}); export it again") from None


def check_export(path, table: MethodsTable) -> None:
    """Refuse to overwrite an export that holds a cell this table lacks (another registry's work)."""
    from pathlib import Path

    if not Path(path).exists():
        return
    doc = read_export(path)
    mine = {(c.cell.method, c.cell.target, c.cell.seed, c.cell.shots, c.ref) for c in table.cells}
    theirs = [(r.get("method"), r.get("target"), r.get("seed"), r.get("shots"), r.get("prompt"))
              for r in doc.get("cells") or [] if isinstance(r, Mapping)]
    lost = [t for t in theirs if t not in mine]
    if doc.get("study") not in (None, table.name) or lost:
        what = f"study '{doc.get('study')}'" if doc.get("study") != table.name else f"{len(lost)} cell(s) this registry lacks"
        raise ConfigError(f"{path} holds {what}; export to a new file (`study show --from` reads several)")


def write_export(path, table: MethodsTable) -> None:
    """The table's JSON, written whole or not at all (a temporary file renamed over the old one)."""
    import os
    from pathlib import Path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(table.as_dict(), indent=1, sort_keys=True) + "\n")
    os.replace(temporary, path)


# -- exports ---------------------------------------------------------------------------------------

def _header(table: MethodsTable, shots) -> list[str]:
    what = f" ({shots}-shot)" if shots else ""
    return [f"method{what}", "params/task", *table.targets, "avg"]


def _row(table: MethodsTable, method: str, shots) -> list[str]:
    def text(summary, marked=False):
        return "—" if summary is None else summary.text() + (" †" if marked else "")
    params = table.params(method, shots)
    return [METHODS[method][1], "—" if params is None else f"{params:,}",
            *(text(table.score(method, t, shots), table.marked(method, t, shots)) for t in table.targets),
            text(table.average(method, shots))]


def table_rows(table: MethodsTable) -> list[tuple[int | None, list[str], list[list[str]]]]:
    """(shots, header, rows of text) per shot count: what every rendering prints."""
    return [(shots, _header(table, shots), [_row(table, m, shots) for m in table.methods
                                            if any(c.cell.method == m and c.cell.shots == shots for c in table.cells)])
            for shots in table.shots]


def table_markdown(table: MethodsTable) -> str:
    parts = []
    for _, header, rows in table_rows(table):
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" + "---:|" * (len(header) - 1)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        parts.append("\n".join(lines))
    note = f"\n\nTest scores (%) of study `{table.name}`, mean ± std over seeds {', '.join(map(str, table.seeds))}."
    if table.budget_issues:
        note += " †: a cell whose budget differs from the study's."
    return "\n\n".join(parts) + note


def table_csv(table: MethodsTable) -> str:
    """One line per method, target and shot count: mean, std and seeds, plus the average as target ``avg``."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["study", "method", "shots", "target", "metric", "mean", "std", "seeds", "params_per_task",
                     "budget_differs"])
    for row in table.as_dict()["rows"]:
        metrics = {c.cell.target: c.metric for c in table.cells}
        for target, summary in [*row["scores"].items(), ("avg", row["average"])]:
            if summary is None:
                continue
            differs = target != "avg" and table.marked(row["method"], target, row["shots"])
            writer.writerow([table.name, row["method"], row["shots"] or "", target, metrics.get(target, ""),
                             f"{summary['mean']:.6f}", "" if summary["std"] is None else f"{summary['std']:.6f}",
                             summary["n"], row["params"], int(differs)])
    return buffer.getvalue().rstrip("\n")

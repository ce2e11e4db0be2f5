"""``study methods``: training and evaluating the cells a study lacks. Torch is imported inside the
functions that train."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from attemptctl.errors import ConfigError
from attemptctl.method.variants import variant_of
from attemptctl.studies.answers import keep_answers
from attemptctl.studies.cells import (
    ATTENTION_METHODS,
    METHODS,
    MIXING_METHODS,
    SCALED_OPTIONS,
    TARGET_COLUMN,
    UNCOMPARED_OPTIONS,
    UNIFORM_SAMPLING,
    Cell,
    MethodsStudyConfig,
    attention_key,
    cell_of,
    finished_cells,
    stored_attention,
    study_records,
    test_evaluation,
)
from attemptctl.studies.table import MethodsTable, methods_table
from attemptctl.tasks import CONFIG_BEFORE, get_task, labels_of
from attemptctl.tasks.metrics import primary_metric
from attemptctl.workflows.workspace import Workspace
from registry import PromptRecord, Registry


@dataclass(frozen=True)
class MethodsStudyResult:
    """What one ``study methods`` run did, and the study's table afterwards."""

    table: MethodsTable
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
    """The training options every cell shares, checked; one prompt length and one label format for
    mixing and PT cells alike (the sources')."""
    from attemptctl.engine.train import make_config

    records = [registry.get("source", ref) for ref in sources]
    lengths = {record.m for record in records}
    if len(lengths) > 1:
        raise ConfigError("the sources have different prompt lengths; a study compares methods at one length")
    formats = {labels_of(record) for record in records}
    if len(formats) > 1:
        raise ConfigError("the sources answer in different label formats; a study compares methods in one "
                          "(train its sources with one --labels)")
    overrides = dict(config.overrides)
    if lengths:
        m = lengths.pop()
        if overrides.get("prompt_length") not in (None, m):
            raise ConfigError(f"--prompt-length {overrides['prompt_length']} differs from the sources' length {m}")
        overrides["prompt_length"] = m
    if formats:  # PT cells answer as the mixing cells do, or the methods would not be compared on one task
        labels = formats.pop()
        if overrides.get("labels") not in (None, labels):
            raise ConfigError(f"--labels {overrides['labels']} differs from the sources' label format {labels}")
        overrides["labels"] = labels
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
    if options.get("curve_steps"):  # the curve's points at the same steps per target as the single-task cells'
        steps = sorted({int(s) * tasks for s in str(options["curve_steps"]).split(",") if s.strip()})
        scaled["curve_steps"] = ",".join(map(str, steps))
    return {**options, **scaled, "sampling_temperature": options.get("sampling_temperature") or UNIFORM_SAMPLING}


def _recipe_options(config: MethodsStudyConfig, overrides: dict) -> tuple[dict, dict]:
    """The mixing methods' overrides and compared options: the study's, with the recipe's rates where the
    study gives none (PT and SPoT train at the study's options as they are)."""
    from attemptctl.engine.train import make_config
    from attemptctl.method.variants import apply_recipe

    _, mixing = apply_recipe(config.recipe, overrides)
    options = make_config(config.preset, **mixing).to_dict()
    return mixing, {k: v for k, v in options.items() if k not in UNCOMPARED_OPTIONS}


def _check_options(records: Sequence[PromptRecord], by_method, name: str) -> None:
    """A study keeps one budget: a run with other options than its finished cells is refused (a
    multi-task cell is compared with the options this run would give a run over as many targets).
    ``by_method(method)`` gives a method's (overrides, options)."""
    for record in records:
        overrides, options = by_method(record.config["study"]["method"])
        tasks = len(record.config.get("tasks") or [record.task])
        expected = {**options, **{k: v for k, v in run_options(overrides, tasks).items()
                                  if k in (*SCALED_OPTIONS, "sampling_temperature", "curve_steps")}}
        differ = [k for k, v in expected.items() if record.config.get(k, CONFIG_BEFORE.get(k)) != v]
        if differ:
            k = differ[0]
            raise ConfigError(f"study '{name}' trained {record.ref} with {k.replace('_', '-')} {record.config.get(k)}, "
                              f"this run asks {expected[k]}; give the study's options or another --name")


def _init_tag(config: MethodsStudyConfig, method: str) -> dict:
    """What a mixing cell's tag keeps of its target prompt's start and recipe (a study's cells share one)."""
    return {"target_init": config.mixing_init, "recipe": config.recipe} if method in MIXING_METHODS else {}


def _check_init(records: Sequence[PromptRecord], config: MethodsStudyConfig) -> None:
    """A study's mixing cells start their target prompts one way; cells from before the option started at auto."""
    for record in records:
        tag = record.config["study"]
        if tag["method"] in MIXING_METHODS and tag.get("target_init", "auto") != config.mixing_init:
            raise ConfigError(f"study '{config.study}' started {record.ref}'s target prompt at "
                              f"{tag.get('target_init', 'auto')}, this run asks {config.mixing_init}; give the "
                              "study's --target-init (or --recipe) or another --name")


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
    """Score the cells on test (stored as evaluations), keep their per-row answers (the paired intervals'
    input) and store the attention methods' mean attention."""
    from attemptctl.workflows.attn import attention_weights
    from attemptctl.workflows.eval import evaluate_prompts

    registry = ws.registry()
    for row in evaluate_prompts(ws, [r.ref for r in records], split="test", batch_size=batch_size):
        keep_answers(registry, row.record, row.task, row.predictions, row.rows)
    attending = [r for r in records if r.config["study"]["method"] in ATTENTION_METHODS]
    if attending:
        for weights in attention_weights(ws, [r.ref for r in attending], split="test", batch_size=batch_size):
            registry.put_cache(attention_key(weights.record), json.dumps(weights.mean()).encode())


def study_methods(ws: Workspace, config: MethodsStudyConfig, *, on_event=None, on_cell: OnCell | None = None,
                  max_cells: int | None = None, resume: bool = False, batch_size: int | None = None) -> MethodsStudyResult:
    """Train and evaluate every unfinished cell of the study; finished cells are read, never retrained.

    Each cell goes through ``train_target`` (one multi-task run for attempt-mt) and ``evaluate_prompts``.
    A cell registered but not yet evaluated (killed in between) is only evaluated. ``resume`` continues
    the first cell trained from its checkpoint when there is one; ``max_cells`` stops after N runs.
    """
    from attemptctl.workflows.target import train_target

    registry = ws.registry()
    name = config.study
    records = study_records(registry, name)
    sources = _pinned_sources(registry, config.sources, records)
    single = [registry.get("source", config.single_source).ref] if config.single_source else []
    overrides, options = _options(config, registry, [*sources, *single])
    mixing = _recipe_options(config, overrides)

    def by_method(method: str) -> tuple[dict, dict]:
        return mixing if method in MIXING_METHODS else (overrides, options)

    done = finished_cells(registry, records)
    _check_options([record for record, _ in done.values()], by_method, name)
    _check_init([record for record, _ in done.values()], config)
    cells = config.cells()
    skipped = sum(c in done for c in cells)
    if "single" in config.methods and not config.single_source and "attempt" not in config.methods:
        missing = [c for c in cells if c.method == "single" and Cell("attempt", c.target, c.seed, c.shots) not in done]
        if missing:
            _single_source(registry, config, missing[0], done)  # raises with the way out
    unevaluated = {cell_of(r): r for r in records if not r.metrics.get("interrupted") and cell_of(r) not in done}
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
                init=config.mixing_init if method in MIXING_METHODS else "auto",
                attn_prior=config.attn_prior if variant_of(variant).has_attention else None, preset=config.preset,
                overrides=run_options(by_method(method)[0], len(job)) | {"seed": seed, "shots": shots},
                recipe=config.recipe, on_event=on_event,
                resume=resume and not trained and checkpoint.exists(),
                record_config={c.target: {"study": {"name": name, **c.tag, **_init_tag(config, method)}} for c in job})
            if not result.main_process:
                continue
            if result.interrupted:
                return MethodsStudyResult(methods_table(registry, name), tuple(trained), skipped, interrupted=True)
        _finish(ws, ready, batch_size or ws.runtime.eval_batch_size or 16)
        scores = []
        for record in ready:
            done[cell_of(record)] = (record, evaluation := test_evaluation(registry, record))
            metric = primary_metric(get_task(record.task))
            scores.append((record.ref, metric, evaluation.metrics[metric], evaluation.examples))
        trained += job
        notify("done", cells=job, index=index, total=len(jobs), scores=scores)
    return MethodsStudyResult(methods_table(registry, name), tuple(trained), skipped)

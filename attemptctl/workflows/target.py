"""`target train` in every variant, and `target compose` (a new version with sources added or removed).

Variants (DESIGN §1; each is recorded as the version's ``variant``):

- ``attempt``: P_target + Σ a_j P_j, G over the sources and the target (the method);
- ``uniform``: constant attention 1/t over the sources;
- ``no-target``: Σ a_j P_j over the sources only;
- ``pt``: plain prompt tuning, no sources, random-vocabulary initialisation;
- ``spot``: plain prompt tuning initialised from one source prompt (SPoT, Vu et al. 2022); with
  ``--init-from auto`` the source whose prompt is most similar (cosine of mean-pooled prompts) to a
  briefly tuned target prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import torch

from attemptctl.engine.evaluate import evaluate
from attemptctl.engine.train import Event, TrainConfig, TrainResult, train
from attemptctl.errors import ConfigError
from attemptctl.method.backbones import Backbone
from attemptctl.method.mixture import PromptMixture
from attemptctl.method.variants import DEFAULT_RECIPE, SELECTABLE, TARGET_INITS, apply_recipe, variant_of
from attemptctl.tasks import Task, labels_of, task_of
from attemptctl.tasks.metrics import primary_metric
from attemptctl.workflows import payloads
from attemptctl.workflows.runs import (
    TargetRun,
    attention_module,
    calibrate_attention,
    load_splits,
    plan_run,
    register_trained,
    train_run,
    vocab_prompt,
)
from attemptctl.workflows.workspace import Workspace
from registry import PromptRecord, Registry

BEST_SOURCE_ROWS = 64
"""``best-source`` scores each source on at most this many of the target's dev rows."""


def _initial_target(init: str, task: Task, sources: dict[str, torch.Tensor], backbone: Backbone,
                    config: TrainConfig, dev: Sequence) -> tuple[torch.Tensor, str, dict]:
    """Target prompt initialisation and what the record keeps of it.

    ``auto`` follows the paper (MNLI for classification, SQuAD for QA); ``best-source`` starts from the
    source whose prompt, untrained and alone, scores best on the target's dev rows (SPoT's idea, measured
    instead of guessed from prompt similarity), so a target keeps the source that already answers it.
    """
    by_name = {ref.split("@")[0]: ref for ref in sources}
    if init == "auto":
        preferred = "mnli" if task.is_classification else "squad"
        first = next(iter(by_name), None)
        init = f"source:{preferred}" if preferred in by_name else (f"source:{first}" if first else "vocab")
    if init == "vocab":
        return vocab_prompt(backbone, config.prompt_length, config.seed), init, {}
    if init == "zeros":
        return torch.zeros(config.prompt_length, backbone.d), init, {}
    if init == "best-source":
        if not sources:
            raise ConfigError("--init best-source picks among the sources; give candidates with --sources a,b")
        scores = _source_scores(task, sources, backbone, config, list(dev)[:BEST_SOURCE_ROWS])
        best = max(scores, key=scores.get)  # ties: the first source given
        return sources[best].clone(), f"source:{best}", {"init_scores": scores}
    if init.startswith("source:") and init[7:] in by_name:
        return sources[by_name[init[7:]]].clone(), f"source:{by_name[init[7:]]}", {}
    raise ConfigError(f"unknown --init '{init}'; use {', '.join(TARGET_INITS)} or source:NAME with NAME one of the "
                      f"sources ({', '.join(by_name) or 'none given'})")


def _source_scores(task: Task, sources: dict[str, torch.Tensor], backbone: Backbone, config: TrainConfig,
                   rows: list) -> dict[str, float]:
    """Each source prompt alone on ``rows`` of the target, in one evaluation (the task's primary metric);
    all zero when there are no rows to score."""
    if not rows:
        return {ref: 0.0 for ref in sources}
    bank = PromptMixture({ref: prompt for ref, prompt in sources.items()})
    results = evaluate(backbone, bank, {ref: rows for ref in sources}, {ref: task for ref in sources},
                       max_length=config.max_length,
                       batch_size=backbone.runtime.eval_batch_size or max(config.batch_size, 8))
    metric = primary_metric(task)
    return {ref: round(float(results[ref].metrics[metric]), 4) for ref in sources}


def _spot_init(run: TargetRun, task: Task, init_from: str, backbone: Backbone, sources: dict[str, torch.Tensor],
               splits, on_event: Event | None) -> tuple[torch.Tensor, str, dict]:
    """SPoT: a source prompt to start from — named, or the most similar to a briefly tuned prompt."""
    if init_from != "auto":
        record = run.registry.get("source", init_from)
        return payloads.load_prompt(run.registry, record, backbone), f"source:{record.ref}", {}
    if not sources:
        raise ConfigError("--init-from auto picks among the sources; give candidates with --sources a,b")
    probe = PromptMixture({task.name: vocab_prompt(backbone, run.config.prompt_length, run.config.seed)})
    brief = replace(run.config, max_steps=max(2, (run.config.max_steps or 40) // 4), eval_every=None)
    state = train(backbone, probe, {task.name: splits[task.name].train}, {task.name: []}, {task.name: task}, brief,
                  on_event=on_event).state["prompts.0"]
    similarity = {ref: float(torch.cosine_similarity(state.mean(0), prompt.mean(0), dim=0))
                  for ref, prompt in sources.items()}
    best = max(similarity, key=similarity.get)
    return sources[best].clone(), f"source:{best}", {"spot_similarity": similarity}


def train_target(ws: Workspace, task_names: Sequence[str], source_refs: Sequence[str], *, variant: str = "attempt",
                 init: str | None = None, init_from: str | None = None, attn_prior: str | None = None,
                 preset: str = "cpu", overrides: dict | None = None, recipe: str = DEFAULT_RECIPE,
                 on_event: Event | None = None, resume: bool = False, force: bool = False,
                 record_config: dict[str, dict] | None = None) -> tuple[list[PromptRecord], TrainResult]:
    """Train target prompt(s) (and G) over frozen sources; register G, then one target per task.

    A variant that mixes sources takes its start (``init`` None) and rates from ``recipe`` (see
    :data:`~attemptctl.method.variants.RECIPES`), under what ``overrides`` gives; PT and SPoT have their own
    starts and the preset's rate. ``record_config`` adds entries to each task's recorded config, by task
    name (a study's tag).
    """
    mixing = variant_of(variant).mixes_sources and variant in SELECTABLE
    if mixing:
        start, overrides = apply_recipe(recipe, overrides)
        init = init or start
    init = init or "auto"
    run = plan_run(ws, task_names, source_refs, variant, preset, overrides)
    if variant == "spot" and not init_from:
        raise ConfigError("variant 'spot' starts from a source prompt; give --init-from NAME or --init-from auto")
    if attn_prior and not variant_of(variant).has_attention:
        raise ConfigError(f"--attn-prior initialises G, which variant '{variant}' does not have")
    prior_ref = run.registry.get("attention", attn_prior).ref if attn_prior else None  # fail before the slow part
    splits = {t.name: load_splits(ws, t, run.config) for t in run.tasks}
    backbone = ws.load_backbone(run.backbone_spec)
    sources = {r.ref: payloads.load_prompt(run.registry, r, backbone) for r in run.sources}
    targets, inits, extra = {}, {}, {}
    for t in run.tasks:
        if variant == "spot":  # each task's own probe picks its source
            targets[t.name], inits[t.name], extra[t.name] = _spot_init(run, t, init_from, backbone, sources, splits,
                                                                       on_event)
        else:
            chosen = "vocab" if variant == "pt" and init == "auto" else init
            targets[t.name], inits[t.name], extra[t.name] = _initial_target(chosen, t, sources, backbone, run.config,
                                                                            splits[t.name].dev)
    chosen = variant_of(variant)
    attention = attention_module(run.registry, attn_prior, backbone, run.config) if chosen.has_attention else None
    mixture = PromptMixture(targets, sources=sources if chosen.mixes_sources else None, attention=attention,
                            variant=chosen.mixing)
    task_map = {t.name: t for t in run.tasks}
    if attention is not None and attn_prior is None:
        calibrate_attention(backbone, mixture, {n: s.train for n, s in splits.items()}, task_map, run.config)
    result = train_run(ws, backbone, mixture, splits, task_map, run.config, checkpoint=f"target-{'+'.join(task_map)}",
                       on_event=on_event, resume=resume, force=force, start={"init": inits, "attn_prior": prior_ref})
    if not result.main_process:
        return [], result  # under `accelerate launch` only the main process writes the registry
    config = {**run.config.to_dict(), "preset": preset, "recipe": recipe if mixing else None, "tasks": list(task_map),
              "attn_prior": attn_prior}
    records = register_trained(run, backbone, mixture, result, variant, config,
                        {t.name: {"init": inits[t.name], "data": splits[t.name].source, "rows": _rows(splits[t.name]),
                                  **extra.get(t.name, {}),
                                  **(record_config or {}).get(t.name, {})}
                         for t in run.tasks})
    return records, result


def _rows(splits) -> dict[str, int]:
    """The task's own rows in each split: a multi-task run's ``train_rows`` counts every task's."""
    return {"train": len(splits.train), "dev": len(splits.dev), "test": len(splits.test)}


def _new_source_set(registry: Registry, parent: PromptRecord, add: Sequence[str], remove: Sequence[str]) -> list[str]:
    current = {ref.split("@")[0]: ref for ref in parent.sources}
    for name in remove:
        if name.split("@")[0] not in current:
            raise ConfigError(f"target {parent.ref} does not mix '{name}'; it mixes {', '.join(parent.sources)}")
    kept = [ref for name, ref in current.items() if name not in {r.split("@")[0] for r in remove}]
    added = []
    for name in add:
        record = registry.get("source", name)
        if record.name in {r.split("@")[0] for r in kept}:
            raise ConfigError(f"target {parent.ref} already mixes {record.name}; remove it first to change its version")
        if record.m != parent.m:
            raise ConfigError(f"source {record.ref} has prompt length {record.m}, target {parent.ref} has {parent.m}")
        theirs, ours = labels_of(record), labels_of(parent)
        if theirs != ours:
            raise ConfigError(f"source {record.ref} answers in label format '{theirs}', target {parent.ref} in "
                              f"'{ours}'; add a source trained with --labels {ours}")
        added.append(record.ref)
    if not kept + added:
        raise ConfigError(f"removing {', '.join(remove)} would leave {parent.ref} with no source; keep at least one")
    return kept + added


def parent_target(registry: Registry, ref: str) -> PromptRecord:
    parent = registry.get("target", ref)
    if not variant_of(parent.variant).mixes_sources:
        raise ConfigError(f"target {parent.ref} is variant '{parent.variant}', which mixes no sources")
    return parent


def composed_mixture(registry: Registry, parent: PromptRecord, sources: Sequence[str], backbone) -> PromptMixture:
    """The parent's target prompt and G over another set of sources."""
    prompt = payloads.load_prompt(registry, parent, backbone)
    loaded = {ref: payloads.load_prompt(registry, registry.get("source", ref), backbone) for ref in sources}
    attention = (payloads.load_attention(registry, registry.get("attention", parent.attention), backbone)
                 if parent.attention else None)
    return PromptMixture({parent.name: prompt}, sources=loaded, attention=attention,
                         variant=variant_of(parent.variant).mixing)


def compose_target(ws: Workspace, ref: str, *, add: Sequence[str] = (), remove: Sequence[str] = (),
                   train_steps: int | None = None, on_event: Event | None = None) -> PromptRecord | None:
    """A new version of a target with sources added/removed; same prompt and G unless adapted."""
    if not add and not remove:
        raise ConfigError("nothing to compose; give --add NAME and/or --remove NAME")
    registry = ws.registry()
    parent = parent_target(registry, ref)
    sources = _new_source_set(registry, parent, add, remove)
    config = {**parent.config, "composed": {"parent": parent.ref, "add": list(add), "remove": list(remove)}}
    if not train_steps:
        # Nothing trains: the new version points at the very same prompt bytes and G.
        return registry.register(kind="target", name=parent.name, task=parent.task, backbone=parent.backbone,
                                 fingerprint=parent.fingerprint, d=parent.d, m=parent.m,
                                 payload=registry.load_payload(parent), sources=sources, attention=parent.attention,
                                 variant=parent.variant, parent=parent.ref, config=config, metrics={})
    backbone = ws.load_backbone(ws.backbone or parent.backbone)
    mixture = composed_mixture(registry, parent, sources, backbone)
    fields = {k: v for k, v in parent.config.items() if k in TrainConfig.__dataclass_fields__}
    train_config = replace(TrainConfig(**fields), max_steps=train_steps, warmup_steps=0, eval_every=train_steps)
    task = task_of(parent)
    splits = load_splits(ws, task, train_config)
    result = train_run(ws, backbone, mixture, {task.name: splits}, {task.name: task}, train_config, on_event=on_event)
    if not result.main_process:
        return None
    run = TargetRun(registry, [task], [], train_config, parent.backbone)
    [record] = register_trained(run, backbone, mixture, result, parent.variant, {**config, "train_steps": train_steps},
                         {}, parent=parent.ref)
    return record

"""Target training in every variant, the attention prior, and composing a target's sources.

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
from itertools import zip_longest
from dataclasses import dataclass, replace

import torch

from attemptctl import artifacts
from attemptctl.artifacts import attention_settings
from attemptctl import model as lm
from attemptctl.attention import CALIBRATION_ROWS, AttentionModule
from attemptctl.backbones import Backbone
from attemptctl.errors import ConfigError
from attemptctl.mixture import PromptMixture
from attemptctl.operations import checkpoint_plan, load_splits, training_metrics, vocab_prompt
from attemptctl.tasks import Task, get_task, labelled, labels_of
from attemptctl.train import Event, TrainConfig, TrainResult, make_config, train
from attemptctl.variants import RECORDED_VARIANTS
from attemptctl.workspace import Workspace
from registry import PromptRecord, Registry

VARIANTS = {name: RECORDED_VARIANTS[name] for name in ("attempt", "uniform", "no-target", "pt", "spot")}
MIXING = ("attempt", "uniform", "no-target")


@dataclass
class TargetRun:
    """Everything one target training needs, checked before the backbone is loaded."""

    registry: Registry
    tasks: list[Task]
    sources: list[PromptRecord]
    config: TrainConfig
    backbone_spec: str


def _source_names(records: Sequence[PromptRecord]) -> dict[str, str]:
    return {r.name: r.ref for r in records}


def _common_length(records: Sequence[PromptRecord], overrides: dict) -> dict:
    """Targets are summed with their sources, so they take the sources' prompt length."""
    lengths = {r.m for r in records}
    if len(lengths) > 1:
        raise ConfigError("sources have different prompt lengths (" + ", ".join(f"{r.ref}: {r.m}" for r in records)
                          + "); mix sources trained with one --prompt-length")
    if not lengths:
        return overrides
    m = lengths.pop()
    if overrides.get("prompt_length") not in (None, m):
        raise ConfigError(f"--prompt-length {overrides['prompt_length']} differs from the sources' length {m}; "
                          "a target prompt is summed with its sources, so leave it out")
    return {**overrides, "prompt_length": m}


def _common_labels(records: Sequence[PromptRecord], overrides: dict) -> dict:
    """Targets answer in their sources' label format: a source's knowledge of what to answer only
    carries over in the answer space it was trained in."""
    formats = {labels_of(r) for r in records}
    if len(formats) > 1:
        raise ConfigError("sources answer in different label formats (" + ", ".join(
            f"{r.ref}: {labels_of(r)}" for r in records) + "); mix sources trained with one --labels")
    if not formats:
        return overrides
    labels = formats.pop()
    if overrides.get("labels") not in (None, labels):
        raise ConfigError(f"--labels {overrides['labels']} differs from the sources' label format {labels}; "
                          "leave it out, or mix sources trained with --labels " + overrides["labels"])
    return {**overrides, "labels": labels}


def _plan(ws: Workspace, task_names: Sequence[str], source_refs: Sequence[str], variant: str, preset: str,
          overrides: dict | None) -> TargetRun:
    if variant not in VARIANTS:
        raise ConfigError(f"unknown variant '{variant}'; choose one of {', '.join(VARIANTS)}")
    tasks = [get_task(name) for name in task_names]
    if not tasks or len({t.name for t in tasks}) != len(tasks):
        raise ConfigError("give each target task once, e.g. `rte` or `rte,cb,boolq`")
    if variant in MIXING and not source_refs:
        raise ConfigError(f"variant '{variant}' mixes source prompts; give them with --sources a,b")
    if variant == "pt" and source_refs:
        raise ConfigError("variant 'pt' is plain prompt tuning and mixes no sources; leave out --sources")
    registry = ws.registry()
    sources = [registry.get("source", ref) for ref in source_refs]  # NotFoundError lists what exists
    if len({r.name for r in sources}) != len(sources):
        raise ConfigError("a source is listed twice; give each source once")
    config = make_config(preset, **_common_labels(sources, _common_length(sources, dict(overrides or {}))))
    tasks = [labelled(task, config.labels, config.label_words) for task in tasks]
    return TargetRun(registry, tasks, sources, config, ws.backbone_spec(registry))


def _initial_target(init: str, task: Task, sources: dict[str, torch.Tensor], backbone: Backbone, m: int,
                    seed: int) -> tuple[torch.Tensor, str]:
    """Target prompt initialisation; ``auto`` follows the paper (MNLI for classification, SQuAD for QA)."""
    by_name = {ref.split("@")[0]: ref for ref in sources}
    if init == "auto":
        preferred = "mnli" if task.is_classification else "squad"
        first = next(iter(by_name), None)
        init = f"source:{preferred}" if preferred in by_name else (f"source:{first}" if first else "vocab")
    if init == "vocab":
        return vocab_prompt(backbone, m, seed), init
    if init == "zeros":
        return torch.zeros(m, backbone.d), init
    if init.startswith("source:") and init[7:] in by_name:
        return sources[by_name[init[7:]]].clone(), f"source:{by_name[init[7:]]}"
    raise ConfigError(f"unknown --init '{init}'; use auto, vocab, zeros or source:NAME with NAME one of the sources "
                      f"({', '.join(by_name) or 'none given'})")


def _attention(registry: Registry, prior: str | None, backbone: Backbone, config: TrainConfig) -> AttentionModule:
    """A fresh G for this run's settings (calibrate it once the mixture exists), or the prior's, as it was trained."""
    if prior is None:
        torch.manual_seed(config.seed)
        return AttentionModule(backbone.d, temperature_k=config.attn_temperature, scale=config.attn_scale,
                               pooling=config.attn_pool)
    return artifacts.load_attention(registry, registry.get("attention", prior), backbone)


def calibrate_attention(backbone: Backbone, mixture: PromptMixture, train_rows: dict[str, Sequence], tasks: dict[str, Task],
                        config: TrainConfig) -> None:
    """Measure a fresh G's pooling statistics and divisor on the mixture's prompts and the first training
    inputs (up to CALIBRATION_ROWS, taken from every task in turn); only embedding lookups, no LM forward."""
    rows = [row for group in zip_longest(*train_rows.values()) for row in group if row is not None][:CALIBRATION_ROWS]
    items = [lm.encode(backbone, e.input, None, config.max_length or tasks[e.task].max_length) for e in rows]
    batch = lm.collate(backbone, items, [0] * len(items))
    with torch.no_grad():
        embeds = backbone.embed(batch.input_ids).float().cpu()
        prompts = torch.cat([mixture.source_prompts, torch.stack(list(mixture.prompts))]).detach().cpu()
        mixture.attention.calibrate(embeds, batch.input_mask.cpu(), prompts)


def _spot_init(run: TargetRun, task: Task, init_from: str, backbone: Backbone, sources: dict[str, torch.Tensor],
               splits, on_event: Event | None) -> tuple[torch.Tensor, str, dict]:
    """SPoT: a source prompt to start from — named, or the most similar to a briefly tuned prompt."""
    if init_from != "auto":
        record = run.registry.get("source", init_from)
        return artifacts.load_prompt(run.registry, record, backbone), f"source:{record.ref}", {}
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
                 init: str = "auto", init_from: str | None = None, attn_prior: str | None = None, preset: str = "cpu",
                 overrides: dict | None = None, on_event: Event | None = None, resume: bool = False,
                 force: bool = False, record_config: dict[str, dict] | None = None
                 ) -> tuple[list[PromptRecord], TrainResult]:
    """Train target prompt(s) (and G) over frozen sources; register G, then one target per task.

    ``record_config`` adds entries to each task's recorded config, by task name (a study's tag).
    """
    run = _plan(ws, task_names, source_refs, variant, preset, overrides)
    if variant == "spot" and not init_from:
        raise ConfigError("variant 'spot' starts from a source prompt; give --init-from NAME or --init-from auto")
    if attn_prior and variant not in ("attempt", "no-target"):
        raise ConfigError(f"--attn-prior initialises G, which variant '{variant}' does not have")
    if attn_prior:
        run.registry.get("attention", attn_prior)  # fail before the slow part
    splits = {t.name: load_splits(ws, t, run.config) for t in run.tasks}
    backbone = ws.load_backbone(run.backbone_spec)
    sources = {r.ref: artifacts.load_prompt(run.registry, r, backbone) for r in run.sources}
    targets, inits, extra = {}, {}, {}
    for t in run.tasks:
        if variant == "spot":  # each task's own probe picks its source
            targets[t.name], inits[t.name], extra[t.name] = _spot_init(run, t, init_from, backbone, sources, splits,
                                                                       on_event)
        else:
            chosen = "vocab" if variant == "pt" and init == "auto" else init
            targets[t.name], inits[t.name] = _initial_target(chosen, t, sources, backbone, run.config.prompt_length,
                                                             run.config.seed)
    mixing = VARIANTS[variant] != "prompt-tuning"
    attention = _attention(run.registry, attn_prior, backbone, run.config) if variant in ("attempt", "no-target") else None
    mixture = PromptMixture(targets, sources=sources if mixing else None, attention=attention, variant=VARIANTS[variant])
    task_map = {t.name: t for t in run.tasks}
    if attention is not None and attn_prior is None:
        calibrate_attention(backbone, mixture, {n: s.train for n, s in splits.items()}, task_map, run.config)
    result = train(backbone, mixture, {n: s.train for n, s in splits.items()}, {n: s.dev for n, s in splits.items()},
                   task_map, run.config, on_event=on_event,
                   checkpoint=checkpoint_plan(ws, f"target-{'+'.join(task_map)}", run.config, resume, force))
    if not result.main_process:
        return [], result  # under `accelerate launch` only the main process writes the registry
    config = {**run.config.to_dict(), "preset": preset, "tasks": list(task_map), "attn_prior": attn_prior}
    records = register_trained(run, backbone, mixture, result, variant, config,
                        {t.name: {"init": inits[t.name], "data": splits[t.name].source, "rows": _rows(splits[t.name]),
                                  **extra.get(t.name, {}),
                                  **(record_config or {}).get(t.name, {})}
                         for t in run.tasks})
    return records, result


def _rows(splits) -> dict[str, int]:
    """The task's own rows in each split: a multi-task run's ``train_rows`` counts every task's."""
    return {"train": len(splits.train), "dev": len(splits.dev), "test": len(splits.test)}


def register_trained(run: TargetRun, backbone: Backbone, mixture: PromptMixture, result: TrainResult, variant: str, config: dict,
              per_task: dict[str, dict], parent: str | None = None) -> list[PromptRecord]:
    """Register G (if any) and then one target per task, all from the best state of ``result``."""
    common = dict(backbone=run.backbone_spec, fingerprint=backbone.fingerprint, d=backbone.d)
    attention_ref = None
    if mixture.attention is not None:
        _load_trained_attention(mixture.attention, result.state)
        record = run.registry.register(kind="attention", name="+".join(mixture.tasks), task=",".join(mixture.tasks),
                                       m=0, payload=artifacts.attention_payload(mixture.attention), variant=variant,
                                       metrics=training_metrics(result), config={**config, **attention_settings(mixture.attention)},
                                       **common)
        attention_ref = record.ref
    registered = []
    for i, name in enumerate(mixture.tasks):
        registered.append(run.registry.register(
            kind="target", name=name, task=name, m=mixture.prompts[i].shape[0],
            payload=artifacts.prompt_payload(result.state[f"prompts.{i}"]), sources=tuple(mixture.source_refs),
            attention=attention_ref, variant=variant, parent=parent,
            metrics={**training_metrics(result), "dev": {name: result.dev.get(name, {})}},
            config={**config, **per_task.get(name, {})}, **common))
    return registered


def _load_trained_attention(attention: AttentionModule, state: dict[str, torch.Tensor]) -> None:
    """G's trained parameters from a run's best state; its calibration buffers stay as measured."""
    with torch.no_grad():
        for name, parameter in attention.named_parameters():
            parameter.copy_(state[f"attention.{name}"])


def pretrain_attention(ws: Workspace, source_refs: Sequence[str], *, name: str = "prior", preset: str = "cpu",
                       overrides: dict | None = None, on_event: Event | None = None, resume: bool = False,
                       force: bool = False) -> tuple[PromptRecord | None, TrainResult]:
    """The attention prior: train G on the source tasks (a fresh prompt per source) and register G alone."""
    if len(source_refs) < 2:
        raise ConfigError("the attention prior is learned across sources; give at least two with --sources a,b")
    registry = ws.registry()
    records = [registry.get("source", ref) for ref in source_refs]
    run = _plan(ws, [r.task for r in records], source_refs, "attempt", preset, overrides)
    splits = {t.name: load_splits(ws, t, run.config) for t in run.tasks}
    backbone = ws.load_backbone(run.backbone_spec)
    sources = {r.ref: artifacts.load_prompt(registry, r, backbone) for r in records}
    fresh = {t.name: vocab_prompt(backbone, run.config.prompt_length, run.config.seed + i) for i, t in enumerate(run.tasks)}
    mixture = PromptMixture(fresh, sources=sources, attention=_attention(registry, None, backbone, run.config),
                            variant="attempt")
    calibrate_attention(backbone, mixture, {n: s.train for n, s in splits.items()}, {t.name: t for t in run.tasks},
                        run.config)
    result = train(backbone, mixture, {n: s.train for n, s in splits.items()}, {n: s.dev for n, s in splits.items()},
                   {t.name: t for t in run.tasks}, run.config, on_event=on_event,
                   checkpoint=checkpoint_plan(ws, f"attention-{name}", run.config, resume, force))
    if not result.main_process:
        return None, result
    _load_trained_attention(mixture.attention, result.state)
    record = registry.register(kind="attention", name=name, task=",".join(mixture.tasks), backbone=run.backbone_spec,
                               fingerprint=backbone.fingerprint, d=backbone.d, m=0, variant="prior",
                               payload=artifacts.attention_payload(mixture.attention), metrics=training_metrics(result),
                               config={**run.config.to_dict(), "preset": preset, "sources": list(sources),
                                       **attention_settings(mixture.attention)})
    return record, result

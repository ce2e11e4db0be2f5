"""What the computing commands share: their rows, checkpoints and records, fresh prompts, G, and the
target-training plan and registration (``source train``, ``target train``, ``target compose`` and
``attn pretrain`` all go through it).

Order inside every library entry point: cheap checks first (task names, registry refs, data files), the
expensive backbone load after, the registry write last — so bad input fails in a second and a
failure never leaves a half-written prompt behind.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import zip_longest
from typing import Any

import torch

from attemptctl.engine.checkpoints import CheckpointPlan
from attemptctl.engine.train import Event, TrainConfig, TrainResult, make_config, train
from attemptctl.errors import ConfigError
from attemptctl.formatting import repeated
from attemptctl.method import lm
from attemptctl.method.attention import CALIBRATION_ROWS, AttentionModule
from attemptctl.method.backbones import Backbone
from attemptctl.method.mixture import PromptMixture
from attemptctl.method.prompts import SoftPrompt
from attemptctl.method.variants import SELECTABLE, variant_of
from attemptctl.tasks import Task, get_task, labelled, labels_of
from attemptctl.tasks.data import TaskSplits, load_task
from attemptctl.workflows import payloads
from attemptctl.workflows.payloads import attention_settings
from attemptctl.workflows.workspace import Workspace
from registry import PromptRecord, Registry


def load_splits(ws: Workspace, task: Task, config: TrainConfig) -> TaskSplits:
    """The task's train/dev/test rows as the training config limits them."""
    return load_task(task, data_dir=ws.data_dir, seed=config.seed, train_limit=config.train_limit,
                     dev_limit=config.dev_limit, test_limit=config.test_limit, shots=config.shots,
                     protocol=config.split_protocol)


def checkpoint_plan(ws: Workspace, run: str, config: TrainConfig, resume: bool, force: bool) -> CheckpointPlan:
    """Where run ``run`` (e.g. ``source-mnli``, ``target-rte+cb``) checkpoints, inside the registry folder."""
    path = ws.registry_path / "checkpoints" / f"{run}.safetensors"
    return CheckpointPlan(path=path, every=config.checkpoint_every, resume=resume, force=force)


def training_metrics(result: TrainResult) -> dict:
    """What a registered prompt records about its training run."""
    return {"dev": result.dev, "dev_examples": result.dev_examples, "best_step": result.best_step,
            "steps": result.steps, "train_rows": result.train_rows,
            "seconds": round(result.seconds, 2), "interrupted": result.interrupted,
            "max_new_tokens": result.max_new_tokens,
            # The dev curve (step, mean dev score, learning rate): whether more steps would have helped.
            "history": [{"step": h["step"], "score": h["score"], "lr": h.get("lr")} for h in result.history],
            **({"curve": result.curve} if result.curve else {})}


def vocab_prompt(backbone: Backbone, length: int, seed: int) -> torch.Tensor:
    """A fresh (m, d) prompt from ``length`` frequent-vocabulary embeddings, on the CPU.

    Every starting tensor of a mixture (these, source prompts read from the registry, zeros) is made on
    the CPU, and the mixture moves to the LM's device as a whole (``train``, ``evaluate``): a prompt made
    on the GPU beside sources on the CPU broke ``torch.cat`` on CUDA.
    """
    generator = torch.Generator().manual_seed(seed)
    embeddings = backbone.model.get_input_embeddings().weight.detach().to("cpu", torch.float32)
    return SoftPrompt.from_vocab(embeddings, length, generator=generator,
                                 special_ids=backbone.tokenizer.all_special_ids).weight.detach()






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


def plan_run(ws: Workspace, task_names: Sequence[str], source_refs: Sequence[str], variant: str, preset: str,
          overrides: dict | None) -> TargetRun:
    if variant not in SELECTABLE:
        raise ConfigError(f"unknown variant '{variant}'; choose one of {', '.join(SELECTABLE)}")
    tasks = [get_task(name) for name in task_names]
    if not tasks or len({t.name for t in tasks}) != len(tasks):
        raise ConfigError("give each target task once, e.g. `rte` or `rte,cb,boolq`")
    if variant_of(variant).mixes_sources and not source_refs:
        raise ConfigError(f"variant '{variant}' mixes source prompts; give them with --sources a,b")
    if variant == "pt" and source_refs:
        raise ConfigError("variant 'pt' is plain prompt tuning and mixes no sources; leave out --sources")
    registry = ws.registry()
    if source_refs and not registry.list(kind="source", latest_only=True):
        raise ConfigError(f"registry {registry.root} has no source prompts; pull the zoo's with `attemptctl source "
                          "pull` or train one with `attemptctl source train TASK`")
    sources = [registry.get("source", ref) for ref in source_refs]  # NotFoundError lists what exists
    twice = repeated(r.name for r in sources)
    if twice:
        raise ConfigError(f"source {', '.join(twice)} is listed twice; give each source once")
    config = make_config(preset, **_common_labels(sources, _common_length(sources, dict(overrides or {}))))
    tasks = [labelled(task, config.labels, config.label_words) for task in tasks]
    return TargetRun(registry, tasks, sources, config, ws.backbone_spec(registry))


def attention_module(registry: Registry, prior: str | None, backbone: Backbone, config: TrainConfig) -> AttentionModule:
    """A fresh G for this run's settings (calibrate it once the mixture exists), or the prior's, as it was trained."""
    if prior is None:
        torch.manual_seed(config.seed)
        return AttentionModule(backbone.d, temperature_k=config.attn_temperature, scale=config.attn_scale,
                               pooling=config.attn_pool, norm=config.attn_norm)
    return payloads.load_attention(registry, registry.get("attention", prior), backbone)


def calibrate_attention(backbone: Backbone, mixture: PromptMixture, train_rows: dict[str, Sequence], tasks: dict[str, Task],
                        config: TrainConfig) -> None:
    """Measure a fresh G's pooling statistics and divisor on the mixture's prompts and the first training
    inputs (up to CALIBRATION_ROWS, taken from every task in turn); only embedding lookups, no LM forward."""
    rows = [row for group in zip_longest(*train_rows.values()) for row in group if row is not None][:CALIBRATION_ROWS]
    items = [lm.encode(backbone, e.input, None, config.max_length or tasks[e.task].max_length, e.cut) for e in rows]
    batch = lm.collate(backbone, items, [0] * len(items))
    with torch.no_grad():
        embeds = backbone.embed(batch.input_ids).float().cpu()
        prompts = torch.cat([mixture.source_prompts, torch.stack(list(mixture.prompts))]).detach().cpu()
        mixture.attention.calibrate(embeds, batch.input_mask.cpu(), prompts)


def train_run(ws: Workspace, backbone: Backbone, mixture: PromptMixture, splits: Mapping[str, TaskSplits],
              tasks: Mapping[str, Task], config: TrainConfig, *, checkpoint: str | None = None, source: bool = False,
              on_event: Event | None = None, resume: bool = False, force: bool = False,
              start: Mapping[str, Any] | None = None) -> TrainResult:
    """The training step every computing command shares: each task's train rows, dev selection on its dev
    rows, and (``checkpoint``: the run's name, e.g. ``source-mnli``) a resumable checkpoint; ``start``: how
    the mixture was started, which a resumed checkpoint must match."""
    plan = checkpoint_plan(ws, checkpoint, config, resume, force) if checkpoint else None
    curve = {n: s.test for n, s in splits.items()} if config.curve_steps else None
    return train(backbone, mixture, {n: s.train for n, s in splits.items()}, {n: s.dev for n, s in splits.items()},
                 tasks, config, source=source, on_event=on_event, checkpoint=plan, curve_rows=curve, start=start)


def register_attention(registry: Registry, backbone: Backbone, spec: str, attention: AttentionModule, result: TrainResult,
                       *, name: str, task: str, variant: str, config: dict) -> PromptRecord:
    """Register G from a run's best state (a target run's, or the attention prior's), with how it scores."""
    load_trained_attention(attention, result.state)
    return registry.register(kind="attention", name=name, task=task, backbone=spec, fingerprint=backbone.fingerprint,
                             d=backbone.d, m=0, variant=variant, payload=payloads.attention_payload(attention),
                             metrics=training_metrics(result), config={**config, **attention_settings(attention)})


def register_trained(run: TargetRun, backbone: Backbone, mixture: PromptMixture, result: TrainResult, variant: str, config: dict,
              per_task: dict[str, dict], parent: str | None = None) -> list[PromptRecord]:
    """Register G (if any) and then one target per task, all from the best state of ``result``."""
    common = dict(backbone=run.backbone_spec, fingerprint=backbone.fingerprint, d=backbone.d)
    attention_ref = None
    if mixture.attention is not None:
        attention_ref = register_attention(run.registry, backbone, run.backbone_spec, mixture.attention, result,
                                           name="+".join(mixture.tasks), task=",".join(mixture.tasks), variant=variant,
                                           config=config).ref
    registered = []
    for i, name in enumerate(mixture.tasks):
        registered.append(run.registry.register(
            kind="target", name=name, task=name, m=mixture.prompts[i].shape[0],
            payload=payloads.prompt_payload(result.state[f"prompts.{i}"]), sources=tuple(mixture.source_refs),
            attention=attention_ref, variant=variant, parent=parent,
            metrics={**training_metrics(result), "dev": {name: result.dev.get(name, {})},
                     "dev_examples": {name: result.dev_examples[name]} if name in result.dev_examples else {}},
            config={**config, **per_task.get(name, {})}, **common))
    return registered


def load_trained_attention(attention: AttentionModule, state: dict[str, torch.Tensor]) -> None:
    """G's trained parameters from a run's best state; its calibration buffers stay as measured."""
    with torch.no_grad():
        for name, parameter in attention.named_parameters():
            parameter.copy_(state[f"attention.{name}"])

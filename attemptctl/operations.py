"""What each command does, as plain library functions the CLI calls (one per command).

Order inside every function: cheap checks first (task names, registry refs, data files), the
expensive backbone load after, the registry write last — so bad input fails in a second and a
failure never leaves a half-written prompt behind.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from attemptctl import artifacts
from attemptctl.attention import AttentionModule
from attemptctl.backbones import DEFAULT_BACKBONE, Backbone, load_backbone
from attemptctl.data import TaskSplits, load_task
from attemptctl.errors import ConfigError
from attemptctl.mixture import PromptMixture
from attemptctl.prompts import SoftPrompt
from attemptctl.tasks import Task, get_task
from attemptctl.train import Event, TrainResult, make_config, train
from registry import PromptRecord, Registry

REGISTRY_ENV = "ATTEMPTCTL_REGISTRY"
TARGET_VARIANTS = ("attempt", "uniform", "no-target", "prompt-tuning")


def default_registry_path() -> Path:
    """``$ATTEMPTCTL_REGISTRY``, else ``$XDG_DATA_HOME/attemptctl/registry`` (``~/.local/share/…``)."""
    if os.environ.get(REGISTRY_ENV):
        return Path(os.environ[REGISTRY_ENV])
    data_home = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data_home) / "attemptctl" / "registry"


@dataclass(frozen=True)
class Workspace:
    """Where prompts live, where data comes from and which backbone the user asked for (if any)."""

    registry_path: Path
    data_dir: Path | None = None
    backbone: str | None = None

    def registry(self) -> Registry:
        return Registry(self.registry_path)

    def backbone_spec(self, registry: Registry) -> str:
        """The explicit backbone, else the one the registry's prompts use, else the default."""
        return self.backbone or registry.default_backbone() or DEFAULT_BACKBONE


def _load_splits(ws: Workspace, task: Task, seed: int, config) -> TaskSplits:
    return load_task(task, data_dir=ws.data_dir, seed=seed, train_limit=config.train_limit,
                     dev_limit=config.dev_limit, test_limit=config.test_limit)


def _metrics(result: TrainResult) -> dict:
    return {"dev": result.dev, "best_step": result.best_step, "steps": result.steps,
            "seconds": round(result.seconds, 2), "interrupted": result.interrupted}


def vocab_prompt(backbone: Backbone, length: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    embeddings = backbone.model.get_input_embeddings().weight.detach()
    return SoftPrompt.from_vocab(embeddings, length, generator=generator,
                                 special_ids=backbone.tokenizer.all_special_ids).weight.detach()


def train_source(ws: Workspace, task_name: str, *, preset: str = "cpu", overrides: dict | None = None,
                 on_event: Event | None = None) -> tuple[PromptRecord, TrainResult]:
    """Prompt-tune a source prompt on ``task_name`` and register it as the next source version."""
    task = get_task(task_name)
    config = make_config(preset, **(overrides or {}))
    registry = ws.registry()
    spec = ws.backbone_spec(registry)
    splits = _load_splits(ws, task, config.seed, config)
    backbone = load_backbone(spec)
    mixture = PromptMixture({task.name: vocab_prompt(backbone, config.prompt_length, config.seed)})
    result = train(backbone, mixture, {task.name: splits.train}, {task.name: splits.dev}, {task.name: task},
                   config, source=True, on_event=on_event)
    record = registry.register(
        kind="source", name=task.name, task=task.name, backbone=spec, fingerprint=backbone.fingerprint,
        d=backbone.d, m=config.prompt_length, payload=artifacts.prompt_payload(result.state["prompts.0"]),
        variant="prompt-tuning", config={**config.to_dict(), "preset": preset, "data": splits.source},
        metrics=_metrics(result),
    )
    return record, result


def _initial_target(init: str, task: Task, sources: dict[str, torch.Tensor], backbone: Backbone, m: int,
                    seed: int) -> tuple[torch.Tensor, str]:
    """Target prompt initialisation; ``auto`` follows the paper (MNLI for classification, SQuAD for QA)."""
    by_name = {ref.split("@")[0]: ref for ref in sources}
    if init == "auto":
        preferred = "mnli" if task.is_classification else "squad"
        if preferred in by_name:
            init = f"source:{preferred}"
        elif sources:
            init = f"source:{next(iter(sources)).split('@')[0]}"
        else:
            init = "vocab"
    if init == "vocab":
        return vocab_prompt(backbone, m, seed), init
    if init == "zeros":
        return torch.zeros(m, backbone.d), init
    if init.startswith("source:") and init[7:] in by_name:
        return sources[by_name[init[7:]]].clone(), init
    raise ConfigError(f"unknown --init '{init}'; use auto, vocab, zeros or source:NAME with NAME one of the sources "
                      f"({', '.join(by_name) or 'none given'})")


def train_target(ws: Workspace, task_names: Sequence[str], source_refs: Sequence[str], *, variant: str = "attempt",
                 init: str = "auto", preset: str = "cpu", overrides: dict | None = None,
                 on_event: Event | None = None) -> tuple[list[PromptRecord], TrainResult]:
    """Train target prompt(s) and G over frozen source prompts; register G, then one target per task."""
    if variant not in TARGET_VARIANTS:
        raise ConfigError(f"unknown variant '{variant}'; choose one of {', '.join(TARGET_VARIANTS)}")
    tasks = [get_task(name) for name in task_names]
    if len({t.name for t in tasks}) != len(tasks):
        raise ConfigError("a task is listed twice; give each target task once")
    if variant != "prompt-tuning" and not source_refs:
        raise ConfigError(f"variant '{variant}' mixes source prompts; give them with --sources a,b")
    registry = ws.registry()
    records = [registry.get("source", ref) for ref in source_refs]  # NotFoundError lists what exists
    if variant == "prompt-tuning":
        records = []
    lengths = {r.m for r in records}
    if len(lengths) > 1:
        raise ConfigError("sources have different prompt lengths (" + ", ".join(f"{r.ref}: {r.m}" for r in records)
                          + "); mix sources trained with one --prompt-length")
    overrides = dict(overrides or {})
    if lengths:
        m = lengths.pop()
        if overrides.get("prompt_length") not in (None, m):
            raise ConfigError(f"--prompt-length {overrides['prompt_length']} differs from the sources' length {m}; "
                              "a target prompt is summed with its sources, so leave it out")
        overrides["prompt_length"] = m
    config = make_config(preset, **overrides)
    spec = ws.backbone_spec(registry)
    splits = {t.name: _load_splits(ws, t, config.seed, config) for t in tasks}
    backbone = load_backbone(spec)
    sources = {r.ref: artifacts.load_prompt(registry, r, backbone) for r in records}
    targets, inits = {}, {}
    for t in tasks:
        targets[t.name], inits[t.name] = _initial_target(init, t, sources, backbone, config.prompt_length, config.seed)
    torch.manual_seed(config.seed)
    attention = AttentionModule(backbone.d) if variant in ("attempt", "no-target") else None
    mixture = PromptMixture(targets, sources=sources, attention=attention, variant=variant)
    task_map = {t.name: t for t in tasks}
    result = train(backbone, mixture, {n: s.train for n, s in splits.items()}, {n: s.dev for n, s in splits.items()},
                   task_map, config, on_event=on_event)
    common = dict(backbone=spec, fingerprint=backbone.fingerprint, d=backbone.d,
                  config={**config.to_dict(), "preset": preset, "temperature_k": 1.0})
    attention_ref = None
    if attention is not None:
        attention.load_state_dict({k[len("attention."):]: v for k, v in result.state.items() if k.startswith("attention.")})
        attention_record = registry.register(kind="attention", name="+".join(task_map), task=",".join(task_map), m=0,
                                             payload=artifacts.attention_payload(attention), variant=variant,
                                             metrics=_metrics(result), **common)
        attention_ref = attention_record.ref
    registered = []
    for i, t in enumerate(tasks):
        metrics = {**_metrics(result), "dev": {t.name: result.dev.get(t.name, {})}}
        registered.append(registry.register(
            kind="target", name=t.name, task=t.name, m=config.prompt_length,
            payload=artifacts.prompt_payload(result.state[f"prompts.{i}"]), sources=tuple(sources),
            attention=attention_ref, variant=variant, metrics=metrics,
            **{**common, "config": {**common["config"], "init": inits[t.name], "data": splits[t.name].source,
                                    "tasks": list(task_map)}},
        ))
    return registered, result

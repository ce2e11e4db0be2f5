"""Modularity: change the sources a trained target mixes (``target compose``).

G's parameters do not depend on the number of sources, so a removed source simply leaves the
softmax and an added one enters it; the target prompt and G stay as they are. Optionally a few
steps adapt P_target and G to the new set.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from attemptctl import artifacts
from attemptctl.errors import ConfigError
from attemptctl.mixture import PromptMixture
from attemptctl.operations import load_splits
from attemptctl.targets import MIXING, TargetRun, register_trained
from attemptctl.tasks import labels_of, task_of
from attemptctl.train import Event, TrainConfig, train
from attemptctl.variants import RECORDED_VARIANTS
from attemptctl.workspace import Workspace
from registry import PromptRecord, Registry


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


def _parent(registry: Registry, ref: str) -> PromptRecord:
    parent = registry.get("target", ref)
    if parent.variant not in MIXING:
        raise ConfigError(f"target {parent.ref} is variant '{parent.variant}', which mixes no sources")
    return parent


def _mixture(registry: Registry, parent: PromptRecord, sources: Sequence[str], backbone) -> PromptMixture:
    """The parent's target prompt and G over another set of sources."""
    prompt = artifacts.load_prompt(registry, parent, backbone)
    loaded = {ref: artifacts.load_prompt(registry, registry.get("source", ref), backbone) for ref in sources}
    attention = (artifacts.load_attention(registry, registry.get("attention", parent.attention), backbone)
                 if parent.attention else None)
    return PromptMixture({parent.name: prompt}, sources=loaded, attention=attention,
                         variant=RECORDED_VARIANTS[parent.variant])


def compose_target(ws: Workspace, ref: str, *, add: Sequence[str] = (), remove: Sequence[str] = (),
                   train_steps: int | None = None, on_event: Event | None = None) -> PromptRecord | None:
    """A new version of a target with sources added/removed; same prompt and G unless adapted."""
    if not add and not remove:
        raise ConfigError("nothing to compose; give --add NAME and/or --remove NAME")
    registry = ws.registry()
    parent = _parent(registry, ref)
    sources = _new_source_set(registry, parent, add, remove)
    config = {**parent.config, "composed": {"parent": parent.ref, "add": list(add), "remove": list(remove)}}
    if not train_steps:
        # Nothing trains: the new version points at the very same prompt bytes and G.
        return registry.register(kind="target", name=parent.name, task=parent.task, backbone=parent.backbone,
                                 fingerprint=parent.fingerprint, d=parent.d, m=parent.m,
                                 payload=registry.load_payload(parent), sources=sources, attention=parent.attention,
                                 variant=parent.variant, parent=parent.ref, config=config, metrics={})
    backbone = ws.load_backbone(ws.backbone or parent.backbone)
    mixture = _mixture(registry, parent, sources, backbone)
    fields = {k: v for k, v in parent.config.items() if k in TrainConfig.__dataclass_fields__}
    train_config = replace(TrainConfig(**fields), max_steps=train_steps, warmup_steps=0, eval_every=train_steps)
    task = task_of(parent)
    splits = load_splits(ws, task, train_config)
    result = train(backbone, mixture, {task.name: splits.train}, {task.name: splits.dev}, {task.name: task},
                   train_config, on_event=on_event)
    if not result.main_process:
        return None
    run = TargetRun(registry, [task], [], train_config, parent.backbone)
    [record] = register_trained(run, backbone, mixture, result, parent.variant, {**config, "train_steps": train_steps},
                         {}, parent=parent.ref)
    return record

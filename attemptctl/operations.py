"""The workspace every command runs in, and source-prompt training.

Target training, the attention prior and composition live in :mod:`attemptctl.targets`;
evaluation and attention reports in :mod:`attemptctl.reports`.

Order inside every library entry point: cheap checks first (task names, registry refs, data files), the
expensive backbone load after, the registry write last — so bad input fails in a second and a
failure never leaves a half-written prompt behind.
"""

from __future__ import annotations

import torch

from attemptctl import artifacts
from attemptctl.backbones import Backbone
from attemptctl.checkpoints import CheckpointPlan
from attemptctl.data import TaskSplits, load_task
from attemptctl.mixture import PromptMixture
from attemptctl.prompts import SoftPrompt
from attemptctl.tasks import Task, get_task, labelled
from attemptctl.train import Event, TrainConfig, TrainResult, make_config, train
from attemptctl.workspace import Workspace
from registry import PromptRecord


def load_splits(ws: Workspace, task: Task, config: TrainConfig) -> TaskSplits:
    """The task's train/dev/test rows as the training config limits them."""
    return load_task(task, data_dir=ws.data_dir, seed=config.seed, train_limit=config.train_limit,
                     dev_limit=config.dev_limit, test_limit=config.test_limit, shots=config.shots)


def checkpoint_plan(ws: Workspace, run: str, config: TrainConfig, resume: bool, force: bool) -> CheckpointPlan:
    """Where run ``run`` (e.g. ``source-mnli``, ``target-rte+cb``) checkpoints, inside the registry folder."""
    path = ws.registry_path / "checkpoints" / f"{run}.safetensors"
    return CheckpointPlan(path=path, every=config.checkpoint_every, resume=resume, force=force)


def training_metrics(result: TrainResult) -> dict:
    """What a registered prompt records about its training run."""
    return {"dev": result.dev, "best_step": result.best_step, "steps": result.steps, "train_rows": result.train_rows,
            "seconds": round(result.seconds, 2), "interrupted": result.interrupted,
            "max_new_tokens": result.max_new_tokens,
            # The dev curve (step, mean dev score, learning rate): whether more steps would have helped.
            "history": [{"step": h["step"], "score": h["score"], "lr": h.get("lr")} for h in result.history]}


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


def train_source(ws: Workspace, task_name: str, *, preset: str = "cpu", overrides: dict | None = None,
                 on_event: Event | None = None, resume: bool = False,
                 force: bool = False) -> tuple[PromptRecord | None, TrainResult]:
    """Prompt-tune a source prompt on ``task_name`` and register it as the next source version."""
    config = make_config(preset, **(overrides or {}))
    task = labelled(get_task(task_name), config.labels, config.label_words)
    registry = ws.registry()
    spec = ws.backbone_spec(registry)
    splits = load_splits(ws, task, config)
    backbone = ws.load_backbone(spec)
    mixture = PromptMixture({task.name: vocab_prompt(backbone, config.prompt_length, config.seed)})
    result = train(backbone, mixture, {task.name: splits.train}, {task.name: splits.dev}, {task.name: task},
                   config, source=True, on_event=on_event,
                   checkpoint=checkpoint_plan(ws, f"source-{task.name}", config, resume, force))
    if not result.main_process:
        return None, result  # under `accelerate launch` only the main process writes the registry
    record = registry.register(
        kind="source", name=task.name, task=task.name, backbone=spec, fingerprint=backbone.fingerprint,
        d=backbone.d, m=config.prompt_length, payload=artifacts.prompt_payload(result.state["prompts.0"]),
        variant="prompt-tuning", config={**config.to_dict(), "preset": preset, "data": splits.source},
        metrics=training_metrics(result),
    )
    return record, result

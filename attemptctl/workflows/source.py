"""`source train`: prompt-tune a source prompt and register it."""

from __future__ import annotations

from attemptctl.engine.train import Event, TrainResult, make_config
from attemptctl.method.mixture import PromptMixture
from attemptctl.tasks import get_task, labelled
from attemptctl.workflows import payloads
from attemptctl.workflows.runs import load_splits, train_run, training_metrics, vocab_prompt
from attemptctl.workflows.workspace import Workspace
from registry import PromptRecord


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
    result = train_run(ws, backbone, mixture, {task.name: splits}, {task.name: task}, config, source=True,
                       checkpoint=f"source-{task.name}", on_event=on_event, resume=resume, force=force)
    if not result.main_process:
        return None, result  # under `accelerate launch` only the main process writes the registry
    record = registry.register(
        kind="source", name=task.name, task=task.name, backbone=spec, fingerprint=backbone.fingerprint,
        d=backbone.d, m=config.prompt_length, payload=payloads.prompt_payload(result.state["prompts.0"]),
        variant="prompt-tuning", config={**config.to_dict(), "preset": preset, "data": splits.source},
        metrics=training_metrics(result),
    )
    return record, result

"""Where a command works: the registry, the data and the backbone the user asked for.

Torch-free on purpose: commands that only read the registry (``registry list``, a cached
``attn show``) must answer without importing torch.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from attemptctl.errors import AttemptError
from attemptctl.method.backbones import DEFAULT_BACKBONE
from attemptctl.method.runtime import Runtime
from attemptctl.tasks import CONFIG_BEFORE, Example, Task, task_of
from attemptctl.tasks.data import load_task
from registry import PromptRecord, Registry

REGISTRY_ENV = "ATTEMPTCTL_REGISTRY"
SPLITS = ("dev", "test")
"""The splits a registered prompt is scored on (train is what it learned from)."""


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
    runtime: Runtime = field(default_factory=Runtime)
    """Device, precision and evaluation batch size of every model this workspace loads."""
    existing: bool = False
    """A command that reads the registry (``eval``, ``attn show``, ``registry list`` …): refuse a path that holds
    none instead of creating one there, so a mistyped ``--registry`` is an error, not an empty registry."""
    _loaded: dict = field(default_factory=dict, compare=False, repr=False)

    def registry(self) -> Registry:
        return Registry(self.registry_path, create=not self.existing)

    def load_backbone(self, spec: str):
        """The frozen LM ``spec`` on this workspace's runtime, loaded once: a study cell trains, scores test
        and reads attention with the same model (it is frozen; nothing it holds changes). Only the last
        backbone is kept, so a workspace never holds two models."""
        if spec not in self._loaded:
            from attemptctl.method.backbones import load_backbone

            self._loaded.clear()
            self._loaded[spec] = load_backbone(spec, runtime=self.runtime)
        return self._loaded[spec]

    def backbone_spec(self, registry: Registry) -> str:
        """The explicit backbone, else the one the registry's prompts use, else the default."""
        return self.backbone or registry.default_backbone() or DEFAULT_BACKBONE


def select_records(registry: Registry, refs: Sequence[str] | None, kinds: Sequence[str] = ("target", "source")
                   ) -> list[PromptRecord]:
    """The prompts named by ``refs`` (targets first), or every latest target when none is named."""
    if refs:
        return list(dict.fromkeys(registry.find(ref, kinds=tuple(kinds)) for ref in refs))
    records = registry.list(kind="target", latest_only=True)
    if not records:
        raise AttemptError(f"registry {registry.root} has no target prompts; train one with "
                           "`attemptctl target train TASK --sources a,b`")
    return records


def split_examples(ws: Workspace, record: PromptRecord, split: str, limit: int | None) -> tuple[Task, list[Example]]:
    """A prompt's dev or test examples as its training saw them: same seed, split protocol and default limit."""
    task = task_of(record)
    seed = int(record.config.get("seed", 42))
    limit = limit or record.config.get(f"{split}_limit")
    protocol = record.config.get("split_protocol", CONFIG_BEFORE["split_protocol"])
    splits = load_task(task, data_dir=ws.data_dir, seed=seed, dev_limit=limit, test_limit=limit, train_limit=1,
                       protocol=protocol)
    return task, (splits.dev if split == "dev" else splits.test)

"""Training checkpoints: everything needed to continue an interrupted run to the same result.

A checkpoint is one safetensors file holding the trainable state, the optimizer's moment tensors,
the torch RNG state and the best state so far; the step, the data position, the scheduler and what
the run was (config, data and backbone identity) go in its metadata. It is written atomically
(temp file, fsync, rename), so a kill -9 leaves either the previous checkpoint or the new one.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from attemptctl.errors import AttemptError, ConfigError


@dataclass
class Checkpoint:
    """A training run's position and state."""

    step: int
    epoch: int
    batches_done: int                 # batches of ``epoch`` already trained
    trainable: dict[str, torch.Tensor]
    optimizer: dict
    scheduler: dict
    rng: torch.Tensor
    identity: dict[str, str]
    best_state: dict[str, torch.Tensor] | None = None
    best: dict = field(default_factory=dict)  # score, dev, step, history
    seconds: float = 0.0                  # training seconds spent before this checkpoint, over every resume
    buffers: dict[str, torch.Tensor] = field(default_factory=dict)
    """The mixture's persistent buffers (G's calibration: input mean and std, score scale), so that a resumed run
    divides G's logits as the run it continues did; none in checkpoints from before they were kept."""


@dataclass(frozen=True)
class CheckpointPlan:
    """Where a run checkpoints, how often, and whether it starts from an existing checkpoint."""

    path: Path
    every: int | None = None
    resume: bool = False
    force: bool = False


def save(path: Path, checkpoint: Checkpoint) -> None:
    tensors = {f"trainable.{k}": v.detach().cpu().contiguous() for k, v in checkpoint.trainable.items()}
    tensors["rng.torch"] = checkpoint.rng
    for k, v in checkpoint.buffers.items():
        tensors[f"buffer.{k}"] = v.detach().cpu().contiguous()
    for k, v in (checkpoint.best_state or {}).items():
        tensors[f"best.{k}"] = v.detach().cpu().contiguous()
    for index, state in checkpoint.optimizer["state"].items():
        for key, value in state.items():
            tensors[f"optimizer.{index}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    meta = {"step": checkpoint.step, "epoch": checkpoint.epoch, "batches_done": checkpoint.batches_done,
            "param_groups": checkpoint.optimizer["param_groups"], "scheduler": checkpoint.scheduler,
            "identity": checkpoint.identity, "best": checkpoint.best, "seconds": checkpoint.seconds}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}-", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, temp, metadata={"checkpoint": json.dumps(meta, default=float)})
        with open(temp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temp, path)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)


def load(path: Path) -> Checkpoint:
    try:
        tensors = load_file(path)
        from safetensors import safe_open

        with safe_open(path, "pt") as handle:
            meta = json.loads(handle.metadata()["checkpoint"])
    except (SafetensorError, OSError, KeyError, ValueError) as exc:
        raise AttemptError(f"checkpoint {path} is unreadable ({exc}); delete it to start over") from exc
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        if name.startswith("optimizer."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = value
    return Checkpoint(
        step=meta["step"], epoch=meta["epoch"], batches_done=meta["batches_done"],
        trainable={k[len("trainable."):]: v for k, v in tensors.items() if k.startswith("trainable.")},
        optimizer={"state": state, "param_groups": meta["param_groups"]}, scheduler=meta["scheduler"],
        rng=tensors["rng.torch"], identity=meta["identity"], best=meta["best"],
        best_state={k[len("best."):]: v for k, v in tensors.items() if k.startswith("best.")} or None,
        seconds=float(meta.get("seconds", 0.0)),  # checkpoints from before it was kept: unknown, 0
        buffers={k[len("buffer."):]: v for k, v in tensors.items() if k.startswith("buffer.")},
    )


def adopt(carried: Path, path: Path) -> bool:
    """Put ``carried`` (a checkpoint another machine wrote and a checkout carried over) at ``path``, where a
    resumed run reads it, unless a run of this machine already checkpoints there; True when it was put.
    The copy goes through a temp file and a rename, so a kill leaves no half-written checkpoint."""
    if path.exists() or not carried.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, staging = tempfile.mkstemp(prefix=f".{path.name}-", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "wb") as handle:
        handle.write(carried.read_bytes())
    os.replace(staging, path)
    return True


#: Identity keys that older checkpoints do not have: such a checkpoint resumes without that check.
OPTIONAL = ("start", "processes")


def check_identity(path: Path, stored: dict[str, str], current: dict[str, str], force: bool) -> None:
    """Refuse to resume a run whose configuration, data or backbone changed, naming what changed."""
    from attemptctl.tasks import CONFIG_BEFORE

    changed = [key for key in current if stored.get(key) != current[key] and (key in stored or key not in OPTIONAL)]
    if "config" in changed and "config" in stored:  # a checkpoint from before a config field existed
        old, new = json.loads(stored["config"]), json.loads(current["config"])
        if {**CONFIG_BEFORE, **old} == new:
            changed.remove("config")
    if changed and not force:
        detail = changed[0]
        if detail == "config":
            old, new = json.loads(stored["config"]), json.loads(current["config"])
            fields = [k for k in dict.fromkeys([*new, *old]) if old.get(k, CONFIG_BEFORE.get(k)) != new.get(k, CONFIG_BEFORE.get(k))]
            fields = fields or [k for k in dict.fromkeys([*new, *old]) if (k in old) != (k in new)]  # only present or absent
            detail = "config field " + ", ".join(f"{k} ({old.get(k)!r} -> {new.get(k)!r})" for k in fields)
        elif detail == "mixture":
            detail = f"prompt mixture ({stored.get('mixture')} -> {current['mixture']})"
        elif detail == "start":
            detail = f"start (target prompt's init, attention prior: {stored.get('start')} -> {current['start']})"
        elif detail == "processes":
            detail = f"number of processes ({stored.get('processes')} -> {current['processes']})"
        raise ConfigError(f"checkpoint {path} belongs to another run: {detail} changed; "
                          "resume with the same options, add --force, or drop --resume to start over")

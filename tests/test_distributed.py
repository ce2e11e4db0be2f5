"""Several training processes (torchrun with Accelerate's CPU backend, as `accelerate launch`
uses on GPUs): they train in step and only the main one registers."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from registry import Registry

pytestmark = pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun is not on PATH")


def _launch(tmp_path, real_data_dir, tiny_causal_dir, *options):
    command = ["torchrun", "--nproc_per_node", "2", "-m", "attemptctl.cli", "source", "train", "rte",
               "--registry", str(tmp_path / "registry"), "--data-dir", str(real_data_dir),
               "--backbone", str(tiny_causal_dir), "--prompt-length", "4", "--batch-size", "4", *options]
    env = {**os.environ, "ACCELERATE_USE_CPU": "1"}  # two CPU processes over gloo
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)


def test_two_processes_train_together_and_register_once(tmp_path, real_data_dir, tiny_causal_dir):
    done = _launch(tmp_path, real_data_dir, tiny_causal_dir, "--max-steps", "4", "--train-limit", "32",
                   "--dev-limit", "8", "--eval-every", "2")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("registered source rte@1") == 1
    [record] = Registry(tmp_path / "registry").list(kind="source")
    assert record.metrics["steps"] == 4 and not (tmp_path / "registry" / "checkpoints" / "source-rte.safetensors").exists()


def test_fewer_batches_than_processes_is_a_clear_error(tmp_path, real_data_dir, tiny_causal_dir):
    """One batch cannot feed two processes: this also shows that two processes really ran."""
    done = _launch(tmp_path, real_data_dir, tiny_causal_dir, "--max-steps", "2", "--train-limit", "4",
                   "--dev-limit", "4")
    assert done.returncode != 0
    assert "1 batch(es) for 2 processes" in done.stdout + done.stderr
    assert not Registry(tmp_path / "registry").list()


def _schedule(lr: float, warmup: int, total: int) -> list[float]:
    """The single-process schedule: the rate each of the ``total`` steps trains with."""
    import torch
    from transformers import get_linear_schedule_with_warmup

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    scheduler = get_linear_schedule_with_warmup(optimizer, warmup, total)
    rates = []
    for _ in range(total):
        rates.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    return rates


def test_two_processes_follow_the_single_process_learning_rate_schedule(tmp_path, real_data_dir, tiny_causal_dir):
    """A prepared scheduler would step once per process: warm-up over at half its length, 0 halfway."""
    done = _launch(tmp_path, real_data_dir, tiny_causal_dir, "--max-steps", "6", "--train-limit", "48",
                   "--dev-limit", "4", "--eval-every", "1", "--warmup-steps", "2", "--lr", "0.3")
    assert done.returncode == 0, done.stdout + done.stderr
    [record] = Registry(tmp_path / "registry").list(kind="source")
    seen = [h["lr"] for h in record.metrics["history"]]
    assert [h["step"] for h in record.metrics["history"]] == [1, 2, 3, 4, 5, 6]
    assert seen == pytest.approx(_schedule(0.3, 2, 6), abs=1e-9)

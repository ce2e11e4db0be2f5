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

"""`accelerate launch` with two CPU processes: they train in step and only the main one registers."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from registry import Registry


@pytest.mark.skipif(shutil.which("accelerate") is None, reason="the accelerate launcher is not on PATH")
def test_two_processes_train_together_and_register_once(tmp_path, real_data_dir, tiny_causal_dir):
    command = ["accelerate", "launch", "--cpu", "--num_processes", "2", "--num_machines", "1",
               "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "attemptctl.cli",
               "source", "train", "rte", "--registry", str(tmp_path / "registry"), "--data-dir", str(real_data_dir),
               "--backbone", str(tiny_causal_dir), "--max-steps", "4", "--train-limit", "32", "--dev-limit", "8",
               "--batch-size", "4", "--prompt-length", "4", "--eval-every", "2"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env={**os.environ})
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("registered source rte@1") == 1
    [record] = Registry(tmp_path / "registry").list(kind="source")
    assert record.metrics["steps"] == 4 and not (tmp_path / "registry" / "checkpoints" / "source-rte.safetensors").exists()

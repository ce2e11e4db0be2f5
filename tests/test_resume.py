"""Checkpoints and --resume: an interrupted run continues to exactly the result of a straight run."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file, save_file

from attemptctl.engine import checkpoints
from attemptctl.engine.checkpoints import CheckpointPlan
from attemptctl.engine.train import TrainConfig, train
from attemptctl.errors import ConfigError
from attemptctl.method.backbones import load_backbone
from attemptctl.method.mixture import PromptMixture
from attemptctl.tasks import Example, get_task
from registry import Registry

ROWS = [Example("rte", f"rte sentence1: row {i} is here. sentence2: row {i % 3}.", ("entailment", "not_entailment")[i % 2],
                i % 2) for i in range(12)]
CONFIG = TrainConfig(prompt_length=3, max_length=24, batch_size=4, lr=0.3, warmup_steps=1, max_steps=8, eval_every=3)


def _digest(state: dict[str, torch.Tensor]) -> str:
    return hashlib.sha256(b"".join(state[k].numpy().tobytes() for k in sorted(state))).hexdigest()


def _run(backbone, plan: CheckpointPlan | None, config=CONFIG, stop_at: int | None = None, dev=ROWS[:4]):
    torch.manual_seed(0)
    mixture = PromptMixture({"rte": torch.randn(3, backbone.d)})

    def stop(event, **data):
        if stop_at is not None and event == "step" and data["step"] == stop_at:
            os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C, in the middle of the step's bookkeeping

    task = {"rte": get_task("rte")}
    return train(backbone, mixture, {"rte": ROWS}, {"rte": dev}, task, config, on_event=stop, checkpoint=plan)


@pytest.fixture(scope="module")
def backbone(tiny_causal_dir):
    return load_backbone(str(tiny_causal_dir))


@pytest.fixture(scope="module")
def straight(backbone):
    result = _run(backbone, None)
    return _digest(result.state), result


@pytest.mark.parametrize("stop_at", [1, 3, 5])
def test_interrupt_and_resume_gives_the_straight_result(backbone, straight, tmp_path, stop_at):
    plan = CheckpointPlan(tmp_path / "run.safetensors")
    first = _run(backbone, plan, stop_at=stop_at)
    assert first.interrupted and first.steps == stop_at and plan.path.exists()
    spent = checkpoints.load(plan.path).seconds  # the first segment's training time goes with the run
    assert 0 < spent <= first.seconds
    resumed = _run(backbone, CheckpointPlan(plan.path, resume=True))
    assert not resumed.interrupted and resumed.steps == CONFIG.max_steps
    assert resumed.seconds > spent  # both segments, not only the last one
    assert _digest(resumed.state) == straight[0]
    assert resumed.best_step == straight[1].best_step and resumed.dev == straight[1].dev
    assert not plan.path.exists()  # a finished run removes its checkpoint


def test_negative_control_a_lost_optimizer_state_changes_the_result(backbone, tmp_path):
    """Without dev rows the result is the last step's state, so every step counts."""
    latest = _digest(_run(backbone, None, dev=[]).state)
    plan = CheckpointPlan(tmp_path / "run.safetensors")
    _run(backbone, plan, stop_at=3, dev=[])
    intact = plan.path.read_bytes()
    assert _digest(_run(backbone, CheckpointPlan(plan.path, resume=True), dev=[]).state) == latest
    plan.path.write_bytes(intact)
    tensors = load_file(plan.path)
    from safetensors import safe_open

    with safe_open(plan.path, "pt") as handle:
        metadata = handle.metadata()
    damaged = {k: (torch.zeros_like(v) if k.startswith("optimizer.") and "exp_avg" in k else v) for k, v in tensors.items()}
    save_file(damaged, plan.path, metadata=metadata)
    resumed = _run(backbone, CheckpointPlan(plan.path, resume=True), dev=[])
    assert _digest(resumed.state) != latest


def test_resume_with_changed_options_is_refused_naming_the_field(backbone, tmp_path):
    plan = CheckpointPlan(tmp_path / "run.safetensors")
    _run(backbone, plan, stop_at=2)
    changed = TrainConfig(**{**CONFIG.to_dict(), "lr": 0.1})
    with pytest.raises(ConfigError, match=r"config field lr \(0.3 -> 0.1\)"):
        _run(backbone, CheckpointPlan(plan.path, resume=True), config=changed)
    forced = _run(backbone, CheckpointPlan(plan.path, resume=True, force=True), config=changed)
    assert forced.steps == CONFIG.max_steps
    with pytest.raises(ConfigError, match="nothing to resume"):
        _run(backbone, CheckpointPlan(tmp_path / "none.safetensors", resume=True))


def _attempt_run(backbone, plan, stop_at=None, calibration=1.0, start=None):
    """ATTEMPT over two random sources; ``calibration`` sets G's buffers as a calibration on other rows would."""
    from attemptctl.method.attention import AttentionModule

    torch.manual_seed(0)
    sources = {"a@1": torch.randn(3, backbone.d), "b@1": torch.randn(3, backbone.d)}
    attention = AttentionModule(backbone.d, rank=4)
    with torch.no_grad():
        attention.input_mean.fill_(0.1 * calibration)
        attention.input_std.fill_(calibration)
        attention.score_scale.fill_(2.0 * calibration)
    mixture = PromptMixture({"rte": torch.zeros(3, backbone.d)}, sources=sources, attention=attention, variant="attempt")

    def stop(event, **data):
        if stop_at is not None and event == "step" and data["step"] == stop_at:
            os.kill(os.getpid(), signal.SIGINT)

    return train(backbone, mixture, {"rte": ROWS}, {"rte": ROWS[:4]}, {"rte": get_task("rte")}, CONFIG, on_event=stop,
                 checkpoint=plan, start=start or {"init": {"rte": "zeros"}, "attn_prior": None})


def test_a_resumed_run_keeps_g_s_calibration_from_its_checkpoint(backbone, tmp_path):
    """G's buffers (input mean, std, score scale) are calibrated before training, from the rows and the start: a
    resumed run takes them from the checkpoint, so a recalibration that came out otherwise cannot change the run."""
    straight = _digest(_attempt_run(backbone, None).state)
    assert _digest(_attempt_run(backbone, None, calibration=3.0).state) != straight  # the buffers matter
    plan = CheckpointPlan(tmp_path / "run.safetensors")
    assert _attempt_run(backbone, plan, stop_at=3).interrupted
    assert set(checkpoints.load(plan.path).buffers) == {"attention.input_mean", "attention.input_std",
                                                        "attention.score_scale"}
    resumed = _attempt_run(backbone, CheckpointPlan(plan.path, resume=True), calibration=3.0)
    assert resumed.steps == CONFIG.max_steps and _digest(resumed.state) == straight


def test_resume_with_another_start_is_refused_and_older_checkpoints_still_resume(backbone, tmp_path):
    plan = CheckpointPlan(tmp_path / "run.safetensors")
    _attempt_run(backbone, plan, stop_at=2)
    other = {"init": {"rte": "auto"}, "attn_prior": None}
    with pytest.raises(ConfigError, match=r"start \(target prompt's init, attention prior: .*zeros.* -> .*auto"):
        _attempt_run(backbone, CheckpointPlan(plan.path, resume=True), start=other)
    saved = checkpoints.load(plan.path)  # as written before the start and the processes were recorded
    saved.identity = {k: v for k, v in saved.identity.items() if k not in ("start", "processes")}
    checkpoints.save(plan.path, saved)
    assert _attempt_run(backbone, CheckpointPlan(plan.path, resume=True), start=other).steps == CONFIG.max_steps


def _cli(args, env, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "attemptctl.cli", *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kwargs)


def test_kill_9_then_resume_registers_the_straight_result(tmp_path, real_data_dir, tiny_causal_dir):
    env = {**os.environ, "ATTEMPTCTL_REGISTRY": str(tmp_path / "registry")}
    options = ["--data-dir", real_data_dir, "--backbone", tiny_causal_dir, "--prompt-length", "3",
               "--max-length", "32", "--batch-size", "4", "--train-limit", "24", "--dev-limit", "4",
               "--max-steps", "8", "--eval-every", "4", "--checkpoint-every", "1"]
    straight = _cli(["source", "train", "rte", *options], env)
    assert straight.wait(timeout=300) == 0, straight.stdout.read().decode()
    checkpoint = tmp_path / "registry" / "checkpoints" / "source-rte.safetensors"
    killed = _cli(["source", "train", "rte", *options], env)
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=30)
    assert checkpoint.exists(), "the run should have checkpointed before the kill"
    resumed = _cli(["source", "train", "rte", *options, "--resume"], env)
    output = resumed.communicate(timeout=300)[0].decode()
    assert resumed.returncode == 0, output
    versions = Registry(tmp_path / "registry").list(kind="source", name="rte")
    assert [v.version for v in versions] == [1, 2]
    assert versions[1].sha256 == versions[0].sha256


def test_sigterm_checkpoints_registers_the_best_so_far_and_exits_130(tmp_path, real_data_dir, tiny_causal_dir):
    env = {**os.environ, "ATTEMPTCTL_REGISTRY": str(tmp_path / "registry")}
    options = ["--data-dir", real_data_dir, "--backbone", tiny_causal_dir, "--prompt-length", "3", "--max-length", "32",
               "--batch-size", "4", "--train-limit", "24", "--dev-limit", "4", "--max-steps", "400", "--eval-every", "2"]
    stopped = _cli(["source", "train", "rte", *options], env)
    checkpoint = tmp_path / "registry" / "checkpoints" / "source-rte.safetensors"
    deadline = time.monotonic() + 120
    while not checkpoint.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    stopped.send_signal(signal.SIGTERM)
    output = stopped.communicate(timeout=120)[0].decode()
    assert stopped.returncode == 130, output
    assert "interrupted" in output and "--resume" in output
    [record] = Registry(tmp_path / "registry").list(kind="source")
    assert record.metrics["interrupted"] is True and 0 < record.metrics["steps"] < 400
    assert checkpoint.exists()

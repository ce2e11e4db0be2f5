"""Regression tests for bugs found in review."""

from __future__ import annotations

import os
import signal

import pytest
import torch
from typer.testing import CliRunner

from attemptctl.engine.checkpoints import CheckpointPlan
from attemptctl.engine.train import TrainConfig, train
from attemptctl.errors import ConfigError
from attemptctl.method.attention import AttentionModule
from attemptctl.method.backbones import load_backbone
from attemptctl.method.mixture import PromptMixture
from attemptctl.tasks import Example, get_task
from registry import Registry

runner = CliRunner()
ROWS = [Example("rte", f"rte sentence1: row {i} is here. sentence2: row {i % 3}.", ("entailment", "not_entailment")[i % 2],
                i % 2) for i in range(12)]
CONFIG = TrainConfig(prompt_length=3, max_length=24, batch_size=4, lr=0.3, warmup_steps=1, max_steps=6, eval_every=3)


def _cli(*args):
    from attemptctl.cli import app

    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def backbone(tiny_causal_dir):
    return load_backbone(str(tiny_causal_dir))


def _mixture(backbone, variant: str, sources: dict[str, torch.Tensor]) -> PromptMixture:
    torch.manual_seed(0)
    attention = AttentionModule(backbone.d) if variant == "attempt" else None
    return PromptMixture({"rte": torch.randn(3, backbone.d)}, sources=sources or None, attention=attention,
                         variant=variant)


def _run(backbone, mixture, plan, stop_at=None):
    def stop(event, **data):
        if stop_at is not None and event == "step" and data["step"] == stop_at:
            os.kill(os.getpid(), signal.SIGINT)

    return train(backbone, mixture, {"rte": ROWS}, {"rte": ROWS[:4]}, {"rte": get_task("rte")}, CONFIG,
                 on_event=stop, checkpoint=plan)


def test_resume_refuses_a_checkpoint_of_another_source_set(backbone, tmp_path):
    """`target train rte --sources mnli` interrupted, then `--sources qqp --resume`: not the same run."""
    torch.manual_seed(1)
    mnli, qqp = torch.randn(3, backbone.d), torch.randn(3, backbone.d)
    plan = CheckpointPlan(tmp_path / "run.safetensors")
    assert _run(backbone, _mixture(backbone, "attempt", {"mnli@1": mnli}), plan, stop_at=2).interrupted
    with pytest.raises(ConfigError, match="resume with the same options"):
        _run(backbone, _mixture(backbone, "attempt", {"qqp@1": qqp}), CheckpointPlan(plan.path, resume=True))


def test_resume_refuses_a_checkpoint_of_another_variant(backbone, tmp_path):
    """A plain prompt-tuning checkpoint resumed as ATTEMPT must be a clear error, not a KeyError (exit 70)."""
    plan = CheckpointPlan(tmp_path / "run.safetensors")
    assert _run(backbone, _mixture(backbone, "prompt-tuning", {}), plan, stop_at=2).interrupted
    torch.manual_seed(1)
    sources = {"mnli@1": torch.randn(3, backbone.d)}
    with pytest.raises(ConfigError):
        _run(backbone, _mixture(backbone, "attempt", sources), CheckpointPlan(plan.path, resume=True))
    with pytest.raises(ConfigError):  # --force cannot make the saved state fit another mixture either
        _run(backbone, _mixture(backbone, "attempt", sources), CheckpointPlan(plan.path, resume=True, force=True))


SMALL = ["--max-steps", "2", "--train-limit", "12", "--dev-limit", "6", "--test-limit", "6", "--batch-size", "4",
         "--max-length", "40", "--eval-every", "2", "--prompt-length", "4"]


@pytest.fixture(scope="module")
def two_sources(tmp_path_factory, real_data_dir, tiny_causal_dir):
    registry = tmp_path_factory.mktemp("review") / "registry"
    common = ["--registry", registry, "--data-dir", real_data_dir]
    for i, task in enumerate(("mnli", "qqp")):
        extra = ["--backbone", tiny_causal_dir] if i == 0 else []
        result = _cli("source", "train", task, *common, *extra, *SMALL)
        assert result.exit_code == 0, result.output
    return registry, common


def test_spot_auto_picks_each_tasks_source_from_its_own_probe(two_sources):
    """Multi-task SPoT with --init-from auto: each task's probe trains on that task, not on the first one."""
    path, common = two_sources
    result = _cli("target", "train", "rte,cb", "--variant", "spot", "--init-from", "auto", "--sources", "mnli,qqp",
                  *common, *SMALL[:-2])
    assert result.exit_code == 0, result.output
    registry = Registry(path)
    rte, cb = registry.get("target", "rte"), registry.get("target", "cb")
    assert rte.config["spot_similarity"] != cb.config["spot_similarity"]


def test_predict_file_that_is_not_utf8_is_a_user_error(two_sources, tmp_path):
    path, common = two_sources
    bad = tmp_path / "inputs.jsonl"
    bad.write_bytes('{"premise": "caf\u00e9", "hypothesis": "x"}\n'.encode("latin-1"))
    result = _cli("predict", "mnli", "--file", bad, "--registry", path)
    assert result.exit_code == 1, result.output
    assert "internal error" not in result.output


def test_data_file_that_is_not_utf8_is_a_data_error(tmp_path):
    from attemptctl.errors import DataError
    from attemptctl.tasks.data import load_task

    folder = tmp_path / "glue" / "rte"
    folder.mkdir(parents=True)
    for split in ("train", "validation"):
        (folder / f"{split}.jsonl").write_bytes('{"sentence1": "caf\u00e9", "sentence2": "x", "label": 0}\n'.encode("latin-1"))
    with pytest.raises(DataError, match="train.jsonl"):
        load_task(get_task("rte"), data_dir=tmp_path)

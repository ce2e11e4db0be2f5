"""`target train --init best-source` (issue 28): the target prompt starts from the source that, untrained and
alone, scores best on the target's dev rows. Real SmolLM2, the zoo's real prompts, real Yelp rows: of MNLI,
QQP and SST-2, only SST-2's prompt answers positive/negative reviews, so it must be the one picked."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from attemptctl.cli import app


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def started(tmp_path_factory, real_data_dir, smollm2_dir):
    registry = tmp_path_factory.mktemp("best-source") / "registry"
    common = ["--registry", registry, "--data-dir", real_data_dir]
    assert run("source", "pull", "--registry", registry).exit_code == 0
    # lr 0: the registered target prompt is exactly where it started
    result = run("target", "train", "yelp", "--sources", "mnli,qqp,sst2", *common, "--init", "best-source",
                 "--lr", "0", "--attn-lr", "0", "--max-steps", "1", "--batch-size", "2", "--warmup-steps", "0",
                 "--train-limit", "4", "--dev-limit", "24", "--test-limit", "4")
    assert result.exit_code == 0, result.output
    return registry, real_data_dir


def test_best_source_starts_from_the_source_that_answers_the_target(started):
    from attemptctl.workflows import payloads
    from attemptctl.workflows.workspace import Workspace

    registry_path, data_dir = started
    ws = Workspace(registry_path, data_dir)
    record = ws.registry().get("target", "yelp")
    scores = record.config["init_scores"]
    assert set(scores) == {"mnli@1", "qqp@1", "sst2@1"}
    assert record.config["init"] == "source:sst2@1" == f"source:{max(scores, key=scores.get)}"
    assert scores["sst2@1"] > max(scores["mnli@1"], scores["qqp@1"]) + 0.2
    backbone = ws.load_backbone(record.backbone)
    target = payloads.load_prompt(ws.registry(), record, backbone)
    source = payloads.load_prompt(ws.registry(), ws.registry().get("source", "sst2"), backbone)
    assert torch.equal(target, source)


def test_best_source_without_sources_is_one_line_naming_the_fix(tmp_path, real_data_dir, smollm2_dir):
    result = run("target", "train", "yelp", "--registry", tmp_path / "r", "--data-dir", real_data_dir,
                 "--init", "best-source", "--max-steps", "1")
    assert result.exit_code != 0
    assert "--sources" in result.output


def test_an_unknown_init_names_every_choice(tmp_path, real_data_dir, smollm2_dir):
    assert run("source", "pull", "--registry", tmp_path / "r").exit_code == 0
    result = run("target", "train", "yelp", "--sources", "sst2", "--registry", tmp_path / "r", "--data-dir",
                 real_data_dir, "--init", "biggest", "--max-steps", "1")
    assert result.exit_code != 0
    assert "unknown --init 'biggest'" in result.output and "best-source" in result.output

"""`--eval-start`: dev is scored before the first step too, so a target started from a source prompt
keeps that start when training only spoils it. A tiny random Llama, real rows, the real CLI and
registry: the start is in the dev curve, the kept state is the best of the curve, start included,
and a run without the option behaves as before."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from attemptctl.cli import app
from attemptctl.engine.checkpoints import check_identity
from attemptctl.engine.train import make_config
from attemptctl.errors import ConfigError
from registry import Registry

runner = CliRunner()
TINY = ["--max-steps", "2", "--train-limit", "8", "--dev-limit", "6", "--test-limit", "6", "--batch-size", "4",
        "--max-length", "32", "--eval-every", "2", "--prompt-length", "4"]


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def registry(tmp_path_factory, real_data_dir, tiny_causal_dir):
    path = tmp_path_factory.mktemp("eval-start") / "registry"
    common = ["--registry", path, "--data-dir", real_data_dir]
    result = run("source", "train", "mnli", *common, "--backbone", tiny_causal_dir, *TINY)
    assert result.exit_code == 0, result.output
    return path, common


def test_the_start_is_scored_and_kept_when_nothing_beats_it(registry):
    path, common = registry
    # lr 0: every trained state scores what the start scores, so only the start can be the strict best.
    result = run("target", "train", "rte", "--variant", "spot", "--init-from", "mnli", "--eval-start", "--lr", "0",
                 "--attn-lr", "0", *common, *TINY)
    assert result.exit_code == 0, result.output
    store = Registry(path)
    record = store.get("target", "rte")
    steps = [h["step"] for h in record.metrics["history"]]
    assert steps == [0, 2] and record.metrics["best_step"] == 0 and record.config["eval_start"] is True
    assert record.metrics["history"][0]["score"] == record.metrics["history"][1]["score"]
    # Without the option the same run keeps its last state, as before the option existed.
    result = run("target", "train", "rte", "--variant", "spot", "--init-from", "mnli", "--lr", "0", "--attn-lr", "0",
                 *common, *TINY)
    assert result.exit_code == 0, result.output
    plain = Registry(path).get("target", "rte")
    assert [h["step"] for h in plain.metrics["history"]] == [2] and plain.metrics["best_step"] == 2
    assert plain.config["eval_start"] is False


def test_the_kept_state_is_the_best_of_the_curve_start_included(registry):
    path, common = registry
    result = run("target", "train", "rte", "--sources", "mnli", "--eval-start", "--lr", "30", *common, *TINY,
                 "--max-steps", "4")
    assert result.exit_code == 0, result.output
    record = Registry(path).get("target", "rte")
    history = record.metrics["history"]
    assert [h["step"] for h in history] == [0, 2, 4]
    best = max(history, key=lambda h: h["score"])  # the first of equal scores, as training keeps it
    assert record.metrics["best_step"] == best["step"]


def test_a_checkpoint_from_before_the_option_resumes_without_it(tmp_path):
    config = make_config("cpu").to_dict()
    before = {k: v for k, v in config.items() if k != "eval_start"}
    stored = {"config": json.dumps(before, sort_keys=True), "data": "d"}
    check_identity(tmp_path / "c.safetensors", stored, {"config": json.dumps(config, sort_keys=True), "data": "d"}, False)
    asked = json.dumps({**config, "eval_start": True}, sort_keys=True)
    with pytest.raises(ConfigError, match=r"eval_start \(None -> True\)"):
        check_identity(tmp_path / "c.safetensors", stored, {"config": asked, "data": "d"}, False)


def test_a_study_starts_its_mixing_targets_where_asked_and_keeps_one_start(registry, tmp_path):
    import shutil

    path, common = registry
    copy = tmp_path / "registry"
    shutil.copytree(path, copy)
    common = ["--registry", copy, *common[2:]]
    study = ["study", "methods", "rte", "--methods", "pt,attempt", "--sources", "mnli", "--name", "zeros", *common, *TINY]
    result = run(*study, "--seeds", "1", "--target-init", "zeros")
    assert result.exit_code == 0, result.output
    records = {r.config["study"]["method"]: r for r in Registry(copy).list(kind="target") if "study" in r.config}
    assert records["attempt"].config["init"] == "zeros" and records["attempt"].config["study"]["target_init"] == "zeros"
    assert records["pt"].config["init"] == "vocab" and "target_init" not in records["pt"].config["study"]
    before = len(Registry(copy).list())
    for extra, message in ((["--seeds", "2", "--target-init", "auto"], f"started {records['attempt'].ref}'s target prompt at zeros, this run asks auto"),
                           (["--seeds", "2", "--target-init", "source:qqp"], "unknown --target-init 'source:qqp'")):
        result = run(*study, *extra)
        assert result.exit_code == 1 and message in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1
    assert len(Registry(copy).list()) == before


def test_a_checkpoint_from_before_split_protocol_and_curve_steps_resumes_and_a_change_is_named(tmp_path):
    config = make_config("cpu").to_dict()
    before = {k: v for k, v in config.items() if k not in ("split_protocol", "curve_steps")}
    stored = {"config": json.dumps(before, sort_keys=True), "data": "d"}
    check_identity(tmp_path / "c.safetensors", stored, {"config": json.dumps(config, sort_keys=True), "data": "d"}, False)
    asked = json.dumps({**config, "split_protocol": "heldout"}, sort_keys=True)
    with pytest.raises(ConfigError, match=r"config field split_protocol \(None -> 'heldout'\) changed"):
        check_identity(tmp_path / "c.safetensors", stored, {"config": asked, "data": "d"}, False)

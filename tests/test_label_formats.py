"""`--labels index`: label tasks answering with their Hugging Face label index (ATTEMPT's released
code), one answer space for every task. Real data, the real SmolLM2 tokenizer, a tiny random Llama
through the real CLI: what a prompt is trained to answer is recorded, targets and studies take their
sources' format, and a mix of formats is refused with one line."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from attemptctl.cli import app
from attemptctl.errors import ConfigError
from attemptctl.tasks import get_task, labelled
from attemptctl.tasks.data import load_task
from attemptctl.workflows.workspace import Workspace, split_examples
from registry import Registry

runner = CliRunner()
TINY = ["--max-steps", "2", "--train-limit", "8", "--dev-limit", "6", "--test-limit", "6", "--batch-size", "4",
        "--max-length", "32", "--eval-every", "2"]


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_index_labels_are_the_label_ids_as_digits_on_real_rows(real_data_dir):
    for name in ("mnli", "rte", "cb", "mrpc"):
        task = get_task(name)
        index = labelled(task, "index")
        assert index.labels == tuple(str(i) for i in range(len(task.labels))) and index.name == task.name
        rows = load_task(index, data_dir=real_data_dir, seed=1, train_limit=40, test_limit=20)
        words = load_task(task, data_dir=real_data_dir, seed=1, train_limit=40, test_limit=20)
        assert len({e.target for e in rows.train}) > 1  # real rows of more than one class
        for digit, word in zip(rows.train + rows.test, words.train + words.test):
            # Same row, same label: the digit is the index of the word in T5's label list.
            assert digit.input == word.input and digit.label == word.label
            assert digit.target == str(task.labels.index(word.target))
    squad = get_task("squad")
    assert labelled(squad, "index") is squad and labelled(get_task("rte"), "words") is get_task("rte")
    with pytest.raises(ConfigError, match="unknown labels 'digits'"):
        labelled(get_task("rte"), "digits")


@pytest.fixture(scope="module")
def index_sources(tmp_path_factory, real_data_dir, tiny_causal_dir):
    """A registry with an index-format MNLI source and a word-format QQP source (m = 4)."""
    path = tmp_path_factory.mktemp("labels") / "registry"
    common = ["--registry", path, "--data-dir", real_data_dir]
    result = run("source", "train", "mnli", "--labels", "index", *common, "--backbone", tiny_causal_dir, *TINY,
                 "--prompt-length", "4")
    assert result.exit_code == 0, result.output
    result = run("source", "train", "qqp", *common, *TINY, "--prompt-length", "4")
    assert result.exit_code == 0, result.output
    return path, common


def test_a_source_records_its_format_and_is_scored_in_it(index_sources, real_data_dir):
    path, common = index_sources
    registry = Registry(path)
    assert registry.get("source", "mnli").config["labels"] == "index"
    assert registry.get("source", "qqp").config["labels"] == "words"
    task, examples = split_examples(Workspace(path, real_data_dir), registry.get("source", "mnli"), "test", None)
    assert task.labels == ("0", "1", "2") and {e.target for e in examples} <= {"0", "1", "2"}
    result = run("eval", "mnli", "--split", "test", *common, "--json")
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.output)
    assert row["examples"] == len(examples) and 0 <= row["metrics"]["accuracy"] <= 1


def test_a_target_takes_its_sources_format_and_refuses_another(index_sources):
    path, common = index_sources
    result = run("target", "train", "rte", "--sources", "mnli", *common, *TINY)
    assert result.exit_code == 0, result.output
    assert Registry(path).get("target", "rte").config["labels"] == "index"
    before = len(Registry(path).list())
    for extra, names in ((["--sources", "mnli", "--labels", "words"], "--labels words"),
                         (["--sources", "mnli,qqp"], "mnli@1: index, qqp@1: words")):
        result = run("target", "train", "cb", *extra, *common, *TINY)
        assert result.exit_code == 1 and names in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1
    result = run("target", "compose", "rte", "--add", "qqp", *common)
    assert result.exit_code == 1 and "label format 'words'" in result.output and "--labels index" in result.output
    assert len(Registry(path).list()) == before  # nothing was written by the refused commands


def test_a_study_scores_every_method_in_its_sources_format(index_sources, tmp_path):
    path, common = index_sources
    copy = tmp_path / "registry"
    shutil.copytree(path, copy)
    common = ["--registry", copy, *common[2:]]
    result = run("study", "methods", "rte", "--methods", "pt,attempt", "--sources", "mnli", "--seeds", "1",
                 "--name", "digits", *common, *TINY)
    assert result.exit_code == 0, result.output
    shown = run("study", "show", "digits", "--registry", copy, "--json")
    assert shown.exit_code == 0, shown.output
    table = json.loads(shown.output)
    assert {(c["method"], c["budget"]["labels"]) for c in table["cells"]} == {("pt", "index"), ("attempt", "index")}
    assert not table["budget_issues"]
    result = run("study", "methods", "rte", "--methods", "pt", "--sources", "qqp", "--seeds", "1", "--name", "digits",
                 *common, *TINY)
    assert result.exit_code == 1 and "labels" in result.output, result.output


def test_a_checkpoint_from_before_label_formats_resumes_as_words(tmp_path):
    from attemptctl.engine.checkpoints import check_identity
    from attemptctl.engine.train import make_config

    config = make_config("cpu").to_dict()
    before = {k: v for k, v in config.items() if k != "labels"}
    stored = {"config": json.dumps(before, sort_keys=True), "data": "d"}
    check_identity(tmp_path / "c.safetensors", stored, {"config": json.dumps(config, sort_keys=True), "data": "d"}, False)
    index = json.dumps({**config, "labels": "index"}, sort_keys=True)
    with pytest.raises(ConfigError, match=r"labels \(None -> 'index'\)"):
        check_identity(tmp_path / "c.safetensors", stored, {"config": index, "data": "d"}, False)

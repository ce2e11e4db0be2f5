"""`--label-words`: a target answering in a source task's label words (RTE as MNLI's `entailment` /
`neutral`), so the source prompt's answers keep their meaning on the target. Real data, the real
SmolLM2 tokenizer, a tiny random Llama through the real CLI: the words are borrowed by a rule that
keeps shared words, recorded on the target, used wherever it is scored, and compared by a study."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from attemptctl.cli import app
from attemptctl.engine.train import make_config
from attemptctl.errors import AttemptError, ConfigError
from attemptctl.tasks import borrow_words, borrowed_from, get_task, labelled, parse_label_words
from attemptctl.tasks.data import load_task
from attemptctl.workflows.workspace import Workspace, split_examples
from registry import Registry

runner = CliRunner()
TINY = ["--max-steps", "2", "--train-limit", "8", "--dev-limit", "6", "--test-limit", "6", "--batch-size", "4",
        "--max-length", "32", "--eval-every", "2"]


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_shared_words_keep_their_label_and_the_rest_pair_by_index():
    rte, mnli, mrpc, qqp, cb = (get_task(n) for n in ("rte", "mnli", "mrpc", "qqp", "cb"))
    assert borrow_words(rte, mnli).labels == ("entailment", "neutral")
    assert borrow_words(mrpc, qqp).labels == ("not_duplicate", "duplicate")
    # CB's words are MNLI's in another index order: by word, not by index (by index would swap two).
    assert borrow_words(cb, mnli).labels == cb.labels and cb.labels != mnli.labels
    with pytest.raises(ConfigError, match="cb cannot answer in rte's label words: it has 3 labels and rte 2"):
        borrow_words(cb, rte)
    with pytest.raises(ConfigError, match="squad free-form answers"):
        borrow_words(rte, get_task("squad"))
    squad = get_task("squad")
    assert labelled(squad, "words", "mnli") is squad and labelled(rte, "words", "cb=mnli") is rte


def test_borrowed_words_label_the_same_real_rows(real_data_dir):
    rte = get_task("rte")
    borrowed = labelled(rte, "words", "rte=mnli")
    words = load_task(rte, data_dir=real_data_dir, seed=1, train_limit=40, test_limit=20)
    rows = load_task(borrowed, data_dir=real_data_dir, seed=1, train_limit=40, test_limit=20)
    assert len({e.label for e in rows.train}) == 2
    for mine, theirs in zip(words.train + words.test, rows.train + rows.test, strict=True):
        assert (mine.input, mine.label) == (theirs.input, theirs.label)
        assert theirs.target == ("entailment", "neutral")[mine.label]


def test_the_option_has_one_spelling_and_refuses_what_it_cannot_read():
    assert parse_label_words(" rte=mnli, mrpc=qqp ") == parse_label_words("mrpc=qqp,rte=mnli") == "mrpc=qqp,rte=mnli"
    assert parse_label_words("") is None and parse_label_words(None) is None
    assert borrowed_from("mrpc=qqp,mnli", "mrpc") == "qqp" and borrowed_from("mrpc=qqp,mnli", "rte") == "mnli"
    assert borrowed_from("mrpc=qqp", "rte") is None
    for value, message in (("rte=", "malformed --label-words item 'rte='"), ("=mnli", "malformed"),
                           ("mnli,qqp", "at most one bare SOURCE"), ("rte=mnli,rte=qqp", "names rte twice")):
        with pytest.raises(ConfigError, match=message):
            parse_label_words(value)
    with pytest.raises(AttemptError, match="unknown task 'mnlii'"):
        parse_label_words("rte=mnlii")
    assert make_config("cpu", label_words="rte=mnli").label_words == "rte=mnli"
    with pytest.raises(ConfigError, match="labels 'index' answers without them"):
        make_config("cpu", labels="index", label_words="rte=mnli")


@pytest.fixture(scope="module")
def word_sources(tmp_path_factory, real_data_dir, tiny_causal_dir):
    """A registry with word-format MNLI and QQP sources (m = 4) on a tiny random Llama."""
    path = tmp_path_factory.mktemp("label-words") / "registry"
    common = ["--registry", path, "--data-dir", real_data_dir]
    for i, task in enumerate(("mnli", "qqp")):
        result = run("source", "train", task, *common, *(["--backbone", tiny_causal_dir] if i == 0 else []), *TINY,
                     "--prompt-length", "4")
        assert result.exit_code == 0, result.output
    return path, common


def test_a_target_records_the_borrowed_words_and_is_scored_in_them(word_sources, real_data_dir):
    path, common = word_sources
    result = run("target", "train", "rte", "--sources", "mnli,qqp", "--label-words", "mnli", *common, *TINY)
    assert result.exit_code == 0, result.output
    registry = Registry(path)
    record = registry.get("target", "rte")
    assert record.config["label_words"] == "mnli" and record.config["labels"] == "words"
    task, examples = split_examples(Workspace(path, real_data_dir), record, "test", None)
    assert task.labels == ("entailment", "neutral") and {e.target for e in examples} <= set(task.labels)
    result = run("eval", "rte", "--split", "test", *common, "--json")
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.output)
    assert row["examples"] == len(examples) and 0 <= row["metrics"]["accuracy"] <= 1
    # A composed version keeps answering in the words its target prompt was trained in.
    result = run("target", "compose", "rte", "--remove", "qqp", *common)
    assert result.exit_code == 0, result.output
    assert registry.get("target", "rte").config["label_words"] == "mnli"


def test_bad_label_words_are_refused_in_one_line_and_write_nothing(word_sources):
    path, common = word_sources
    before = len(Registry(path).list())
    for value, names in (("rte=", "malformed --label-words item 'rte='"),
                         ("cb=rte", "cb cannot answer in rte's label words")):
        result = run("target", "train", "cb", "--sources", "mnli", "--label-words", value, *common, *TINY)
        assert result.exit_code == 1 and names in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1
    assert len(Registry(path).list()) == before


def test_a_study_compares_every_method_in_each_targets_borrowed_words(word_sources, tmp_path):
    import shutil

    path, common = word_sources
    copy = tmp_path / "registry"
    shutil.copytree(path, copy)
    common = ["--registry", copy, *common[2:]]
    study = ["study", "methods", "rte,mrpc", "--methods", "pt,spot", "--sources", "mnli,qqp", "--seeds", "1",
             "--name", "borrowed", *common, *TINY]
    result = run(*study, "--label-words", "rte=mnli,mrpc=qqp")
    assert result.exit_code == 0, result.output
    shown = run("study", "show", "borrowed", "--registry", copy, "--json")
    table = json.loads(shown.output)
    words = {(c["method"], c["target"]): c["budget"]["label_words"] for c in table["cells"]}
    assert words == {("pt", "rte"): "mnli", ("spot", "rte"): "mnli", ("pt", "mrpc"): "qqp", ("spot", "mrpc"): "qqp"}
    assert not table["budget_issues"]  # each target's cells agree; the targets may differ
    markdown = run("study", "show", "borrowed", "--registry", copy, "--markdown").output
    assert "Label words: rte answers in mnli's; mrpc answers in qqp's." in markdown
    # The study keeps its words: another choice under the same name is refused, nothing trains.
    before = len(Registry(copy).list())
    result = run(*study, "--methods", "pt", "--seeds", "2")
    assert result.exit_code == 1 and "label-words" in result.output, result.output
    assert len(Registry(copy).list()) == before

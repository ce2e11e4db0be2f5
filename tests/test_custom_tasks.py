"""Custom tasks: TOML validation with file:line errors, the tasks folder, `task` commands, and a
custom task trained and evaluated end to end through the CLI on the tiny causal model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from attemptctl.cli import app
from attemptctl.errors import ConfigError, UnknownTaskError
from attemptctl.tasks import TASKS, all_tasks, get_task
from attemptctl.tasks.custom import TASKS_DIR_ENV, add_task_file, load_task_file, tasks_dir

runner = CliRunner()

GOOD = """\
name = "tone"
metrics = ["accuracy", "macro_f1"]
max_length = 64

[dataset]
train = "data/train.jsonl"
validation = "data/validation.jsonl"

[input]
fields = ["text"]
template = "review: {text}"

[output]
labels = ["negative", "positive"]
values = ["neg", "pos"]
"""


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(autouse=True)
def folder(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv(TASKS_DIR_ENV, str(tmp_path / "tasks"))
    return tmp_path / "tasks"


@pytest.fixture
def task_file(tmp_path) -> Path:
    data = tmp_path / "project" / "data"
    data.mkdir(parents=True)
    words = ["good", "great", "fine", "bad", "awful", "poor"]
    for split, n in (("train", 24), ("validation", 12)):
        rows = [{"text": f"{words[i % 6]} film {i}", "label": "pos" if i % 6 < 3 else "neg"} for i in range(n)]
        (data / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    path = tmp_path / "project" / "tone.toml"
    path.write_text(GOOD, encoding="utf-8")
    return path


def test_tasks_folder_follows_env_and_xdg(monkeypatch, tmp_path):
    assert tasks_dir() == tmp_path / "tasks"
    monkeypatch.delenv(TASKS_DIR_ENV)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert tasks_dir() == tmp_path / "xdg/attemptctl/tasks"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    assert tasks_dir() == Path.home() / ".config/attemptctl/tasks"


def test_toml_becomes_a_task_that_renders_and_loads(task_file):
    task = load_task_file(task_file)
    assert (task.labels, task.metrics, task.max_length) == (("negative", "positive"), ("accuracy", "macro_f1"), 64)
    assert task.render({"text": "nice", "label": "pos"}).input == "review: nice"
    from attemptctl.tasks.data import load_task

    splits = load_task(task)
    assert (len(splits.train), len(splits.dev), len(splits.test)) == (24, 6, 6)


def test_added_task_is_found_everywhere_and_keeps_its_data(task_file, folder):
    add_task_file(task_file, TASKS)
    task_file.rename(task_file.with_name("moved.toml"))  # the copy no longer needs the original
    assert (folder / "tone.toml").is_file()
    task = get_task("tone")
    assert task.origin == str(folder / "tone.toml") and "tone" in all_tasks()
    assert Path(task.files["train"]) == task_file.parent / "data" / "train.jsonl"
    with pytest.raises(ConfigError, match="exists"):
        add_task_file(task_file.with_name("moved.toml"), TASKS)
    with pytest.raises(UnknownTaskError, match="known tasks: .*tone"):
        get_task("tonee")


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda t: t.replace('max_length = 64', 'max_length = = 64'), r"tone\.toml:3:\d+: invalid TOML"),
        (lambda t: t.replace('name = "tone"', 'name = "rte"'), r"tone\.toml:1: name 'rte' is a built-in task"),
        (lambda t: t.replace('name = "tone"', 'name = "Tone!"'), r"tone\.toml:1: name must be lower-case"),
        (lambda t: t.replace('fields = ["text"]', 'feilds = ["text"]'),
         r"tone\.toml:10: unknown key 'feilds'; expected one of fields, template"),
        (lambda t: t.replace('"accuracy", "macro_f1"', '"acc"'), r"tone\.toml:2: metrics must be"),
        (lambda t: t.replace('values = ["neg", "pos"]', 'values = ["neg"]'), r"tone\.toml:15: values must list 2"),
        (lambda t: t.replace('labels = ["negative", "positive"]', 'answer_field = "a"\nlabels = ["x", "y"]'),
         r"tone\.toml:13: \[output\] needs labels"),
        (lambda t: t.replace('train = "data/train.jsonl"', 'train = "data/nope.jsonl"'),
         r"tone\.toml:6: train file .*nope\.jsonl not found"),
        (lambda t: t.replace('template = "review: {text}"', 'template = "review: {body}"'),
         r"tone\.toml:11: .*template uses \['body'\] not in fields"),
        (lambda t: t.replace('validation = "data/validation.jsonl"\n', ''),
         r"tone\.toml:5: \[dataset\] needs validation"),
    ],
)
def test_bad_toml_is_one_line_naming_file_and_line(task_file, edit, match):
    task_file.write_text(edit(GOOD), encoding="utf-8")
    with pytest.raises(ConfigError, match=match) as caught:
        add_task_file(task_file, TASKS)
    assert "\n" not in str(caught.value)
    result = run("task", "add", task_file)
    assert result.exit_code == 1 and "error:" in result.output and "Traceback" not in result.output


def test_hub_custom_task_and_free_form_output(tmp_path):
    path = tmp_path / "qa.toml"
    path.write_text('name = "myqa"\n[dataset]\nhub = "org/qa"\n[input]\ntemplate = "q: {question} c: {context}"\n'
                    '[output]\nanswer_field = "answer"\n', encoding="utf-8")
    task = load_task_file(path)
    assert (task.dataset, task.config, task.fields, task.metrics) == ("org/qa", None, ("question", "context"),
                                                                      ("squad_f1", "squad_em"))
    example = task.render({"question": "who", "context": "Ann", "answer": ["Ann", "Ann"]})
    assert (example.input, example.answers) == ("q: who c: Ann", ("Ann",))


def test_task_commands_list_show_add_rm(task_file, real_data_dir):
    assert run("task", "add", task_file).exit_code == 0
    listed = json.loads(run("task", "list", "--data-dir", real_data_dir, "--json").output)
    by_name = {row["name"]: row for row in listed}
    assert set(TASKS) | {"tone"} == set(by_name)
    assert by_name["tone"]["sizes"] == {"train": 24, "validation": 12} and by_name["tone"]["origin"].endswith("tone.toml")
    assert by_name["rte"]["sizes"] == {"train": 2490, "validation": 277} and by_name["rte"]["origin"] == "built-in"
    assert by_name["squad"]["metrics"] == ["squad_f1", "squad_em"] and by_name["nq"]["sizes"] is None
    shown = run("task", "show", "rte", "--data-dir", real_data_dir)
    assert "template: rte sentence1: {sentence1} sentence2: {sentence2}" in shown.output
    assert "validation.jsonl" in shown.output and "target: " in shown.output
    placeholder = run("task", "show", "rte")
    assert "input:  rte sentence1: <sentence1> sentence2: <sentence2>" in placeholder.output
    assert "review: good film 0" in run("task", "show", "tone").output
    assert run("task", "rm", "rte").exit_code == 1
    removed = run("task", "rm", "tone")
    assert removed.exit_code == 0 and "removed task tone" in removed.output
    assert run("task", "show", "tone").exit_code == 1


def test_custom_task_trains_and_evaluates_end_to_end(task_file, tmp_path, tiny_causal_dir):
    assert run("task", "add", task_file).exit_code == 0
    common = ["--registry", tmp_path / "registry", "--data-dir", tmp_path / "unused"]
    tiny = ["--max-steps", "2", "--train-limit", "8", "--dev-limit", "4", "--test-limit", "4", "--batch-size", "4",
            "--max-length", "24", "--eval-every", "2", "--prompt-length", "4"]
    (tmp_path / "unused").mkdir()
    trained = run("source", "train", "tone", *common, "--backbone", tiny_causal_dir, *tiny)
    assert trained.exit_code == 0, trained.output
    assert "registered source tone@1" in trained.output
    scored = run("eval", "tone", *common, "--json")
    assert scored.exit_code == 0, scored.output
    [row] = json.loads(scored.output)
    assert row["prompt"] == "tone@1" and row["examples"] == 4
    assert set(row["metrics"]) == {"accuracy", "macro_f1"}

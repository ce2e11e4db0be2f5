"""recipes/zoo.py's floors: what a source prompt must beat on test before it ships, and the note a
prompt under its floor leaves in the manifest instead of its file."""

from __future__ import annotations

import importlib.util
import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

import attemptctl.zoo as zoo_package
from attemptctl.tasks import get_task
from attemptctl.tasks.data import load_task

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def recipe():
    spec = importlib.util.spec_from_file_location("zoo_recipe", ROOT / "recipes" / "zoo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _labels(task, data_dir, examples):
    rows = load_task(get_task(task), data_dir=data_dir, seed=42, train_limit=1, test_limit=examples).test
    return Counter(e.target for e in rows), len(rows)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_floors_follow_the_constant_answers_of_the_test_rows(recipe, real_data_dir):
    counts, n = _labels("qnli", real_data_dir, 400)
    metric, value, basis = recipe._floor("qnli", str(real_data_dir), 400)
    assert metric == "accuracy" and value == pytest.approx(max(counts.values()) / n + 0.15) and "+ 15" in basis
    counts, n = _labels("qqp", real_data_dir, 400)
    share = counts["duplicate"] / n
    metric, value, basis = recipe._floor("qqp", str(real_data_dir), 400)
    assert metric == "f1" and value == pytest.approx(2 * share / (1 + share)) and basis == "all-duplicate F1"
    assert recipe._floor("squad", str(real_data_dir), 50) == ("squad_f1", 0.30, "F1 30")
    for task in recipe.SOURCES:  # the floor's metric is one that the task's evaluation reports
        assert recipe._floor(task, str(real_data_dir), 50)[0] in get_task(task).metrics
    assert recipe._baseline("qqp", str(real_data_dir), 400).endswith(f"all-duplicate F1 {100 * value:.1f}")


def test_a_prompt_under_its_floor_is_noted_missing_and_its_file_not_shipped(recipe, tmp_path, monkeypatch):
    shutil.copytree(zoo_package.PACKAGE_ZOO, tmp_path / "zoo")
    monkeypatch.setattr(zoo_package, "PACKAGE_ZOO", tmp_path / "zoo")
    before = {p.name for p in (tmp_path / "zoo" / recipe.BACKBONE).iterdir()}
    path = tmp_path / "zoo" / recipe.BACKBONE / zoo_package.MANIFEST_NAME
    recipe._note_missing("record", "trained 5 steps: test f1 1.0, under its floor")  # a source the zoo lacks
    manifest = json.loads(path.read_text())
    assert manifest["missing"]["record"] == "trained 5 steps: test f1 1.0, under its floor"
    assert "record" not in manifest["prompts"] and {p.name for p in (tmp_path / "zoo" / recipe.BACKBONE).iterdir()} == before
    assert json.loads((ROOT / "attemptctl" / "zoo" / recipe.BACKBONE / zoo_package.MANIFEST_NAME).read_text()) != manifest
    # A shipped source retrained under its floor (--again) keeps its prompt and is not marked missing.
    shipped = next(iter(manifest["prompts"]))
    recipe._note_missing(shipped, "trained 5 steps: test f1 1.0, under its floor")
    assert json.loads(path.read_text()) == manifest


def test_a_longer_budget_overrides_the_sources_steps_and_the_manifest_says_how(recipe):
    args = type("Args", (), {"labels": "words", "max_steps": 2100})()
    settings = recipe._settings(args, "mnli")
    assert settings["--max-steps"] == 2100 and settings["--lr"] == recipe.COMMON["--lr"]
    assert recipe._recipe_line(args, "mnli") == "python recipes/zoo.py train mnli --max-steps 2100 --data-dir DIR"
    plain = type("Args", (), {"labels": "index", "max_steps": None})()
    assert recipe._settings(plain, "mnli")["--max-steps"] == recipe.SOURCES["mnli"]["--max-steps"]
    assert recipe._recipe_line(plain, "mnli") == "python recipes/zoo.py train mnli --labels index --data-dir DIR"


@pytest.mark.parametrize("argv, error", [(["mnli", "--max-steps", "0"], "not a number of steps"),
                                         (["all", "--max-steps", "500"], "give a source, not all")])
def test_a_budget_that_is_not_one_sources_steps_is_refused_before_anything_trains(argv, error, tmp_path):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, str(ROOT / "recipes" / "zoo.py"), "train", *argv, "--data-dir", str(tmp_path),
                           "--build-registry", str(tmp_path / "build")], capture_output=True, text=True)
    assert done.returncode != 0 and error in done.stderr and not (tmp_path / "build").exists()


def test_an_unfinished_run_is_carried_into_the_checkout_and_continued_on_a_fresh_machine(recipe, tmp_path,
                                                                                         monkeypatch):
    monkeypatch.setattr(recipe, "CARRIED", tmp_path / "checkout" / "zoo-resume")
    monkeypatch.setattr(recipe, "ROOT", tmp_path / "checkout")
    args = type("Args", (), {"labels": "words", "max_steps": 2100, "task": "mnli",
                             "build_registry": str(tmp_path / "machine-1")})()
    with pytest.raises(SystemExit, match="no unfinished run"):
        recipe.carry(args)
    state = tmp_path / "machine-1" / "checkpoints" / "source-mnli.safetensors"
    state.parent.mkdir(parents=True)
    state.write_bytes(b"step 300 of 2100")
    recipe.carry(args)
    carried = recipe.CARRIED / "mnli-2100-steps.safetensors"
    assert carried.read_bytes() == b"step 300 of 2100"
    fresh = tmp_path / "machine-2" / "checkpoints" / "source-mnli.safetensors"  # the next machine: none of its own
    assert recipe._restore_carried(args, "mnli", fresh) == carried and fresh.read_bytes() == b"step 300 of 2100"
    fresh.write_bytes(b"step 400 of 2100")  # a run of its own is never overwritten
    recipe._restore_carried(args, "mnli", fresh)
    assert fresh.read_bytes() == b"step 400 of 2100"
    other = type("Args", (), {"labels": "words", "max_steps": 700})()  # another budget: another file, none here
    assert recipe._carried(other, "mnli").name == "mnli-700-steps.safetensors"


def test_a_carried_checkpoint_is_not_ignored_by_git(recipe):
    import subprocess

    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    path = (recipe.CARRIED / "mnli-2100-steps.safetensors").relative_to(ROOT)
    done = subprocess.run(["git", "check-ignore", "-q", str(path)], cwd=ROOT)
    assert done.returncode == 1  # 1: not ignored, so `carry` + commit really carries it


def test_a_retrain_replaces_the_shipped_prompt_only_when_it_is_better_on_dev(recipe, tmp_path, monkeypatch):
    """`train --again` ships a new prompt only when its dev score (the same rows as the shipped prompt's) is
    higher: a longer run that ends worse leaves the zoo as it was, and the test rows stay out of the choice."""
    shutil.copytree(zoo_package.PACKAGE_ZOO, tmp_path / "zoo")
    monkeypatch.setattr(zoo_package, "PACKAGE_ZOO", tmp_path / "zoo")
    path = tmp_path / "zoo" / recipe.BACKBONE / zoo_package.MANIFEST_NAME
    manifest = json.loads(path.read_text())
    shipped = manifest["prompts"]["sst2"]["dev"]["sst2"]["accuracy"]
    better, why = recipe._beats_shipped("sst2", {"sst2": {"accuracy": shipped + 0.01}})
    assert better and f"{100 * (shipped + 0.01):.1f} above the shipped prompt's {100 * shipped:.1f}" in why
    for dev in ({"sst2": {"accuracy": shipped}}, {"sst2": {"accuracy": shipped - 0.05}}, None, {}):
        better, why = recipe._beats_shipped("sst2", dev)
        assert not better and f"not above the shipped prompt's {100 * shipped:.1f} on the same rows" in why
    # dev scores of other rows are not compared: another dev limit, seed or split protocol is refused
    same = manifest["prompts"]["sst2"]["config"]
    assert recipe._beats_shipped("sst2", {"sst2": {"accuracy": 0.99}}, config=same)[0]
    for key, other in (("dev_limit", 100), ("seed", 7), ("split_protocol", "heldout")):
        better, why = recipe._beats_shipped("sst2", {"sst2": {"accuracy": 0.99}}, config={**same, key: other})
        assert not better and f"({key} differ)" in why
    # QQP is chosen by its F1 (its primary metric), not by accuracy
    qqp = manifest["prompts"]["qqp"]["dev"]["qqp"]
    assert not recipe._beats_shipped("qqp", {"qqp": {"accuracy": 0.99, "f1": qqp["f1"] - 0.01}})[0]
    assert recipe._beats_shipped("qqp", {"qqp": {"accuracy": 0.01, "f1": qqp["f1"] + 0.01}})[0]
    del manifest["prompts"]["sst2"]  # a source the zoo does not ship yet: its first prompt ships
    path.write_text(json.dumps(manifest))
    assert recipe._beats_shipped("sst2", {"sst2": {"accuracy": 0.5}}) == (True, "the zoo ships no prompt for it yet")


def test_the_goals_table_in_the_docs_is_what_the_recipe_prints_from_the_manifest(recipe):
    """`python recipes/zoo.py goals`: each source issue 28 asks more of, its floor, the shipped test score, and
    whether it holds, read from the manifest; docs/registry.md quotes exactly that output."""
    import subprocess
    import sys

    printed = subprocess.run([sys.executable, str(ROOT / "recipes" / "zoo.py"), "goals"], capture_output=True,
                             text=True, check=True).stdout
    manifest = json.loads((ROOT / "attemptctl" / "zoo" / recipe.BACKBONE / zoo_package.MANIFEST_NAME).read_text())
    rows = [line.split(" | ") for line in printed.split("\n\n")[0].splitlines()[2:]]
    assert [r[0].strip("| ") for r in rows] == list(recipe.GOALS)
    for row, (task, (metric, floor)) in zip(rows, recipe.GOALS.items()):
        score = manifest["prompts"][task]["test"]["metrics"][metric]
        assert row[2].startswith(f"{metric} {100 * score:.1f} on ")
        assert row[3] == ("yes" if score >= floor else "no")
    doc = (ROOT / "docs" / "registry.md").read_text()
    quoted = doc.split("<!-- zoo-goals: python recipes/zoo.py goals -->\n", 1)[1].split("<!-- /zoo-goals -->", 1)[0]
    assert quoted == printed


def test_goals_shows_a_carried_run_with_its_step_rate_and_dev_curve(recipe, tmp_path, monkeypatch, capsys):
    """A retraining carried between machines is evidence too: `goals` reads its checkpoint (no torch) and prints
    where it is, its rate now and its dev curve so far."""
    import torch

    from attemptctl.engine.checkpoints import Checkpoint, save

    history = [{"step": 100, "score": 0.42, "lr": 0.28}, {"step": 200, "score": 0.497, "lr": 0.26}]
    state = Checkpoint(step=250, epoch=0, batches_done=250, trainable={"prompts.0": torch.zeros(2, 3)},
                       optimizer={"state": {}, "param_groups": [{"lr": 0.25}]}, scheduler={}, rng=torch.zeros(4),
                       identity={}, best={"score": 0.497, "step": 200, "history": history})
    monkeypatch.setattr(recipe, "CARRIED", tmp_path)
    save(tmp_path / "mnli-2100-steps.safetensors", state)
    assert recipe._checkpoint_meta(tmp_path / "mnli-2100-steps.safetensors")["step"] == 250
    recipe.goals(None)
    printed = capsys.readouterr().out
    assert "| mnli-2100-steps | 250 | 0.25 | 49.7 (step 200) | 100: 42.0, 200: 49.7 |" in printed

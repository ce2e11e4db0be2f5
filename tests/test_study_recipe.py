"""recipes/study.py, the recipe behind docs/results.md: which cells it trains, in which order, and
that a cell in any committed export is never trained again (the part that lets the study span
machines). Its training runs the real `attemptctl study methods`, tested in test_study_methods.py."""

from __future__ import annotations

import importlib.util
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def recipe(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("study_recipe", ROOT / "recipes" / "study.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "EXPORTS", tmp_path / "studies")
    return module


def _export(recipe, study, name, cells):
    path = recipe.EXPORTS / study / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"study": study, "cells": [
        {"method": m, "target": t, "seed": s, "shots": k, "attention": {"mnli@1": 0.7, "qqp@1": 0.2, "(target)": 0.1}}
        for m, t, s, k in cells]}))
    return path


@pytest.mark.parametrize("part", ["main", "ablations", "few-shot", "budget", "index", "borrowed", "start",
                                  "start-lr", "start-zeros", "budget-lr", "main-v2", "curves-300",
                                  "defaults-transfer-lr1e-2"])
def test_every_cell_once_attempt_before_single_and_mt_after_its_seed(recipe, part):
    spec = recipe.PARTS[part]
    todo = recipe._todo(spec)
    assert len(todo) == len(set(todo)) == (len(spec["methods"]) * len(spec["targets"]) * len(spec["seeds"])
                                           * len(spec["shots"]))
    for method, target, seed, shots in todo:
        if method == "single":
            assert todo.index(("attempt", target, seed, shots)) < todo.index((method, target, seed, shots))
    if "attempt-mt" in spec["methods"]:  # the shared run follows every single-target cell of its seed
        for seed in spec["seeds"]:
            last_single = max(i for i, c in enumerate(todo) if c[2] == seed and c[0] != "attempt-mt")
            first_mt = min(i for i, c in enumerate(todo) if c[2] == seed and c[0] == "attempt-mt")
            assert first_mt == last_single + 1
    # Each target's methods come together, so the first target shows PT beside ATTEMPT early.
    first = [c for c in todo[:len([m for m in spec["methods"] if m != "attempt-mt"])]]
    assert {c[1] for c in first} == {spec["targets"][0]}


def test_the_longer_curves_change_only_the_step_counts_of_the_main_study(recipe):
    main, longer = recipe.PARTS["main-v2"]["budget"], recipe.PARTS["curves-300"]["budget"]
    changed = {key for key in main.keys() | longer.keys() if main.get(key) != longer.get(key)}
    assert changed == {"--max-steps", "--warmup-steps", "--eval-every", "--curve-steps"}
    assert longer["--curve-steps"].split(",")[-1] == str(longer["--max-steps"])  # the curve reaches the end
    assert recipe.PARTS["curves-300"]["study"] != recipe.PARTS["main-v2"]["study"]


def test_the_budget_probe_changes_only_the_step_counts_of_the_main_budget(recipe):
    main, probe = recipe.PARTS["main"]["budget"], recipe.PARTS["budget"]["budget"]
    scaled = {"--max-steps", "--warmup-steps", "--eval-every"}
    assert {k: v for k, v in probe.items() if k not in scaled} == {k: v for k, v in main.items() if k not in scaled}
    assert all(probe[k] == 4 * main[k] if k != "--eval-every" else probe[k] >= main[k] for k in scaled)
    assert recipe.PARTS["budget"]["study"] != recipe.PARTS["main"]["study"]  # its own cells, never mixed in


def test_cells_in_any_export_are_done_and_status_says_what_is_next(recipe, capsys):
    study = recipe.PARTS["main"]["study"]
    _export(recipe, study, "a", [("pt", "rte", 1, None), ("spot", "rte", 1, None)])
    _export(recipe, study, "b", [("attempt", "rte", 1, None)])
    done = recipe._done(study)
    assert set(done) == {("pt", "rte", 1, None), ("spot", "rte", 1, None), ("attempt", "rte", 1, None)}
    recipe.status(type("Args", (), {"part": "main"})())
    line = capsys.readouterr().out.strip()
    total = len(recipe._todo(recipe.PARTS["main"]))
    assert line == f"main ({study}): 3/{total} cells done in 2 export(s); next: ('pt', 'mrpc', 1, None)"


def test_status_estimates_the_time_left_from_the_cells_done(recipe, capsys):
    part = {"study": "tiny", "targets": ("rte", "cb"), "methods": ("pt", "attempt", "attempt-mt"), "seeds": (1, 2),
            "shots": (None,)}

    def row(seconds, evaluation=0.0):
        return {"train_seconds": seconds, "eval_seconds": evaluation}

    done = {("pt", "rte", 1, None): row(100, 20), ("attempt", "rte", 1, None): row(200), ("pt", "cb", 1, None): row(50)}
    # Left: attempt on cb (its target's mean, 50), the seed-1 multi-task run (rte's ATTEMPT 200 + cb's 50), and
    # seed 2 (PT 120 + 50, ATTEMPT 200 + 50, the multi-task run 250).
    assert recipe.time_left(part, done) == 50 + 250 + 120 + 50 + 200 + 50 + 250
    mt = {("attempt-mt", t, 1, None): row(400) for t in part["targets"]}  # one finished run: its own time
    assert recipe.time_left(part, {**done, **mt}) == 50 + 120 + 50 + 200 + 50 + 400
    assert recipe.time_left(part, {("pt", "rte", 1, None): {}}) is None  # exports from before the timing
    recipe.PARTS["tiny"] = part  # this test's own copy of the recipe module
    path = _export(recipe, "tiny", "a", [("pt", "rte", 1, None)])
    recipe.status(type("Args", (), {"part": "tiny"})())
    assert capsys.readouterr().out.strip().endswith("next: ('attempt', 'rte', 1, None)")  # untimed: no estimate
    export = json.loads(path.read_text())
    export["cells"][0].update(train_seconds=5000.0, eval_seconds=400.0)
    path.write_text(json.dumps(export))
    recipe.status(type("Args", (), {"part": "tiny"})())  # 7 single cells of 5,400 s + 2 runs of 2 x 5,400 s: 16.5 h
    assert capsys.readouterr().out.strip().endswith("; about 16 h of training left at the pace of the cells done")


def test_each_build_registry_writes_its_own_export(recipe, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    registry, export = recipe._registry("six-targets")
    again, same = recipe._registry("six-targets")
    assert (again, same) == (registry, export) and export.parent == recipe.EXPORTS / "six-targets"
    (registry / "export-token").unlink()  # a new machine: a new registry, a new file beside the old
    assert recipe._registry("six-targets")[1] != export
    beside, own = recipe._registry("six-targets", str(tmp_path / "second"))  # a second run of the part, beside
    assert beside == tmp_path / "second" and own.parent == export.parent and own.name not in (export.name, same.name)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_constant_answers_score_the_best_single_label_on_the_cells_test_rows(recipe, real_data_dir):
    from attemptctl.tasks import get_task
    from attemptctl.tasks.data import load_task

    part = {"targets": ("mrpc", "cb"), "seeds": (1, 2), "budget": {"--test-limit": 1000}}
    scores = recipe.constant_answers(part, str(real_data_dir))
    expected = {"mrpc": [], "cb": []}
    for seed in (1, 2):
        rows = load_task(get_task("mrpc"), data_dir=real_data_dir, seed=seed, train_limit=1, test_limit=1000).test
        p = sum(e.target == "equivalent" for e in rows) / len(rows)  # always "equivalent": precision p, recall 1
        expected["mrpc"].append(2 * p / (1 + p))
        rows = load_task(get_task("cb"), data_dir=real_data_dir, seed=seed, train_limit=1, test_limit=1000).test
        share = max(sum(e.target == label for e in rows) for label in get_task("cb").labels) / len(rows)
        expected["cb"].append(2 * share / (1 + share) / 3)  # macro-F1: the one predicted class's F1, over 3
    assert scores["mrpc"] == pytest.approx(expected["mrpc"]) and scores["cb"] == pytest.approx(expected["cb"])


def test_per_seed_prints_every_cell_seed_by_seed_and_baselines_their_means(recipe, capsys):
    """`per-seed` is the numbers behind the table's means, in the part's target order; a cell not
    run yet is a dash, never a number."""
    study = recipe.PARTS["start-lr"]["study"]
    path = _export(recipe, study, "a", [("pt", "cb", 1, None), ("pt", "cb", 2, None), ("attempt", "rte", 1, None)])
    doc = json.loads(path.read_text())
    for cell, score in zip(doc["cells"], (0.5, 0.25, 0.625)):
        cell["score"] = score
    path.write_text(json.dumps(doc))
    recipe.per_seed(type("Args", (), {"part": "start-lr", "data_dir": None})())
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "| method (seed 1 / 2) | rte | cb |"
    assert lines[2:] == ["| PT | — / — | 50.0 / 25.0 |", "| ATTEMPT | 62.5 / — | — / — |"]


def test_the_index_part_is_the_main_study_in_the_other_label_format(recipe):
    main, index = recipe.PARTS["main"], recipe.PARTS["index"]
    assert index["labels"] == "index" and main.get("labels", "words") == "words"
    assert {k: v for k, v in index.items() if k not in ("study", "labels")} == {k: v for k, v in main.items() if k != "study"}
    assert index["study"] != main["study"]


def test_every_cell_of_the_index_part_answers_by_index_and_pt_mixes_nothing(recipe, tmp_path):
    def command(part, cell):
        return recipe._cell_command(part, cell, tmp_path / "r", tmp_path / "e.json", "DATA")

    pt = command("index", ("pt", "rte", 1, None))
    assert pt[pt.index("--labels") + 1] == "index" and "--sources" not in pt
    attempt = command("index", ("attempt", "cb", 2, None))
    assert attempt[attempt.index("--labels") + 1] == "index" and attempt[attempt.index("--sources") + 1] == recipe.SOURCES
    assert attempt[attempt.index("--seeds") + 1] == "2" and attempt[2] == "cb"
    mt = command("index", ("attempt-mt", "cb", 1, None))
    assert mt[2] == ",".join(recipe.PARTS["index"]["targets"])  # one run over every target
    assert "--labels" not in command("main", ("pt", "rte", 1, None))  # the word study: the default format
    main = command("main", ("spot", "rte", 1, None))
    assert main[main.index("--max-steps") + 1] == str(recipe.BUDGET["--max-steps"]) and main[-1] == "--resume"


def test_every_cell_of_the_borrowed_part_answers_in_the_named_words_pt_included(recipe, tmp_path):
    from attemptctl.tasks import borrowed_from, get_task, labelled, parse_label_words

    part = recipe.PARTS["borrowed"]
    assert part["budget"] == recipe.BUDGET  # the main study's budget: its CB cells read beside these
    for cell in recipe._todo(part):
        command = recipe._cell_command("borrowed", cell, tmp_path / "r", tmp_path / "e.json", "DATA")
        words = command[command.index("--label-words") + 1]
        assert parse_label_words(words) == words  # the canonical spelling a study compares
        source = borrowed_from(words, cell[1])
        assert source in recipe.SOURCES.split(",")  # a zoo source's words, so its prompt keeps its meaning
        assert labelled(get_task(cell[1]), "words", words).labels != get_task(cell[1]).labels
        assert ("--sources" in command) == (cell[0] != "pt")


def test_the_start_parts_score_the_start_and_differ_from_the_borrowed_part_only_as_named(recipe, tmp_path):
    borrowed = recipe._cell_command("borrowed", ("attempt", "rte", 1, None), tmp_path / "r", tmp_path / "e.json", "D")
    for part, lr in (("start", None), ("start-lr", "0.03")):
        command = recipe._cell_command(part, ("attempt", "rte", 1, None), tmp_path / "r", tmp_path / "e.json", "D")
        assert "--eval-start" in command and command[command.index("--eval-start") + 1].startswith("--")
        assert command[command.index("--label-words") + 1] == "rte=mnli"
        assert (command[command.index("--lr") + 1] if "--lr" in command else None) == lr
        flags = {a for a in command if a.startswith("--")} - {"--eval-start", "--lr"}
        assert flags == {a for a in borrowed if a.startswith("--")}


def test_table_columns_follow_the_part_not_the_training_order(recipe):
    """A study resumed in a second registry exports its targets in another order; the table and the
    constant-answer row both take the part's order, over the targets that have a cell."""
    study = recipe.PARTS["start-lr"]["study"]
    _export(recipe, study, "a", [("pt", "wsc", 1, None), ("pt", "mrpc", 1, None)])
    _export(recipe, study, "b", [("pt", "rte", 2, None)])
    assert recipe._targets_done(recipe.PARTS["start-lr"]) == ["rte", "mrpc", "wsc"]


def test_the_budget_probe_at_the_main_settings_changes_only_steps_and_dev_rows(recipe):
    main, probe = recipe.PARTS["start-lr"], recipe.PARTS["budget-lr"]
    changed = {"--max-steps", "--warmup-steps", "--eval-every", "--dev-limit"}
    assert {k: v for k, v in probe["budget"].items() if k not in changed} == \
        {k: v for k, v in main["budget"].items() if k not in changed}
    assert probe["budget"]["--max-steps"] == 4 * main["budget"]["--max-steps"]
    assert probe["budget"]["--dev-limit"] > main["budget"]["--dev-limit"]
    assert probe["label_words"] == main["label_words"] and probe["study"] != main["study"]


def test_per_seed_gives_each_shot_count_its_own_rows(recipe, capsys):
    study = recipe.PARTS["few-shot"]["study"]
    path = _export(recipe, study, "a", [("pt", "cb", 1, 4), ("pt", "cb", 2, 16)])
    doc = json.loads(path.read_text())
    for cell, score in zip(doc["cells"], (0.5, 0.75)):
        cell["score"] = score
    path.write_text(json.dumps(doc))
    recipe.per_seed(type("Args", (), {"part": "few-shot", "data_dir": None})())
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[2:] == ["| PT (4-shot) | 50.0 / — |", "| PT (16-shot) | — / 75.0 |"]


#: The zoo main-v2 began with: each source's sha256 (its first 16 hex digits), as its cells mixed them.
MAIN_V2_SOURCES = {"mnli": "656d00b092ab8d61", "qnli": "e50937096b13554c", "qqp": "28ccf81b73b43d98",
                   "squad": "41360bd24f9d8acd", "sst2": "d08b0d2d3dc0434b"}


def _committed(path: str) -> bytes:
    return subprocess.run(["git", "-C", str(ROOT), "show", f"HEAD:{path}"], capture_output=True, check=True).stdout


def test_a_pinned_zoo_is_the_committed_zoo_extracted_once(recipe, tmp_path):
    head = recipe.pinned_zoo("HEAD", tmp_path / "pins")
    shipped = json.loads(_committed("attemptctl/zoo/smollm2-135m/manifest.json"))
    assert json.loads((head / "smollm2-135m" / "manifest.json").read_text()) == shipped
    for entry in shipped["prompts"].values():
        assert (head / "smollm2-135m" / entry["file"]).read_bytes() == \
            _committed(f"attemptctl/zoo/smollm2-135m/{entry['file']}")
    assert recipe.pinned_zoo("HEAD", tmp_path / "pins") == head  # extracted once, then read from there
    assert [p.name for p in (tmp_path / "pins").iterdir()] == ["HEAD"]  # no staging folder left behind
    with pytest.raises(SystemExit, match="the zoo of commit 0000000000ab cannot be read"):
        recipe.pinned_zoo("0000000000ab" * 3 + "0000", tmp_path / "pins")


def test_the_main_study_pins_the_zoo_it_began_with(recipe, tmp_path):
    """main-v2 (and the parts that must share its sources) pull the zoo of a pinned commit, so a source
    retrained and shipped while the study runs does not change its cells."""
    parts = ("main-v2", "curves-300", "gpu-main-v2")
    assert {recipe.PARTS[p]["zoo"] for p in parts} == {recipe.MAIN_ZOO} and len(recipe.MAIN_ZOO) == 40
    if subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", f"{recipe.MAIN_ZOO}^{{commit}}"]).returncode != 0:
        pytest.skip("a shallow clone: the pinned commit is not in its history")
    pinned = json.loads((recipe.pinned_zoo(recipe.MAIN_ZOO, tmp_path / "pins") / "smollm2-135m" /
                         "manifest.json").read_text())
    assert {t: e["sha256"][:16] for t, e in pinned["prompts"].items()} == MAIN_V2_SOURCES


def test_a_pinned_part_mixes_the_pinned_prompts_where_the_registry_holds_newer_ones(recipe, tmp_path):
    """The pull reports the exact version that holds each pinned prompt, and every cell names those versions:
    a build registry that also holds a newer MNLI (a retrained zoo pulled into it) still mixes the pinned one."""
    pinned = recipe.pinned_zoo("HEAD", tmp_path / "pins")
    newer = tmp_path / "newer-zoo"
    shutil.copytree(pinned, newer)
    manifest = json.loads((newer / "smollm2-135m" / "manifest.json").read_text())
    prompt = (newer / "smollm2-135m" / "mnli.safetensors").read_bytes()
    changed = prompt[:-4] + bytes(4)  # the last float of the prompt, zeroed: another MNLI prompt of the same shape
    (newer / "smollm2-135m" / "mnli.safetensors").write_bytes(changed)
    manifest["prompts"]["mnli"]["sha256"] = hashlib.sha256(changed).hexdigest()
    (newer / "smollm2-135m" / "manifest.json").write_text(json.dumps(manifest))
    registry = tmp_path / "registry"
    assert recipe._pull(registry, "words", pinned)["mnli"] == "mnli@1"
    assert recipe._pull(registry, "words", newer)["mnli"] == "mnli@2"  # the newer prompt arrives
    refs = recipe._pull(registry, "words", pinned)  # the pinned zoo again: every prompt already here
    assert refs == {"mnli": "mnli@1", "qnli": "qnli@1", "qqp": "qqp@1", "squad": "squad@1", "sst2": "sst2@1"}
    sources = ",".join(refs[name] for name in recipe.PARTS["main-v2"]["sources"].split(","))
    command = recipe._cell_command("main-v2", ("attempt", "rte", 1, None), registry, tmp_path / "e.json", "DATA",
                                   sources)
    assert command[command.index("--sources") + 1] == "mnli@1,qqp@1,qnli@1,sst2@1,squad@1"
    pt = recipe._cell_command("main-v2", ("pt", "rte", 1, None), registry, tmp_path / "e.json", "DATA", sources)
    assert "--sources" not in pt


def test_transfer_scores_each_prompt_untrained_on_the_target_rows(recipe, tmp_path, real_data_dir, capsys):
    """`study.py transfer` scores the vocabulary prompt and each registered source on a target's test rows,
    with the share of its most predicted label (CB: 28 rows, real SmolLM2, real zoo prompt)."""
    import argparse

    from attemptctl.tasks import get_task
    from attemptctl.zoo import pull_zoo
    from registry import Registry

    pull_zoo(Registry(tmp_path / "reg"), recipe.BACKBONE, tasks=["sst2"])
    recipe.transfer(argparse.Namespace(targets="cb", labels="words", by_index=False, split="test",
                                       prompts_from=str(tmp_path / "reg"), data_dir=str(real_data_dir)))
    rows = [line.strip("|").split("|") for line in capsys.readouterr().out.splitlines()[2:]]
    assert [cells[1].strip() for cells in rows] == ["vocabulary (untrained)", "sst2@1"]
    for target, _, answers, score, most in rows:
        assert (target.strip(), answers.strip()) == ("cb", "cb's words")
        assert 0 <= float(score) <= 100
        label, share = most.strip().rstrip("%)").split(" (")
        assert label in get_task("cb").labels
        assert 100 / len(get_task("cb").labels) <= int(share) <= 100  # the most predicted label's share


def test_an_unfinished_multi_task_run_is_carried_into_the_checkout_and_continued_elsewhere(recipe, tmp_path,
                                                                                          monkeypatch):
    """ATTEMPT-MT trains for longer than a machine may live: `carry` commits its checkpoint, `run` puts it back
    where `study methods --resume` reads it on a fresh machine (never over a run of that machine's own), and a
    finished run's carried file is removed."""
    monkeypatch.setattr(recipe, "ROOT", tmp_path / "checkout")
    monkeypatch.setattr(recipe, "CARRIED", tmp_path / "checkout" / "study-resume")
    part = recipe.PARTS["main-v2"]
    args = type("Args", (), {"part": "main-v2", "seed": 2, "build_registry": str(tmp_path / "machine-1")})()
    with pytest.raises(SystemExit, match="no unfinished multi-task run of seed 2"):
        recipe.carry(args)
    state = tmp_path / "machine-1" / "checkpoints" / f"target-{'+'.join(part['targets'])}.safetensors"
    state.parent.mkdir(parents=True)
    state.write_bytes(b"step 300 of 800")
    recipe.carry(args)
    carried = recipe.CARRIED / "main-v2" / "seed-2.safetensors"
    assert carried.read_bytes() == b"step 300 of 800"

    fresh = tmp_path / "machine-2"
    recipe._restore_carried(part, ("attempt-mt", "yelp", 1, None), fresh)  # another seed's run: not this file
    assert not (fresh / "checkpoints").exists()
    recipe._restore_carried(part, ("attempt-mt", "yelp", 2, None), fresh)
    restored = fresh / "checkpoints" / state.name
    assert restored.read_bytes() == b"step 300 of 800"
    restored.write_bytes(b"step 400 of 800")  # a run of its own is never overwritten
    recipe._restore_carried(part, ("attempt-mt", "yelp", 2, None), fresh)
    assert restored.read_bytes() == b"step 400 of 800"
    recipe._forget_carried(part, ("pt", "yelp", 2, None))  # a single-target cell leaves it alone
    assert carried.exists()
    recipe._forget_carried(part, ("attempt-mt", "yelp", 2, None))
    assert not carried.exists()


@pytest.mark.parametrize("argv, error", [(["carry", "curves-300", "--seed", "1"], "no multi-task run to carry"),
                                         (["carry", "main-v2", "--seed", "7"], "has no seed 7")])
def test_carry_refuses_a_part_or_seed_without_a_multi_task_run(argv, error, tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "recipes" / "study.py"), *argv, "--build-registry",
                           str(tmp_path / "build")], capture_output=True, text=True)
    assert done.returncode != 0 and error in done.stderr and not (tmp_path / "build").exists()


def test_a_carried_multi_task_checkpoint_is_not_ignored_by_git(recipe):
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    path = (recipe.CARRIED / "main-v2" / "seed-1.safetensors").relative_to(ROOT)
    assert subprocess.run(["git", "check-ignore", "-q", str(path)], cwd=ROOT).returncode == 1


def test_status_says_where_a_carried_multi_task_run_stands(recipe, tmp_path, monkeypatch, capsys):
    import torch

    from attemptctl.engine.checkpoints import Checkpoint, save

    monkeypatch.setattr(recipe, "ROOT", tmp_path)
    monkeypatch.setattr(recipe, "CARRIED", tmp_path / "study-resume")
    save(recipe.CARRIED / "main-v2" / "seed-1.safetensors",
         Checkpoint(step=300, epoch=0, batches_done=300, trainable={"target.yelp": torch.zeros(2, 3)},
                    optimizer={"state": {}, "param_groups": []}, scheduler={}, rng=torch.get_rng_state(), identity={}))
    (recipe.CARRIED / "main-v2" / "seed-2.safetensors").write_bytes(b"cut short by a full disk")
    recipe.status(type("Args", (), {"part": "main-v2"})())
    out = capsys.readouterr().out
    assert "study-resume/main-v2/seed-1.safetensors: step 300; `run` continues it" in out
    assert "seed-2.safetensors: unreadable" in out


def test_cells_of_a_part_with_several_methods_reads_the_method_asked_for(recipe):
    """The headroom row pairs LoRA with a part's PT cells: in main-v2, which trains PT, SPoT and ATTEMPT on the same
    targets, reading "the part's cell" must not hand back whichever method came last in the export."""
    _export(recipe, "main-v2", "a", [("pt", "yelp", 1, None), ("spot", "yelp", 1, None), ("attempt", "yelp", 1, None)])
    assert recipe._cells_of("main-v2", "pt")[("yelp", 1)]["method"] == "pt"
    assert recipe._cells_of("main-v2", "attempt")[("yelp", 1)]["method"] == "attempt"
    with pytest.raises(ValueError, match="name the method"):
        recipe._cells_of("main-v2")
    _export(recipe, "defaults-pt", "b", [("pt", "rte", 2, None)])
    assert list(recipe._cells_of("defaults-pt")) == [("rte", 2)]  # a one-method part needs no name
